package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/pbxgate/pbxgate/internal/sip"
)

// Bounds of the sip section.
const (
	minSIPFloodWindow = Duration(100 * time.Millisecond)
	maxSIPFloodWindow = Duration(time.Hour)
	maxSIPFloodLimit  = 65534
	maxSIPBlockFor    = Duration(30 * 24 * time.Hour)
	maxSIPFloodSrc    = 1 << 28
	minSIPMaxMessage  = 1500
	maxSIPMaxFlows    = 10_000_000
	minSIPIdle        = Duration(time.Minute)
	minSIPCallMax     = Duration(time.Minute)
	maxSIPTracked     = 1 << 24
	maxRoadwarrior    = 3
)

// isSIPTarget reports whether a sip service without domains of its own is
// still reachable: named by a company or as sip.default_service.
func (c *Config) isSIPTarget(name string) bool {
	if name == "" {
		return false
	}
	if c.SIP.DefaultService == name {
		return true
	}
	for _, b := range c.SIP.Brands {
		for _, co := range b.Companies {
			if co.Service == name {
				return true
			}
		}
	}
	return false
}

// checkSIPDomain validates a SIP routing domain: a DNS name, "*." and a DNS
// name (one label), or an IP address (phones often use the PBX's address).
func checkSIPDomain(d string) error {
	name := strings.TrimSuffix(d, ".")
	switch {
	case d == "":
		return fmt.Errorf("empty domain")
	case isIP(strings.Trim(d, "[]")):
		return nil
	case strings.HasPrefix(name, "*."):
		name = name[2:]
	}
	if !validDNSName(name) {
		return fmt.Errorf("%q is neither a DNS name, a *.wildcard nor an IP address", clip(d, 64))
	}
	return nil
}

// reservedSIPHeaders are the headers a client address header must not
// replace: the gateway would remove the client's copies.
var reservedSIPHeaders = []string{
	"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "contact", "m",
	"content-length", "l", "content-type", "c", "max-forwards", "route", "record-route",
	"authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate",
	"user-agent", "expires", "supported", "require", "allow", "event", "k", "s", "subject",
}

// checkSIPHeaderName requires an RFC 3261 token that is not a header the
// SIP dialog itself needs.
func checkSIPHeaderName(h string) error {
	if len(h) > 64 {
		return fmt.Errorf("header name %q is longer than 64 characters", clip(h, 64))
	}
	for i := 0; i < len(h); i++ {
		if !isTchar(h[i]) {
			return fmt.Errorf("%q is not a header name (letters, digits and -.!%%*_+`'~ only)", clip(h, 64))
		}
	}
	lower := strings.ToLower(h)
	for _, r := range reservedSIPHeaders {
		if lower == r {
			return fmt.Errorf("%q is a SIP header the dialog needs; use a name of its own such as X-Forwarded-For", h)
		}
	}
	return nil
}

// sipBackend checks the backend keys that only sip services have.
func (k *checker) sipBackend(p string, b Backend, isSIP bool) {
	if !isSIP {
		for _, f := range []struct {
			key string
			set bool
		}{{"udp_address", b.UDPAddress != ""}, {"websocket", b.WebSocket != ""}, {"proxy_protocol", b.ProxyProtocol}} {
			if f.set {
				k.add(p+"."+f.key, "applies to sip services only")
			}
		}
		return
	}
	if b.UDPAddress != "" && b.UDPAddress != b.Address {
		if host, port, err := SplitHostPort(b.UDPAddress); err != nil {
			k.add(p+".udp_address", "%v", err)
		} else if host == "" || port == 0 {
			k.add(p+".udp_address", "%q needs a host and a port", clip(b.UDPAddress, 64))
		} else if !isIP(host) {
			k.add(p+".udp_address", "host %q is not an IP address: UDP flows are relayed without name resolution", clip(host, 64))
		}
	}
	if b.WebSocket != "" {
		if err := checkWebSocketURL(b.WebSocket); err != nil {
			k.add(p+".websocket", "%v", err)
		}
	}
}

