package config

import (
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pbxgate/pbxgate/internal/sip"
)

// Values of the string-typed enumerations.
const (
	TLSNone     = "none"     // Listener.TLS: TLS refused
	TLSRequired = "required" // Listener.TLS: plaintext refused
	TLSOptional = "optional" // Listener.TLS: both, told apart by the first bytes

	ProtoHTTP  = "http" // Listener.Protocols, Service.Protocol
	ProtoLDAP  = "ldap"
	ProtoTCP   = "tcp"
	ProtoSIP   = "sip"
	ProtoSIPWS = "sip-ws" // Listener.Protocols only
	ProtoTURN  = "turn"   // Listener.Protocols only: STUN and TURN

	TransportTCP = "tcp" // Listener.Transport
	TransportUDP = "udp"

	Allow = "allow" // PathRules.Default
	Deny  = "deny"

	Refuse = "refuse" // LDAPPolicy values

	Off       = "off"  // Admin.Address, Admin.Socket: disabled
	StoreBolt = "bolt" // Store.Backend
)

// The defaults documented on the fields of Config. This is the only place
// they are written in code; docs/configuration.md is checked against the
// effective values by a test.
const (
	DefaultDataDir   = "/var/lib/pbxgate"
	DefaultLogLevel  = "info"
	DefaultLogFormat = "text"
	DefaultLogAccess = true

	DefaultFirstBytes      = Duration(5 * time.Second)
	DefaultTLSHandshake    = Duration(10 * time.Second)
	DefaultIdle            = Duration(5 * time.Minute)
	DefaultBackendConnect  = Duration(5 * time.Second)
	DefaultBackendResponse = Duration(60 * time.Second)
	DefaultHTTPReadHeader  = Duration(10 * time.Second)
	DefaultHTTPIdle        = Duration(2 * time.Minute)
	DefaultShutdown        = Duration(30 * time.Second)

	DefaultMaxConnections   = 10000
	DefaultMaxHeaderBytes   = 65536
	DefaultLDAPMaxMessage   = 65536
	DefaultBackendIdleConns = 256
	DefaultSniffBytes       = 8192

	DefaultFraudEnabled        = true
	DefaultSuspiciousPerMinute = 10
	DefaultBlacklistFor        = Duration(30 * time.Minute)
	DefaultBlacklistMax        = Duration(24 * time.Hour)
	DefaultRecidiveWindow      = Duration(7 * 24 * time.Hour)
	DefaultWeightGateway       = 1
	DefaultWeightService       = 1
	DefaultWeightUnreachable   = 0
	DefaultMaxSources          = 1_000_000
	DefaultNATSuccessWindow    = Duration(time.Hour)
	DefaultNATMaxFactor        = 100
	DefaultRecentEvents        = 10000
	DefaultSuspectRate         = 200
	DefaultRefusedHold         = Duration(10 * time.Second)
	DefaultUnprovenConcurrency = 16

	DefaultSIPFloodWindow     = Duration(2 * time.Second)
	DefaultSIPFloodLimit      = 100
	DefaultSIPFloodBlockFor   = Duration(5 * time.Minute)
	DefaultSIPFloodMaxSources = 1_000_000
	DefaultSIPMaxMessage      = 65535
	DefaultSIPMaxFlows        = 100000
	DefaultSIPIdle            = Duration(time.Hour)
	DefaultSIPCallMaxDuration = Duration(3 * time.Hour)
	DefaultSIPMaxTracked      = 100000
	DefaultSIPExternal        = `^\+?[0-9]{6,}$`

	DefaultTURNPortMin     = 49152
	DefaultTURNPortMax     = 65535
	DefaultTURNPerUser     = 50
	DefaultTURNPerSource   = 200
	DefaultTURNTotal       = 20000
	DefaultTURNMaxLifetime = Duration(12 * time.Hour)
	DefaultTURNMaxKbps     = 10000
	DefaultTURNIdle        = Duration(10 * time.Minute)

	DefaultFirewallStateDir     = "firewall" // inside DataDir
	DefaultFirewallTestDuration = Duration(10 * time.Minute)
	DefaultKernelBLResync       = Duration(time.Minute)

	DefaultAdminAddress = "127.0.0.1:9190"
	DefaultAdminSocket  = "admin.sock" // inside DataDir
	DefaultStoreBackend = StoreBolt
	DefaultStorePath    = "state.db" // inside DataDir

	DefaultMinTLSVersion = "1.2"
	DefaultListenerTLS   = TLSNone
	DefaultLDAPPolicy    = Refuse
)

