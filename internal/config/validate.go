package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Validate checks the whole configuration, defaults applied (Parse does
// both; a Config built in code needs ApplyDefaults first), and returns every
// problem at once: an errors.Join of *Problem, each naming file, line and
// field, sorted by line. The error matches ErrInvalid. nil means valid.
func (c *Config) Validate() error {
	probs := c.validate()
	if len(probs) == 0 {
		return nil
	}
	return joinProblems(probs)
}

// checker collects problems while validating one Config.
type checker struct {
	c        *Config
	probs    []*Problem
	sipOwner map[string]string // sip domain → path of its claim, filled by services
}

func (k *checker) add(path, format string, args ...any) {
	k.addLine(k.c.pos.line(path), path, format, args...)
}

func (k *checker) addLine(line int, path, format string, args ...any) {
	k.probs = append(k.probs, &Problem{File: k.c.File, Line: line, Path: path, Message: fmt.Sprintf(format, args...)})
}

func (c *Config) validate() []*Problem {
	k := &checker{c: c}
	if c.DataDir == "" {
		k.add("data_dir", "required")
	}
	k.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	k.oneOf("log.format", c.Log.Format, "text", "json")

	t := c.Timeouts
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"first_bytes", t.FirstBytes}, {"tls_handshake", t.TLSHandshake}, {"idle", t.Idle},
		{"backend_connect", t.BackendConnect}, {"backend_response", t.BackendResponse},
		{"http_read_header", t.HTTPReadHeader}, {"http_idle", t.HTTPIdle}, {"shutdown", t.Shutdown},
	} {
		if d.v <= 0 {
			k.add("timeouts."+d.key, "must be a positive duration, got %s", d.v)
		}
	}

	l := c.Limits
	k.between("limits.max_connections", l.MaxConnections, 1, maxMaxConnections)
	k.between("limits.max_header_bytes", l.MaxHeaderBytes, minMaxHeaderBytes, maxMaxHeaderBytes)
	k.between("limits.ldap_max_message", l.LDAPMaxMessage, minLDAPMaxMessage, maxLDAPMaxMessage)
	k.between("limits.backend_idle_conns", l.BackendIdleConns, 1, maxBackendIdleConns)
	k.between("limits.sniff_bytes", l.SniffBytes, minSniffBytes, maxSniffBytes)

	k.oneOf("tls.min_version", c.TLS.MinVersion, "1.2", "1.3")
	certs := k.certificates()
	services := k.services()
	k.listeners(certs, services)
	k.ldapPolicy(services)
	k.fraud()
	k.admin()
	k.sip(services)
	k.turn()
	k.firewall()
	return k.probs
}

func (k *checker) oneOf(path, v string, allowed ...string) bool {
	if slices.Contains(allowed, v) {
		return true
	}
	if v == "" {
		k.add(path, "required; one of %s", strings.Join(allowed, ", "))
	} else {
		k.add(path, "%q is not one of %s", clip(v, 64), strings.Join(allowed, ", "))
	}
	return false
}

func (k *checker) between(path string, v, lo, hi int) {
	if v < lo || v > hi {
		k.add(path, "%d is out of range %d..%d", v, lo, hi)
	}
}

// name checks a listener, service or certificate name.
func (k *checker) name(path, v string) bool {
	if v == "" {
		k.add(path, "required")
		return false
	}
	if !validName(v) {
		k.add(path, "%q is not a valid name: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", clip(v, 64))
		return false
	}
	return true
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case i > 0 && (ch == '.' || ch == '_' || ch == '-'):
		default:
			return false
		}
	}
	return true
}

// certificates validates tls.certificates and returns their names.
func (k *checker) certificates() map[string]bool {
	names := make(map[string]bool)
	first := make(map[string]string)
	for i, cert := range k.c.TLS.Certificates {
		p := indexPath("tls.certificates", i)
		if cert.Cert == "" {
			k.add(p+".cert", "required: the PEM certificate chain file")
		}
		if cert.Key == "" {
			k.add(p+".key", "required: the PEM private key file")
		}
		if cert.Name == "" && cert.Cert == "" {
			k.add(p+".name", "required (or set cert, whose base name is the default)")
		} else if !validName(cert.Name) {
			k.add(p+".name", "%q is not a valid name: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (set name when the file name is not one)", clip(cert.Name, 64))
		} else if prev, dup := first[cert.Name]; dup {
			k.add(p+".name", "%q is already the name of %s", cert.Name, prev)
		} else {
			first[cert.Name] = p
			names[cert.Name] = true
		}
		for j, h := range cert.Hosts {
			if err := checkHost(h); err != nil {
				k.add(indexPath(p+".hosts", j), "%v", err)
			}
		}
	}
	return names
}