// checkWebSocketURL requires ws:// or wss:// with a host and no credentials.
func checkWebSocketURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL: %w", clip(s, 64), err)
	case u.Scheme != "ws" && u.Scheme != "wss":
		return fmt.Errorf("%q: the scheme must be ws or wss", clip(s, 64))
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%q has no host", clip(s, 64))
	case u.User != nil:
		return fmt.Errorf("%q: credentials in the URL are not supported", clip(s, 64))
	case u.Fragment != "":
		return fmt.Errorf("%q: a fragment has no meaning here", clip(s, 64))
	}
	return checkAddrHost(u.Hostname())
}

// udpListener checks what a udp listener cannot have.
func (k *checker) udpListener(p string, l *Listener) {
	if l.TLS != TLSNone {
		k.add(p+".tls", "a udp listener has no TLS (DTLS is not supported); use a tcp listener with tls")
	}
	if len(l.Protocols) != 1 || (l.Protocols[0] != ProtoSIP && l.Protocols[0] != ProtoTURN) {
		k.add(p+".protocols", "a udp listener carries either sip or turn: write [sip] (the default) or [turn]")
	}
	for _, f := range []struct {
		key string
		set bool
	}{
		{"default_service", l.DefaultService != ""}, {"tcp_service", l.TCPService != ""},
		{"trusted_proxies", len(l.TrustedProxies) > 0}, {"strict_sni", l.StrictSNI},
	} {
		if f.set {
			k.add(p+"."+f.key, "has no meaning on a udp listener")
		}
	}
}

// sip checks the sip section.
func (k *checker) sip(services map[string]*Service) {
	s := k.c.SIP
	if s.DefaultService != "" {
		switch svc, ok := services[s.DefaultService]; {
		case !ok:
			k.add("sip.default_service", "no service is named %q", clip(s.DefaultService, 64))
		case svc.Protocol != ProtoSIP:
			k.add("sip.default_service", "service %q is %s, not sip", svc.Name, svc.Protocol)
		}
	}
	for i, n := range s.Trusted {
		if _, err := ParseNetwork(n); err != nil {
			k.add(indexPath("sip.trusted", i), "%v", err)
		}
	}
	f := s.Flood
	if f.Window < minSIPFloodWindow || f.Window > maxSIPFloodWindow {
		k.add("sip.flood.window", "%s is out of range %s..%s", f.Window, minSIPFloodWindow, maxSIPFloodWindow)
	}
	k.between("sip.flood.limit", f.Limit, 1, maxSIPFloodLimit)
	if f.BlockFor <= 0 || f.BlockFor > maxSIPBlockFor {
		k.add("sip.flood.block_for", "%s is out of range (0, %s]", f.BlockFor, maxSIPBlockFor)
	}
	k.between("sip.flood.max_sources", f.MaxSources, minMaxSources, maxSIPFloodSrc)
	if _, err := sip.NewUAMatcher(s.ScannerUserAgents); err != nil {
		k.add("sip.scanner_user_agents", "%v", err)
	}
	k.between("sip.max_message", s.MaxMessage, minSIPMaxMessage, sip.DefaultMaxMessage)
	k.between("sip.udp.max_flows", s.UDP.MaxFlows, 1, maxSIPMaxFlows)
	for i, a := range s.UDP.UpstreamAddresses {
		if ip, err := netip.ParseAddr(a); err != nil || ip.Zone() != "" {
			k.add(indexPath("sip.udp.upstream_addresses", i), "%q is not an IP address (no zone)", clip(a, 64))
		}
	}
	if s.IdleTimeout < minSIPIdle {
		k.add("sip.idle_timeout", "%s is shorter than %s: phones re-register less often, and incoming calls would find no flow", s.IdleTimeout, minSIPIdle)
	}
	if s.Calls.MaxDuration < minSIPCallMax {
		k.add("sip.calls.max_duration", "%s is shorter than %s", s.Calls.MaxDuration, minSIPCallMax)
	}
	k.between("sip.calls.max_tracked", s.Calls.MaxTracked, 1, maxSIPTracked)
	k.brands(services)
}

