package config

import (
	"time"
)

// Config is the whole pbxgate configuration file. The zero value of every
// field means "use the default" documented on it; Load applies the defaults.
type Config struct {
	// DataDir holds generated state: the self-signed certificate, the
	// embedded store and the admin socket. Default "/var/lib/pbxgate".
	DataDir string `yaml:"data_dir"`
	// Log configures logging.
	Log Log `yaml:"log"`
	// Timeouts applies to every listener and backend.
	Timeouts Timeouts `yaml:"timeouts"`
	// Limits bounds what one client can make the gateway hold.
	Limits Limits `yaml:"limits"`
	// TLS lists certificates and the TLS policy toward clients.
	TLS TLS `yaml:"tls"`
	// Listeners are the public sockets. At least one is required.
	Listeners []Listener `yaml:"listeners"`
	// Services are the private services traffic is routed to.
	Services []Service `yaml:"services"`
	// LDAP is the policy for LDAP binds that carry no routable domain.
	LDAP LDAPPolicy `yaml:"ldap"`
	// Fraud configures automatic blacklisting from the event stream.
	Fraud Fraud `yaml:"fraud"`
	// Admin configures the admin API (its own listener, never a proxy one).
	Admin Admin `yaml:"admin"`
	// Store says where bans, the whitelist and the ban history are kept.
	Store Store `yaml:"store"`
	// SIP is the SIP edge policy: flood limits, scanners, tenants.
	SIP SIP `yaml:"sip"`
	// TURN is the STUN/TURN server: relay addresses, credentials, quotas.
	TURN TURN `yaml:"turn"`
	// Firewall is the host firewall and the kernel blacklist.
	Firewall Firewall `yaml:"firewall"`

	// File is the path the configuration was read from ("" when parsed from
	// bytes). Not part of the YAML.
	File string `yaml:"-"`

	// pos locates fields in File for messages; nil for a Config built in
	// code.
	pos *posIndex
}

// Log configures the process log.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
	// Access writes one line per HTTP request and per proxied connection.
	// Default true.
	Access *bool `yaml:"access"`
}

// Timeouts are durations written like "5s", "2m", "1h".
type Timeouts struct {
	// FirstBytes is how long a new connection may take to send enough bytes
	// to tell its protocol (slowloris guard). Default 5s.
	FirstBytes Duration `yaml:"first_bytes"`
	// TLSHandshake bounds the TLS handshake toward clients. Default 10s.
	TLSHandshake Duration `yaml:"tls_handshake"`
	// Idle closes a relayed connection (LDAP, TCP) when no byte moved in
	// either direction for this long. Default 5m.
	Idle Duration `yaml:"idle"`
	// BackendConnect bounds dialing a backend, TLS handshake included.
	// Default 5s.
	BackendConnect Duration `yaml:"backend_connect"`
	// BackendResponse bounds the wait for an HTTP backend's response
	// headers. Default 60s.
	BackendResponse Duration `yaml:"backend_response"`
	// HTTPReadHeader bounds reading one HTTP request's headers. Default 10s.
	HTTPReadHeader Duration `yaml:"http_read_header"`
	// HTTPIdle closes an idle HTTP keep-alive connection. Default 2m.
	HTTPIdle Duration `yaml:"http_idle"`
	// Shutdown is how long SIGTERM waits for connections to finish before
	// closing them. Default 30s.
	Shutdown Duration `yaml:"shutdown"`
}

// Limits bounds resources per listener and per request.
type Limits struct {
	// MaxConnections is the default cap of concurrent connections per
	// listener. Default 10000.
	MaxConnections int `yaml:"max_connections"`
	// MaxHeaderBytes caps one HTTP request's header block. Default 65536.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// LDAPMaxMessage caps one LDAP message read by the gateway. Default 65536.
	LDAPMaxMessage int `yaml:"ldap_max_message"`
	// BackendIdleConns is the number of idle keep-alive connections kept per
	// HTTP backend. Default 256.
	BackendIdleConns int `yaml:"backend_idle_conns"`
	// SniffBytes is the most the gateway reads to recognise a protocol.
	// Default 8192.
	SniffBytes int `yaml:"sniff_bytes"`
}