// services validates the services, host and domain uniqueness included,
// and returns them by name.
func (k *checker) services() map[string]*Service {
	c := k.c
	defaultHTTP := make(map[string]bool) // services that are some listener's default_service
	for _, l := range c.Listeners {
		defaultHTTP[l.DefaultService] = true
	}
	delete(defaultHTTP, "")
	byName := make(map[string]*Service)
	namePath := make(map[string]string)
	hostOwner := make(map[string]string)   // lower-case host → path of its first claim
	domainOwner := make(map[string]string) // lower-case ldap domain → path
	sipOwner := make(map[string]string)    // lower-case sip domain → path
	k.sipOwner = sipOwner
	for i := range c.Services {
		s := &c.Services[i]
		p := indexPath("services", i)
		if k.name(p+".name", s.Name) {
			switch prev, dup := namePath[s.Name]; {
			case dup:
				k.add(p+".name", "%q is already the name of %s", s.Name, prev)
			case s.Name == Refuse:
				k.add(p+".name", "%q is reserved (it is the ldap policy value)", Refuse)
			default:
				namePath[s.Name] = p
				byName[s.Name] = s
			}
		}
		if k.oneOf(p+".protocol", s.Protocol, ProtoHTTP, ProtoLDAP, ProtoSIP, ProtoTCP) {
			k.serviceFields(p, s, defaultHTTP[s.Name])
		}
		k.claim(p+".hosts", s.Hosts, checkHost, hostOwner, "host %q is already routed by %s")
		if s.Protocol == ProtoSIP {
			k.claim(p+".domains", s.Domains, checkSIPDomain, sipOwner, "domain %q is already claimed by %s")
		} else {
			k.claim(p+".domains", s.Domains, checkDomain, domainOwner, "domain %q is already claimed by %s")
		}
		k.backend(p+".backend", s.Backend, s.Protocol == ProtoSIP)
	}
	return byName
}

// serviceFields checks what depends on a service's (valid) protocol.
func (k *checker) serviceFields(p string, s *Service, isDefault bool) {
	c := k.c
	if s.Protocol != ProtoHTTP {
		if len(s.Hosts) > 0 {
			k.add(p+".hosts", "hosts route http services only; this service is %s", s.Protocol)
		}
		if s.Paths.Default != "" || len(s.Paths.Allow) > 0 || len(s.Paths.Deny) > 0 {
			k.add(p+".paths", "paths apply to http services only; this service is %s", s.Protocol)
		}
		if len(s.RejectStatuses) > 0 {
			k.add(p+".reject_statuses", "reject_statuses apply to http services only; this service is %s", s.Protocol)
		}
	}
	if s.Protocol != ProtoLDAP && s.Protocol != ProtoSIP && len(s.Domains) > 0 {
		k.add(p+".domains", "domains route ldap and sip services only; this service is %s", s.Protocol)
	}
	if s.Protocol != ProtoSIP && s.ClientAddressHeader != "" {
		k.add(p+".client_address_header", "applies to sip services only; this service is %s", s.Protocol)
	}
	switch s.Protocol {
	case ProtoHTTP:
		if len(s.Hosts) == 0 && !isDefault {
			k.add(p+".hosts", "an http service needs at least one host (or must be a listener's default_service)")
		}
		k.paths(p+".paths", s.Paths)
		for j, st := range s.RejectStatuses {
			if st < 100 || st > 599 {
				k.add(indexPath(p+".reject_statuses", j), "%d is not an HTTP status (100..599)", st)
			}
		}
	case ProtoLDAP:
		if len(s.Domains) == 0 && !c.isLDAPPolicyTarget(s.Name) {
			k.add(p+".domains", "an ldap service needs at least one domain (or must be named by the ldap policy)")
		}
	case ProtoSIP:
		if len(s.Domains) == 0 && !c.isSIPTarget(s.Name) {
			k.add(p+".domains", "a sip service needs at least one domain (or a company naming it, or to be sip.default_service)")
		}
		if h := s.ClientAddressHeader; h != "" {
			if err := checkSIPHeaderName(h); err != nil {
				k.add(p+".client_address_header", "%v", err)
			}
		}
	}
}