// Default lists, returned fresh so callers cannot alter the defaults.
func defaultProtocols() []string     { return []string{ProtoHTTP} }
func defaultUDPProtocols() []string  { return []string{ProtoSIP} }
func defaultScannerAgents() []string { return slices.Clone(sip.DefaultScannerAgents) }
func defaultRejectStatuses() []int   { return []int{401, 403} }
func defaultReasonWeights() map[string]int {
	return map[string]int{"auth_challenge": 0, "scanner": 10, "call_limit": 0}
}

// Bounds enforced by Validate on the limits.
const (
	maxMaxConnections   = 1_000_000
	minMaxHeaderBytes   = 1024
	maxMaxHeaderBytes   = 1 << 20 // 1 MiB
	minLDAPMaxMessage   = 1024
	maxLDAPMaxMessage   = 16 << 20 // 16 MiB
	maxBackendIdleConns = 100_000
	minSniffBytes       = 64
	maxSniffBytes       = 65536
	maxWeight           = 1000
	maxSuspicious       = 1_000_000
	minMaxSources       = 1000
	maxMaxSources       = 100_000_000
	maxNATMaxFactor     = 10_000
	maxRecentEvents     = 1_000_000
	maxSuspectRate      = 1_000_000
	maxRefusedHold      = Duration(5 * time.Minute)
	maxUnprovenConc     = 1_000_000
)

// Defaults returns a Config holding every default that does not depend on
// other fields: no listeners, no services.
func Defaults() *Config {
	c := &Config{}
	c.ApplyDefaults()
	return c
}