// TLS lists the certificates presented to clients.
type TLS struct {
	// Certificates are PEM certificate/key pairs. Chosen by SNI from the names
	// in each certificate (or Hosts). When empty and a listener needs TLS, a
	// self-signed certificate is generated in DataDir and a warning is logged
	// at every start.
	Certificates []Certificate `yaml:"certificates"`
	// MinVersion is "1.2" or "1.3". Default "1.2".
	MinVersion string `yaml:"min_version"`
}

// Certificate is one PEM certificate chain with its private key.
type Certificate struct {
	// Name identifies the certificate for Listener.Certificate. Default: the
	// certificate file's base name without extension.
	Name string `yaml:"name"`
	// Cert is the PEM file with the certificate chain, leaf first. Required.
	Cert string `yaml:"cert"`
	// Key is the PEM file with the private key. Required.
	Key string `yaml:"key"`
	// Hosts overrides the SNI names the certificate answers for. Default: its
	// DNS subject alternative names. "*.example.com" matches one label.
	Hosts []string `yaml:"hosts"`
}

// Listener is one public TCP socket.
type Listener struct {
	// Name identifies the listener in logs, events and metrics. Required,
	// unique.
	Name string `yaml:"name"`
	// Address is host:port, e.g. ":443", "0.0.0.0:389", "[::]:443". Required.
	Address string `yaml:"address"`
	// Transport is tcp or udp. A udp listener carries either sip or turn.
	// Default tcp.
	Transport string `yaml:"transport"`
	// TLS is "none" (TLS refused), "required" (plaintext refused) or
	// "optional" (both, told apart by the first bytes). Default "none".
	TLS string `yaml:"tls"`
	// Certificate names the certificate for clients sending no SNI or an SNI
	// no certificate matches. Default: the first certificate.
	Certificate string `yaml:"certificate"`
	// StrictSNI refuses TLS handshakes whose SNI matches no certificate
	// instead of answering with the default certificate. Default false.
	StrictSNI bool `yaml:"strict_sni"`
	// Protocols accepted on this listener (after TLS termination): any of
	// http, ldap, sip, sip-ws, turn, tcp. "sip-ws" serves WebSocket upgrades
	// offering the "sip" subprotocol (RFC 7118). "turn" serves STUN and
	// TURN (see the turn section). "tcp" forwards anything that is none of
	// the other protocols to TCPService. Default [http] ([sip] on udp).
	Protocols []string `yaml:"protocols"`
	// MaxConnections caps concurrent connections. Default Limits.MaxConnections.
	MaxConnections int `yaml:"max_connections"`
	// DefaultService receives HTTP requests whose Host matches no service.
	// Default: none, such requests are answered 404.
	DefaultService string `yaml:"default_service"`
	// TCPService receives connections of unknown protocol when Protocols
	// includes tcp. Required then.
	TCPService string `yaml:"tcp_service"`
	// TrustedProxies are networks (CIDR) whose X-Forwarded-For and Forwarded
	// headers are believed. Default: none, client-sent forwarding headers are
	// dropped.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Service is one private service and how traffic reaches it.
type Service struct {
	// Name identifies the service. Required, unique.
	Name string `yaml:"name"`
	// Protocol is http, ldap, sip or tcp. Required.
	Protocol string `yaml:"protocol"`
	// Hosts (http) are the Host/SNI names routed here; "*.example.com" matches
	// one label.
	Hosts []string `yaml:"hosts"`
	// Domains (ldap) are the bind domains routed here, in DNS form
	// ("example.com", matched against DC= components and user@domain) and/or
	// NetBIOS form ("EXAMPLE", matched against EXAMPLE\user). Case-insensitive.
	// Domains (sip) are the From-URI domains routed here: DNS names,
	// "*.example.com" (one label), or IP addresses. Companies add theirs.
	Domains []string `yaml:"domains"`
	// Backend is where the service runs. Required.
	Backend Backend `yaml:"backend"`
	// Paths (http) are the path rules; default: every path allowed.
	Paths PathRules `yaml:"paths"`
	// RejectStatuses (http) are the backend answers that count as a rejection
	// by the service. Default [401, 403].
	RejectStatuses []int `yaml:"reject_statuses"`
	// ClientAddressHeader (sip) is a header inserted into every request
	// toward the backend with the client's address, e.g. X-Forwarded-For;
	// copies sent by clients are removed. Default: none.
	ClientAddressHeader string `yaml:"client_address_header"`
}

// Backend is a private service's address.
type Backend struct {
	// Address is host:port. Required.
	Address string `yaml:"address"`
	// TLS speaks TLS to the backend. Default false.
	TLS bool `yaml:"tls"`
	// CA is a PEM bundle to verify the backend's certificate. Default: the
	// system roots.
	CA string `yaml:"ca"`
	// ServerName is the name sent as SNI and verified. Default: host of Address.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any backend certificate. Default false; the
	// configuration audit warns when set.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// UDPAddress (sip) is where UDP clients are relayed. Default: Address.
	UDPAddress string `yaml:"udp_address"`
	// WebSocket (sip) is the PBX's SIP WebSocket endpoint (ws:// or
	// wss:// URL) for sip-ws clients. Default: none, WebSocket clients
	// routed here are refused.
	WebSocket string `yaml:"websocket"`
	// ProxyProtocol (sip) sends a PROXY protocol v2 header with the
	// client's address first on every TCP/TLS backend connection.
	// Default false.
	ProxyProtocol bool `yaml:"proxy_protocol"`
}

// PathRules are an HTTP service's path allow and deny lists.
type PathRules struct {
	// Default is allow or deny, applied when no rule decides. Default: deny
	// when Allow has entries, otherwise allow.
	Default string `yaml:"default"`
	// Allow rules; a path matched by an allow rule whose methods or networks
	// do not match is denied (reserved to those sources).
	Allow []PathRule `yaml:"allow"`
	// Deny rules; checked first.
	Deny []PathRule `yaml:"deny"`
}

// PathRule is one pattern, optionally limited to methods and networks. In
// YAML it is either a plain string (the path) or a mapping.
type PathRule struct {
	// Path is "= /exact", a glob with * (one segment), ** (any segments), ?
	// and [..], or a prefix. Required.
	Path string `yaml:"path"`
	// Methods limits the rule to these HTTP methods. Default: any.
	Methods []string `yaml:"methods"`
	// Networks limits the rule to these source networks (CIDR or IP).
	// Default: any source.
	Networks []string `yaml:"networks"`

	// Line is the YAML line of the rule, for error messages.
	Line int `yaml:"-"`
}

// LDAPPolicy says what happens to LDAP connections whose first request names
// no routable domain. Each value is "refuse" (the default) or a service name.
type LDAPPolicy struct {
	// Anonymous binds (empty name). Default refuse.
	Anonymous string `yaml:"anonymous"`
	// SASL binds. Default refuse.
	SASL string `yaml:"sasl"`
	// StartTLS before the first bind. Default refuse.
	StartTLS string `yaml:"starttls"`
	// DefaultService gets simple binds whose domain matches no service.
	// Default refuse.
	DefaultService string `yaml:"default_service"`
}

// Fraud is the automatic blacklist policy. Every event the gateway emits is
// weighed; a source whose weighted suspicious events within a sliding minute
// exceed SuspiciousPerMinute is banned.
type Fraud struct {
	// Enabled turns counting and automatic bans on. Manual entries and the
	// whitelist are enforced either way. Default true.
	Enabled *bool `yaml:"enabled"`
	// SuspiciousPerMinute is how many weighted suspicious events one source
	// may cause within a sliding minute; one more bans it. Default 10.
	SuspiciousPerMinute int `yaml:"suspicious_per_minute"`
	// BlacklistFor is how long a first automatic ban lasts. Default 30m.
	BlacklistFor Duration `yaml:"blacklist_for"`
	// BlacklistMax caps the doubling of repeat offenders' bans. Default 24h.
	BlacklistMax Duration `yaml:"blacklist_max"`
	// RecidiveWindow is how long a ban is remembered for escalation: a new
	// ban within it lasts twice the previous one. Default 7d.
	RecidiveWindow Duration `yaml:"recidive_window"`
	// Weights give each kind of event its weight (0 = ignored).
	Weights Weights `yaml:"weights"`
	// Whitelist lists addresses and networks (CIDR) never counted and never
	// banned, in addition to entries made with the admin API. Default none.
	Whitelist []string `yaml:"whitelist"`
	// MaxSources caps the sources being counted at once; beyond it the least
	// suspicious are forgotten first. About 90 bytes each. Default 1000000.
	MaxSources int `yaml:"max_sources"`
	// NAT tunes the scoring of many users behind one address.
	NAT NAT `yaml:"nat"`
	// SuspectRate is how many new connections per second, across the
	// gateway, are served from suspects: sources with failures in the
	// window that no login explains. The others wait up to
	// timeouts.first_bytes for their turn, then are closed. It keeps the
	// attempts a flood makes before its sources are banned from crowding
	// out everyone else. Default 200.
	SuspectRate int `yaml:"suspect_rate"`
	// UnprovenConcurrency is how many new connections of unproven sources
	// (no user logged in from there within nat.success_window, not
	// whitelisted) may be in their first exchange at once, across the
	// gateway; the others wait up to timeouts.first_bytes for a slot, then
	// are closed. A connection's first exchange runs from its first bytes
	// until its first request has been handed to the backend or answered,
	// at most 50 ms. It keeps a burst of
	// never-seen sources from queueing in front of users who logged in.
	// Default 16.
	UnprovenConcurrency int `yaml:"unproven_concurrency"`
	// RefusedHold is how long a TCP connection from a blacklisted source is
	// held open, unread and unanswered, before it is reset; at most 4096
	// per listener at a time, the others are closed at once. The client
	// then waits for its own timeout, as it does when the kernel blacklist
	// drops its SYNs, instead of trying again at once: a banned flood costs
	// a few accepts a second instead of thousands. 0 closes at once.
	// Default 10s.
	RefusedHold *Duration `yaml:"refused_hold"`
	// RecentEvents is how many events are kept in memory for the admin API's
	// event list and as evidence quoted in bans. Default 10000.
	RecentEvents int `yaml:"recent_events"`
}

// Weights are per-kind event weights. 0 means the kind is ignored; leaving a
// key out means its default.
type Weights struct {
	// RejectedByGateway: unknown protocol, host or domain, denied path, TLS
	// failure, admin API authentication failure. Default 1.
	RejectedByGateway *int `yaml:"rejected_by_gateway"`
	// RejectedByService: the service refused (HTTP 401/403, LDAP bind
	// failure). Default 1.
	RejectedByService *int `yaml:"rejected_by_service"`
	// BackendUnreachable: the backend could not be reached. Default 0: a dead
	// backend is the platform's fault, and counting it would ban every office
	// that keeps retrying during an outage.
	BackendUnreachable *int `yaml:"backend_unreachable"`
	// Reasons override the kind's weight for one event reason, e.g.
	// {denied_path: 2, first_bytes_timeout: 0}. Default {auth_challenge: 0}:
	// an HTTP 401 to a request that carried no credentials is a login
	// prompt, not a failed login. Reasons not written keep their default.
	Reasons map[string]int `yaml:"reasons"`
}

// NAT tunes NAT-aware scoring: a user who logged in successfully from an
// address is "known" there; failures of known users are held against a
// threshold raised by the number of known users, failures of unknown users
// count against the plain threshold.
type NAT struct {
	// SuccessWindow is how long a successful login keeps a user known at its
	// address. Default 1h.
	SuccessWindow Duration `yaml:"success_window"`
	// MaxFactor caps how many times the threshold known users can raise it
	// to (one step per known user). Default 100.
	MaxFactor int `yaml:"max_factor"`
}

// Admin is the admin API: JSON endpoints, /metrics, /healthz and /readyz.
// It has its own listener and is never reachable through the proxy
// listeners.
type Admin struct {
	// Address is the admin API's TCP listener (host:port). Requests to /api/
	// need the admin token ("Authorization: Bearer ..."), generated on first
	// start and printed once. "off" disables it. Default "127.0.0.1:9190".
	Address string `yaml:"address"`
	// Socket is the unix socket the pbxgate CLI talks to; its callers are
	// trusted by the file's permissions (0600, owner only) and need no
	// token. "off" disables it. Default "<data_dir>/admin.sock".
	Socket string `yaml:"socket"`
}

// Store says where durable state lives.
type Store struct {
	// Backend is "bolt": one embedded file, no external service. Default
	// bolt.
	Backend string `yaml:"backend"`
	// Path is the bolt file. Default "<data_dir>/state.db".
	Path string `yaml:"path"`
}

// Duration is a time.Duration read from strings like "5s" or "1h30m".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