func (c *Config) isLDAPPolicyTarget(name string) bool {
	p := c.LDAP
	return name != "" && (p.Anonymous == name || p.SASL == name || p.StartTLS == name || p.DefaultService == name)
}

func (k *checker) backend(p string, b Backend, isSIP bool) {
	if b.Address == "" {
		k.add(p+".address", "required: host:port of the private service")
	} else if host, port, err := SplitHostPort(b.Address); err != nil {
		k.add(p+".address", "%v", err)
	} else if host == "" {
		k.add(p+".address", "%q has no host", b.Address)
	} else if port == 0 {
		k.add(p+".address", "port 0 is not a backend port")
	} else if err := checkAddrHost(host); err != nil {
		k.add(p+".address", "%v", err)
	}
	if !b.TLS {
		for _, f := range []struct {
			key string
			set bool
		}{{"ca", b.CA != ""}, {"server_name", b.ServerName != ""}, {"insecure_skip_verify", b.InsecureSkipVerify}} {
			if f.set {
				k.add(p+"."+f.key, "only meaningful with tls: true (the backend is spoken to in plaintext)")
			}
		}
	} else if b.InsecureSkipVerify && b.CA != "" {
		k.add(p+".ca", "has no effect with insecure_skip_verify: true; remove one of them")
	}
	if b.ServerName != "" {
		if err := checkAddrHost(b.ServerName); err != nil {
			k.add(p+".server_name", "%v", err)
		}
	}
	k.sipBackend(p, b, isSIP)
}

func (k *checker) paths(p string, r PathRules) {
	k.oneOf(p+".default", r.Default, Allow, Deny)
	for _, list := range []struct {
		key   string
		rules []PathRule
	}{{"allow", r.Allow}, {"deny", r.Deny}} {
		for j, rule := range list.rules {
			rp := indexPath(p+"."+list.key, j)
			line := k.c.pos.line(rp)
			if !k.c.pos.has(rp) && rule.Line > 0 {
				line = rule.Line
			}
			if err := checkPattern(rule); err != nil {
				k.addLine(line, rp+".path", "%v", err)
			}
			for m, meth := range rule.Methods {
				if err := checkMethod(meth); err != nil {
					k.addLine(lineOr(k.c.pos, indexPath(rp+".methods", m), line), indexPath(rp+".methods", m), "%v", err)
				}
			}
			if dup := firstDuplicate(rule.Methods); dup >= 0 {
				mp := indexPath(rp+".methods", dup)
				k.addLine(lineOr(k.c.pos, mp, line), mp, "%q is listed twice", rule.Methods[dup])
			}
			for m, n := range rule.Networks {
				if _, err := ParseNetwork(n); err != nil {
					np := indexPath(rp+".networks", m)
					k.addLine(lineOr(k.c.pos, np, line), np, "%v", err)
				}
			}
		}
	}
}

// lineOr is the line of path when written in the file, else def.
func lineOr(x *posIndex, path string, def int) int {
	if x.has(path) {
		return x.line(path)
	}
	return def
}