// ApplyDefaults replaces every zero field with its documented default, in
// place, and turns empty lists whose emptiness means the same as absence into
// nil. It is idempotent. Parse calls it; call it on a Config built in code
// before Validate.
//
// Defaults that depend on other fields are filled in too: a certificate's
// name (its file's base name), a TLS listener's certificate (the first one),
// a listener's max_connections (limits.max_connections), a service's path
// default (deny when allow has rules), a TLS backend's server_name (the host
// of its address). A certificate's hosts (its DNS names) need the file and are
// left to the gateway.
func (c *Config) ApplyDefaults() {
	setStr(&c.DataDir, DefaultDataDir)
	setStr(&c.Log.Level, DefaultLogLevel)
	setStr(&c.Log.Format, DefaultLogFormat)
	if c.Log.Access == nil {
		v := DefaultLogAccess
		c.Log.Access = &v
	}

	t := &c.Timeouts
	setDur(&t.FirstBytes, DefaultFirstBytes)
	setDur(&t.TLSHandshake, DefaultTLSHandshake)
	setDur(&t.Idle, DefaultIdle)
	setDur(&t.BackendConnect, DefaultBackendConnect)
	setDur(&t.BackendResponse, DefaultBackendResponse)
	setDur(&t.HTTPReadHeader, DefaultHTTPReadHeader)
	setDur(&t.HTTPIdle, DefaultHTTPIdle)
	setDur(&t.Shutdown, DefaultShutdown)

	l := &c.Limits
	setInt(&l.MaxConnections, DefaultMaxConnections)
	setInt(&l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setInt(&l.LDAPMaxMessage, DefaultLDAPMaxMessage)
	setInt(&l.BackendIdleConns, DefaultBackendIdleConns)
	setInt(&l.SniffBytes, DefaultSniffBytes)

	setStr(&c.TLS.MinVersion, DefaultMinTLSVersion)
	c.TLS.Certificates = nilIfEmpty(c.TLS.Certificates)
	for i := range c.TLS.Certificates {
		cert := &c.TLS.Certificates[i]
		if cert.Name == "" && cert.Cert != "" {
			base := filepath.Base(cert.Cert)
			cert.Name = strings.TrimSuffix(base, filepath.Ext(base))
		}
		cert.Hosts = nilIfEmpty(cert.Hosts)
	}

	c.Listeners = nilIfEmpty(c.Listeners)
	for i := range c.Listeners {
		ln := &c.Listeners[i]
		setStr(&ln.TLS, DefaultListenerTLS)
		setStr(&ln.Transport, TransportTCP)
		if ln.Certificate == "" && ln.TLS != TLSNone && len(c.TLS.Certificates) > 0 {
			ln.Certificate = c.TLS.Certificates[0].Name
		}
		if ln.Protocols == nil {
			ln.Protocols = defaultProtocols()
			if ln.Transport == TransportUDP {
				ln.Protocols = defaultUDPProtocols()
			}
		}
		setInt(&ln.MaxConnections, c.Limits.MaxConnections)
		ln.TrustedProxies = nilIfEmpty(ln.TrustedProxies)
	}

	c.Services = nilIfEmpty(c.Services)
	for i := range c.Services {
		s := &c.Services[i]
		s.Hosts = nilIfEmpty(s.Hosts)
		s.Domains = nilIfEmpty(s.Domains)
		b := &s.Backend
		if b.TLS && b.ServerName == "" {
			b.ServerName = addressHost(b.Address)
		}
		if s.Protocol == ProtoSIP {
			setStr(&b.UDPAddress, b.Address)
		}
		s.Paths.Allow = nilIfEmpty(s.Paths.Allow)
		s.Paths.Deny = nilIfEmpty(s.Paths.Deny)
		for _, rules := range [][]PathRule{s.Paths.Allow, s.Paths.Deny} {
			for j := range rules {
				rules[j].Methods = nilIfEmpty(rules[j].Methods)
				rules[j].Networks = nilIfEmpty(rules[j].Networks)
			}
		}
		if s.Protocol == ProtoHTTP {
			if s.Paths.Default == "" {
				s.Paths.Default = Allow
				if len(s.Paths.Allow) > 0 {
					s.Paths.Default = Deny
				}
			}
			// nil means the default; an explicit empty list means none.
			if s.RejectStatuses == nil {
				s.RejectStatuses = defaultRejectStatuses()
			}
		}
	}

	p := &c.LDAP
	setStr(&p.Anonymous, DefaultLDAPPolicy)
	setStr(&p.SASL, DefaultLDAPPolicy)
	setStr(&p.StartTLS, DefaultLDAPPolicy)
	setStr(&p.DefaultService, DefaultLDAPPolicy)

	f := &c.Fraud
	if f.Enabled == nil {
		v := DefaultFraudEnabled
		f.Enabled = &v
	}
	setInt(&f.SuspiciousPerMinute, DefaultSuspiciousPerMinute)
	setDur(&f.BlacklistFor, DefaultBlacklistFor)
	setDur(&f.BlacklistMax, DefaultBlacklistMax)
	setDur(&f.RecidiveWindow, DefaultRecidiveWindow)
	setIntPtr(&f.Weights.RejectedByGateway, DefaultWeightGateway)
	setIntPtr(&f.Weights.RejectedByService, DefaultWeightService)
	setIntPtr(&f.Weights.BackendUnreachable, DefaultWeightUnreachable)
	for r, w := range defaultReasonWeights() {
		if _, set := f.Weights.Reasons[r]; !set {
			if f.Weights.Reasons == nil {
				f.Weights.Reasons = make(map[string]int)
			}
			f.Weights.Reasons[r] = w
		}
	}
	f.Whitelist = nilIfEmpty(f.Whitelist)
	setInt(&f.MaxSources, DefaultMaxSources)
	setDur(&f.NAT.SuccessWindow, DefaultNATSuccessWindow)
	setInt(&f.NAT.MaxFactor, DefaultNATMaxFactor)
	setInt(&f.RecentEvents, DefaultRecentEvents)
	setInt(&f.SuspectRate, DefaultSuspectRate)
	setInt(&f.UnprovenConcurrency, DefaultUnprovenConcurrency)
	setDurPtr(&f.RefusedHold, DefaultRefusedHold)

	c.SIP.applyDefaults()
	c.TURN.applyDefaults()
	c.Firewall.applyDefaults(c.DataDir)

	setStr(&c.Admin.Address, DefaultAdminAddress)
	setStr(&c.Admin.Socket, filepath.Join(c.DataDir, DefaultAdminSocket))
	setStr(&c.Store.Backend, DefaultStoreBackend)
	setStr(&c.Store.Path, filepath.Join(c.DataDir, DefaultStorePath))
}

func (t *TURN) applyDefaults() {
	t.PublicAddresses = nilIfEmpty(t.PublicAddresses)
	t.RelayAddresses = nilIfEmpty(t.RelayAddresses)
	t.Users = nilIfEmpty(t.Users)
	t.RESTSecrets = nilIfEmpty(t.RESTSecrets)
	t.AllowPeers = nilIfEmpty(t.AllowPeers)
	setInt(&t.RelayPorts.Min, DefaultTURNPortMin)
	setInt(&t.RelayPorts.Max, DefaultTURNPortMax)
	setIntPtr(&t.Quotas.PerUser, DefaultTURNPerUser)
	setIntPtr(&t.Quotas.PerSource, DefaultTURNPerSource)
	setIntPtr(&t.Quotas.Total, DefaultTURNTotal)
	setDur(&t.Quotas.MaxLifetime, DefaultTURNMaxLifetime)
	setIntPtr(&t.Quotas.MaxKbps, DefaultTURNMaxKbps)
	setDur(&t.IdleTimeout, DefaultTURNIdle)
}

func (f *Firewall) applyDefaults(dataDir string) {
	f.Roles = nilIfEmpty(f.Roles)
	if f.OpenListeners == nil {
		v := true
		f.OpenListeners = &v
	}
	f.TrustedNetworks = nilIfEmpty(f.TrustedNetworks)
	f.AdminFrom = nilIfEmpty(f.AdminFrom)
	f.Ports = nilIfEmpty(f.Ports)
	for i := range f.Ports {
		f.Ports[i].From = nilIfEmpty(f.Ports[i].From)
	}
	f.SIPFloodLimit.Ports = nilIfEmpty(f.SIPFloodLimit.Ports)
	if f.SIPFloodLimit.Rate > 0 {
		setInt(&f.SIPFloodLimit.Burst, f.SIPFloodLimit.Rate)
	}
	f.GeoIP.Rules = nilIfEmpty(f.GeoIP.Rules)
	setStr(&f.StateDir, filepath.Join(dataDir, DefaultFirewallStateDir))
	setDur(&f.TestDuration, DefaultFirewallTestDuration)
	setDur(&f.KernelBlacklist.Resync, DefaultKernelBLResync)
}

func (s *SIP) applyDefaults() {
	s.Trusted = nilIfEmpty(s.Trusted)
	s.UDP.UpstreamAddresses = nilIfEmpty(s.UDP.UpstreamAddresses)
	setDur(&s.Flood.Window, DefaultSIPFloodWindow)
	setInt(&s.Flood.Limit, DefaultSIPFloodLimit)
	setDur(&s.Flood.BlockFor, DefaultSIPFloodBlockFor)
	setInt(&s.Flood.MaxSources, DefaultSIPFloodMaxSources)
	if s.ScannerUserAgents == nil {
		s.ScannerUserAgents = defaultScannerAgents()
	}
	setInt(&s.MaxMessage, DefaultSIPMaxMessage)
	setInt(&s.UDP.MaxFlows, DefaultSIPMaxFlows)
	setDur(&s.IdleTimeout, DefaultSIPIdle)
	setDur(&s.Calls.MaxDuration, DefaultSIPCallMaxDuration)
	setInt(&s.Calls.MaxTracked, DefaultSIPMaxTracked)
	s.Brands = nilIfEmpty(s.Brands)
	for i := range s.Brands {
		b := &s.Brands[i]
		b.Companies = nilIfEmpty(b.Companies)
		for j := range b.Companies {
			co := &b.Companies[j]
			co.Domains = nilIfEmpty(co.Domains)
			co.AllowedNetworks = nilIfEmpty(co.AllowedNetworks)
			co.BlockedDestinations = nilIfEmpty(co.BlockedDestinations)
			co.Users = nilIfEmpty(co.Users)
			setStr(&co.External, DefaultSIPExternal)
		}
	}
}

func setIntPtr(p **int, v int) {
	if *p == nil {
		*p = &v
	}
}

func setStr(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setDur(p *Duration, v Duration) {
	if *p == 0 {
		*p = v
	}
}

func setDurPtr(p **Duration, v Duration) {
	if *p == nil {
		*p = &v
	}
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// addressHost returns the host part of a host:port address, or "" when it
// does not split.
func addressHost(addr string) string {
	host, _, err := SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return host
}
