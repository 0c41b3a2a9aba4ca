package config

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Warnings is the configuration audit: settings that are valid but
// probably not what an operator wants facing the internet. Each is
// formatted "file:line: field.path: message". Call it on a Config that
// validates; the gateway logs them at every start and reload.
func (c *Config) Warnings() []string {
	var out []string
	warn := func(path, format string, args ...any) {
		p := &Problem{File: c.File, Line: c.pos.line(path), Path: path, Message: fmt.Sprintf(format, args...)}
		out = append(out, p.Error())
	}

	if c.Timeouts.FirstBytes > Duration(30*time.Second) {
		warn("timeouts.first_bytes", "%s lets a silent connection hold a slot for long (slowloris); 5s is the default", c.Timeouts.FirstBytes)
	}
	if len(c.Services) == 0 && c.servesOtherThanTURN() {
		warn("services", "no services: every request and connection is refused")
	}
	if !c.ServesTURN() && (c.TURN.Realm != "" || len(c.TURN.PublicAddresses) > 0) {
		warn("turn", "set, but no listener carries turn: the section is unused")
	}
	for i, n := range c.TURN.AllowPeers {
		if p, err := ParseNetwork(n); err == nil && p.Bits() <= 1 {
			warn(indexPath("turn.allow_peers", i), "%s opens the relays to every special-purpose range (loopback, private networks, cloud metadata): list only your media servers' networks", n)
		}
	}

	for i, n := range c.Firewall.TrustedNetworks {
		if p, err := ParseNetwork(n); err == nil && p.Bits() <= 1 {
			warn(indexPath("firewall.trusted_networks", i), "%s trusts (nearly) every address: every port is open to it and no ban reaches the kernel", n)
		}
	}

	for i, l := range c.Listeners {
		p := indexPath("listeners", i)
		if l.TLS != TLSNone && len(c.TLS.Certificates) == 0 {
			warn(p+".tls", "TLS %s but tls.certificates is empty: a self-signed certificate is generated in %s; clients will warn or refuse it", l.TLS, c.DataDir)
		}
		if l.TLS == TLSNone {
			if l.Certificate != "" {
				warn(p+".certificate", "ignored: the listener has tls: none")
			}
			if l.StrictSNI {
				warn(p+".strict_sni", "ignored: the listener has tls: none")
			}
		}
		if slices.Contains(l.Protocols, ProtoLDAP) && l.TLS != TLSRequired && !IsLoopbackAddress(l.Address) {
			if l.TLS == TLSNone {
				warn(p+".tls", "plain LDAP on a public address: simple bind passwords cross the network in clear; prefer tls: required (LDAPS)")
			} else {
				warn(p+".tls", "tls: optional also accepts plain LDAP on a public address: simple bind passwords may cross the network in clear")
			}
		}
		if len(l.TrustedProxies) > 0 && !slices.Contains(l.Protocols, ProtoHTTP) {
			warn(p+".trusted_proxies", "ignored: the listener does not carry http")
		}
		for j, n := range l.TrustedProxies {
			if pr, err := ParseNetwork(n); err == nil && pr.Bits() == 0 {
				warn(indexPath(p+".trusted_proxies", j), "%s trusts forwarding headers from every source: any client can claim any address and evade bans", n)
			}
		}
	}

	carried := make(map[string]bool) // protocols some listener carries
	tcpTarget := make(map[string]bool)
	for _, l := range c.Listeners {
		for _, proto := range l.Protocols {
			carried[proto] = true
			if proto == ProtoSIPWS {
				carried[ProtoSIP] = true
			}
		}
		if slices.Contains(l.Protocols, ProtoTCP) {
			tcpTarget[l.TCPService] = true
		}
	}
	for i, s := range c.Services {
		p := indexPath("services", i)
		if s.Backend.InsecureSkipVerify {
			warn(p+".backend.insecure_skip_verify", "the backend's certificate is not verified: anyone on the path to %s can impersonate it", s.Backend.Address)
		}
		switch {
		case s.Protocol == ProtoTCP && !tcpTarget[s.Name]:
			warn(p, "service %q is unreachable: no listener names it as tcp_service", s.Name)
		case s.Protocol != ProtoTCP && !carried[s.Protocol]:
			warn(p, "service %q is unreachable: no listener carries %s", s.Name, s.Protocol)
		case s.Protocol == ProtoSIP && carried[ProtoSIPWS] && s.Backend.WebSocket == "":
			warn(p+".backend", "service %q has no websocket backend: WebSocket (sip-ws) clients routed to it are refused", s.Name)
		}
	}

	if c.Admin.Address != Off && !IsLoopbackAddress(c.Admin.Address) {
		warn("admin.address", "the admin API listens on %s, beyond this host: the token is then its only guard; keep it on 127.0.0.1 and reach it through SSH or a VPN", c.Admin.Address)
	}
	if c.Fraud.Enabled != nil && !*c.Fraud.Enabled {
		warn("fraud.enabled", "automatic bans are off: brute force and scans are only logged")
	}
	for i, n := range c.Fraud.Whitelist {
		if p, err := ParseNetwork(n); err == nil && p.Bits() < 8 {
			warn(indexPath("fraud.whitelist", i), "%s whitelists a large part of the internet: those sources are never banned", n)
		}
	}

	if c.LDAP.Anonymous != Refuse && c.LDAP.Anonymous != "" {
		warn("ldap.anonymous", "anonymous binds are forwarded to %q: its directory is readable from the internet without a password if it allows anonymous access", c.LDAP.Anonymous)
	}
	return out
}

// IsLoopbackAddress reports whether a listener address (host:port) binds
// loopback only.
func IsLoopbackAddress(addr string) bool {
	host, _, err := SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// servesOtherThanTURN reports whether a listener carries a protocol other
// than turn (one that needs services).
func (c *Config) servesOtherThanTURN() bool {
	for _, l := range c.Listeners {
		for _, p := range l.Protocols {
			if p != ProtoTURN {
				return true
			}
		}
	}
	return false
}