func (k *checker) listeners(certs map[string]bool, services map[string]*Service) {
	c := k.c
	if len(c.Listeners) == 0 {
		k.add("listeners", "no listeners: at least one is required")
		return
	}
	names := make(map[string]string)
	addrs := make(map[string]string)
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := indexPath("listeners", i)
		if k.name(p+".name", l.Name) {
			if prev, dup := names[l.Name]; dup {
				k.add(p+".name", "%q is already the name of %s", l.Name, prev)
			} else {
				names[l.Name] = p
			}
		}
		if l.Address == "" {
			k.add(p+".address", "required: host:port to listen on, e.g. \":443\"")
		} else if host, port, err := SplitHostPort(l.Address); err != nil {
			k.add(p+".address", "%v", err)
		} else if host != "" && !isIP(host) {
			k.add(p+".address", "host %q is not an IP address; write an IP or leave it empty for every address (\":%d\")", clip(host, 64), port)
		} else if port != 0 {
			key := l.Transport + " " + net.JoinHostPort(canonicalIP(host), strconv.Itoa(port))
			if prev, dup := addrs[key]; dup {
				k.add(p+".address", "%q is already the address of %s", l.Address, prev)
			} else {
				addrs[key] = p
			}
		}
		k.oneOf(p+".tls", l.TLS, TLSNone, TLSRequired, TLSOptional)
		udp := l.Transport == TransportUDP
		if k.oneOf(p+".transport", l.Transport, TransportTCP, TransportUDP) && udp {
			k.udpListener(p, l)
		}
		if l.Certificate != "" && !certs[l.Certificate] {
			k.add(p+".certificate", "no certificate is named %q in tls.certificates", clip(l.Certificate, 64))
		}
		has := k.protocols(p+".protocols", l.Protocols)
		// A value inherited from limits.max_connections is checked there.
		if l.MaxConnections != c.Limits.MaxConnections && (l.MaxConnections < 1 || l.MaxConnections > maxMaxConnections) {
			k.add(p+".max_connections", "%d is out of range 1..%d", l.MaxConnections, maxMaxConnections)
		}
		if len(has) == 0 {
			// Without valid protocols, what depends on them cannot be judged.
		} else if l.DefaultService != "" {
			switch s, ok := services[l.DefaultService]; {
			case !has[ProtoHTTP]:
				k.add(p+".default_service", "set, but protocols does not include http")
			case !ok:
				k.add(p+".default_service", "no service is named %q", clip(l.DefaultService, 64))
			case s.Protocol != ProtoHTTP:
				k.add(p+".default_service", "service %q is %s, not http", s.Name, s.Protocol)
			}
		}
		switch s, ok := services[l.TCPService]; {
		case len(has) == 0:
		case l.TCPService == "" && has[ProtoTCP]:
			k.add(p+".tcp_service", "required when protocols includes tcp: the service receiving unrecognised connections")
		case l.TCPService == "":
		case !has[ProtoTCP]:
			k.add(p+".tcp_service", "set, but protocols does not include tcp")
		case !ok:
			k.add(p+".tcp_service", "no service is named %q", clip(l.TCPService, 64))
		case s.Protocol != ProtoTCP:
			k.add(p+".tcp_service", "service %q is %s, not tcp", s.Name, s.Protocol)
		}
		for j, n := range l.TrustedProxies {
			if _, err := ParseNetwork(n); err != nil {
				k.add(indexPath(p+".trusted_proxies", j), "%v", err)
			}
		}
	}
}

// protocols validates a listener's protocols and returns the valid ones.
func (k *checker) protocols(p string, protos []string) map[string]bool {
	has := make(map[string]bool)
	if len(protos) == 0 {
		k.add(p, "must list at least one of http, ldap, sip, sip-ws, turn, tcp")
		return has
	}
	for j, proto := range protos {
		pp := indexPath(p, j)
		switch {
		case proto != ProtoHTTP && proto != ProtoLDAP && proto != ProtoSIP && proto != ProtoSIPWS && proto != ProtoTURN && proto != ProtoTCP:
			k.add(pp, "%q is not one of http, ldap, sip, sip-ws, turn, tcp", clip(proto, 64))
		case has[proto]:
			k.add(pp, "%q is listed twice", proto)
		default:
			has[proto] = true
		}
	}
	return has
}

func (k *checker) ldapPolicy(services map[string]*Service) {
	p := k.c.LDAP
	for _, f := range []struct{ key, v string }{
		{"anonymous", p.Anonymous}, {"sasl", p.SASL}, {"starttls", p.StartTLS}, {"default_service", p.DefaultService},
	} {
		path := "ldap." + f.key
		if f.v == Refuse {
			continue
		}
		switch s, ok := services[f.v]; {
		case f.v == "":
			k.add(path, "required: %q or the name of an ldap service", Refuse)
		case !ok:
			k.add(path, "%q is neither %q nor the name of a service", clip(f.v, 64), Refuse)
		case s.Protocol != ProtoLDAP:
			k.add(path, "service %q is %s, not ldap", s.Name, s.Protocol)
		}
	}
}

// explicitZeros reports numbers and durations written as zero (or left
// empty) in the file: zero means "the default", which is never what writing
// 0 intends.
func (c *Config) explicitZeros() []*Problem {
	var probs []*Problem
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Struct:
			t := v.Type()
			for i := range t.NumField() {
				sf := t.Field(i)
				name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
				if !sf.IsExported() || name == "-" || name == "" || sf.Tag.Get("zero") == "meaningful" {
					continue
				}
				walk(v.Field(i), joinPath(path, name))
			}
		case reflect.Slice:
			if v.Type().Elem().Kind() == reflect.Struct {
				for i := range v.Len() {
					walk(v.Index(i), indexPath(path, i))
				}
			}
		case reflect.Int, reflect.Int64:
			if v.Int() == 0 && c.pos.has(path) {
				probs = append(probs, &Problem{File: c.File, Line: c.pos.line(path), Path: path,
					Message: "must be positive; leave the key out for the default"})
			}
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return probs
}