// brands checks the tenants.
func (k *checker) brands(services map[string]*Service) {
	brandNames := make(map[string]string)
	companyNames := make(map[string]string)
	owner := k.sipOwner
	if owner == nil {
		owner = make(map[string]string)
	}
	for i := range k.c.SIP.Brands {
		b := &k.c.SIP.Brands[i]
		bp := indexPath("sip.brands", i)
		if k.name(bp+".name", b.Name) {
			if prev, dup := brandNames[b.Name]; dup {
				k.add(bp+".name", "%q is already the name of %s", b.Name, prev)
			} else {
				brandNames[b.Name] = bp
			}
		}
		if b.MaxCalls < 0 {
			k.add(bp+".max_calls", "must be 0 (no limit) or positive")
		}
		if len(b.Companies) == 0 {
			k.add(bp+".companies", "a brand needs at least one company")
		}
		for j := range b.Companies {
			co := &b.Companies[j]
			cp := indexPath(bp+".companies", j)
			if k.name(cp+".name", co.Name) {
				if prev, dup := companyNames[co.Name]; dup {
					k.add(cp+".name", "%q is already the name of %s", co.Name, prev)
				} else {
					companyNames[co.Name] = cp
				}
			}
			k.company(cp, co, services, owner)
		}
	}
}

func (k *checker) company(cp string, co *Company, services map[string]*Service, owner map[string]string) {
	switch svc, ok := services[co.Service]; {
	case co.Service == "":
		k.add(cp+".service", "required: the sip service the company's domains are routed to")
	case !ok:
		k.add(cp+".service", "no service is named %q", clip(co.Service, 64))
	case svc.Protocol != ProtoSIP:
		k.add(cp+".service", "service %q is %s, not sip", svc.Name, svc.Protocol)
	}
	if len(co.Domains) == 0 {
		k.add(cp+".domains", "a company needs at least one SIP domain")
	}
	for j, d := range co.Domains {
		if strings.HasPrefix(d, "*") {
			k.add(indexPath(cp+".domains", j), "a company's domains are exact; put wildcards on the service")
		}
	}
	k.claim(cp+".domains", co.Domains, checkSIPDomain, owner, "domain %q is already claimed by %s")
	for j, n := range co.AllowedNetworks {
		if _, err := ParseNetwork(n); err != nil {
			k.add(indexPath(cp+".allowed_networks", j), "%v", err)
		}
	}
	if _, err := regexp.Compile(co.External); err != nil {
		k.add(cp+".external", "not a regular expression: %v", err)
	}
	for j, d := range co.BlockedDestinations {
		if _, err := regexp.Compile(d); err != nil {
			k.add(indexPath(cp+".blocked_destinations", j), "not a regular expression: %v", err)
		}
	}
	if co.MaxCalls < 0 {
		k.add(cp+".max_calls", "must be 0 (no limit) or positive")
	}
	users := make(map[string]string)
	for j, u := range co.Users {
		up := indexPath(cp+".users", j)
		if u.Name == "" {
			k.add(up+".name", "required: the user part of the user's SIP URI")
		} else if prev, dup := users[u.Name]; dup {
			k.add(up+".name", "%q is already listed as %s", clip(u.Name, 64), prev)
		} else {
			users[u.Name] = up
		}
		k.between(up+".calls_from_other_networks", u.CallsFromOtherNetworks, 0, maxRoadwarrior)
	}
}

// Upstreams returns the parsed sip.udp.upstream_addresses; invalid entries
// are skipped (Validate reports them).
func (s *SIP) Upstreams() []netip.Addr {
	var out []netip.Addr
	for _, a := range s.UDP.UpstreamAddresses {
		if ip, err := netip.ParseAddr(a); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}