// ParseNetwork reads a network written as CIDR ("10.20.0.0/24") or as a
// single address ("192.0.2.7", which becomes /32; /128 for IPv6). A prefix
// with host bits set ("10.20.0.1/24") is refused as a likely typo, with the
// masked form suggested; zones are refused; IPv4-mapped IPv6 forms are
// unmapped, as sources are. This is the one network syntax of pbxgate: the
// configuration file, the CLI and the admin API use it.
func ParseNetwork(s string) (netip.Prefix, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return netip.Prefix{}, errors.New("empty; write an IP address or a network like 10.20.0.0/24")
	}
	notNetwork := fmt.Errorf("%q is not a network (CIDR like 10.20.0.0/24, or an IP)", clip(in, 64))
	if strings.Contains(in, "/") {
		p, err := netip.ParsePrefix(in)
		if err != nil {
			return netip.Prefix{}, notNetwork
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", in, m)
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(in)
	if err != nil {
		return netip.Prefix{}, notNetwork
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", clip(in, 64))
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Networks parses a validated list of networks (CIDR or single
// addresses) with ParseNetwork; invalid entries, which Validate reports,
// are skipped.
func Networks(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := ParseNetwork(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// splitHostPort splits host:port, requiring a numeric port 0..65535 and
// IPv6 hosts in brackets.
func SplitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		switch {
		case strings.Count(addr, ":") > 1 && !strings.HasPrefix(addr, "["):
			return "", 0, fmt.Errorf("%q: IPv6 addresses go in brackets, e.g. [::1]:443", clip(addr, 64))
		case !strings.Contains(addr, ":"):
			return "", 0, fmt.Errorf("%q has no port; write host:port, e.g. :443 or 10.0.0.5:8080", clip(addr, 64))
		}
		return "", 0, fmt.Errorf("%q is not host:port", clip(addr, 64))
	}
	if !isDigits(port) || len(port) > 5 {
		return "", 0, fmt.Errorf("%q: port %q is not a number", clip(addr, 64), clip(port, 16))
	}
	n, _ := strconv.Atoi(port)
	if n > 65535 {
		return "", 0, fmt.Errorf("%q: port %d is out of range 0..65535", clip(addr, 64), n)
	}
	return host, n, nil
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func canonicalIP(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return s
}

// checkAddrHost accepts an IP address or a DNS name (a backend's host).
func checkAddrHost(h string) error {
	if isIP(h) {
		return nil
	}
	if !validDNSName(h) {
		return fmt.Errorf("%q is neither an IP address nor a DNS name", clip(h, 64))
	}
	return nil
}

// checkHost validates a Host/SNI name: a DNS name, "*.name" (one label),
// or an IP address (IPv6 without brackets).
func checkHost(h string) error {
	switch {
	case h == "":
		return fmt.Errorf("empty host")
	case h == "*":
		return fmt.Errorf(`"*" is not a host; use a listener's default_service for requests matching no host`)
	case isIP(h):
		return nil
	case strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") && isIP(h[1:len(h)-1]):
		return fmt.Errorf("%q: write IPv6 hosts without brackets", h)
	case strings.HasSuffix(h, "."):
		return fmt.Errorf("%q: remove the trailing dot", clip(h, 64))
	case strings.Contains(h, ":"):
		return fmt.Errorf("%q: hosts are names without port", clip(h, 64))
	}
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return fmt.Errorf("%q: a wildcard is allowed only as the whole first label (*.example.com)", clip(h, 64))
	}
	if !validDNSName(name) {
		return fmt.Errorf("%q is not a valid host name", clip(h, 64))
	}
	return nil
}

// validDNSName accepts names of letters, digits, '-' and '_' labels.
func validDNSName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
				return false
			}
		}
	}
	return true
}

// checkDomain validates an LDAP bind domain: DNS form (with a dot) or a
// NetBIOS name (no dot, at most 15 characters).
func checkDomain(d string) error {
	switch {
	case d == "":
		return fmt.Errorf("empty domain")
	case strings.Contains(d, "."):
		if !validDNSName(d) {
			return fmt.Errorf("%q is not a valid DNS domain", clip(d, 64))
		}
		return nil
	case len(d) > 15:
		return fmt.Errorf("%q: a NetBIOS domain has at most 15 characters (use the DNS form with dots otherwise)", clip(d, 64))
	}
	for i := 0; i < len(d); i++ {
		ch := d[i]
		if ch <= ' ' || ch >= 0x7f || strings.IndexByte(`\/:*?"<>|@=,+;`, ch) >= 0 {
			return fmt.Errorf("%q is not a valid NetBIOS domain", d)
		}
	}
	return nil
}

// claim checks each name of list at path and records it in owner
// (lower-cased); a name another path already claimed is reported with dup,
// which gets the name and the earlier path.
func (k *checker) claim(path string, list []string, check func(string) error, owner map[string]string, dup string) {
	for j, name := range list {
		np := indexPath(path, j)
		if err := check(name); err != nil {
			k.add(np, "%v", err)
			continue
		}
		key := strings.ToLower(name)
		if prev, taken := owner[key]; taken {
			k.add(np, dup, name, prev)
			continue
		}
		owner[key] = np
	}
}

// checkMethod requires an upper-case RFC 7230 token.
func checkMethod(m string) error {
	if m == "" {
		return fmt.Errorf("empty method")
	}
	for i := 0; i < len(m); i++ {
		if !isTchar(m[i]) {
			return fmt.Errorf("%q is not an HTTP method (RFC 7230 token)", clip(m, 64))
		}
	}
	if up := strings.ToUpper(m); up != m {
		return fmt.Errorf("%q: methods are case-sensitive; write %q", m, up)
	}
	return nil
}

func isTchar(ch byte) bool {
	return ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0
}

func firstDuplicate(s []string) int {
	seen := make(map[string]bool, len(s))
	for i, v := range s {
		if seen[v] {
			return i
		}
		seen[v] = true
	}
	return -1
}

// checkPattern validates a path rule's pattern (see PathRule.Pattern).
func checkPattern(r PathRule) error {
	if r.Path == "" {
		return fmt.Errorf("required: a path like /app/, = /login.php or /**/*.php")
	}
	kind, p := r.Pattern()
	if !strings.HasPrefix(p, "/") {
		if kind == PathExact {
			return fmt.Errorf("%q: the exact path after \"= \" must start with /", clip(r.Path, 64))
		}
		return fmt.Errorf("%q must start with / (or \"= /\" for an exact path)", clip(r.Path, 64))
	}
	for i := 0; i < len(p); i++ {
		switch ch := p[i]; {
		case ch < 0x20 || ch == 0x7f:
			return fmt.Errorf("%q contains a control character", clip(r.Path, 64))
		case ch == '\\':
			return fmt.Errorf("%q contains a backslash; requests with one are refused before matching", clip(r.Path, 64))
		case ch == '%' && (i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2])):
			return fmt.Errorf("%q contains a bare '%%'; a literal '%%' is written %%25", clip(r.Path, 64))
		case ch == '%' && p[i+1:i+3] != "25":
			return fmt.Errorf("%q contains a percent-escape; patterns match the decoded path, write the character itself (only '%%' stays %%25)", clip(r.Path, 64))
		case ch == '#':
			return fmt.Errorf("%q contains '#'; fragments never reach the server", clip(r.Path, 64))
		}
	}
	if kind != PathGlob && strings.Contains(p, "?") {
		return fmt.Errorf("%q contains '?'; the query string is not matched", clip(r.Path, 64))
	}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		switch {
		case seg == "" && !last:
			return fmt.Errorf("%q contains an empty segment (//); requests are matched after merging slashes, so it would never match", clip(r.Path, 64))
		case seg == "." || seg == "..":
			return fmt.Errorf("%q contains a %q segment; requests are matched after resolving them, so it would never match", clip(r.Path, 64), seg)
		}
	}
	if kind == PathGlob {
		if _, err := path.Match(strings.ReplaceAll(p, "**", "*"), ""); err != nil {
			return fmt.Errorf("%q is not a valid glob (unclosed [ or bad range)", clip(r.Path, 64))
		}
	}
	return nil
}

func isHex(ch byte) bool {
	return ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f' || ch >= 'A' && ch <= 'F'
}
