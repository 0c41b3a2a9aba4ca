package config

// SIP is the SIP edge policy shared by every SIP listener: routing of
// unknown domains, the anti-flood limiter, scanner detection, the UDP flow
// table, dialog limits and the tenants (brands and companies).
type SIP struct {
	// DefaultService receives SIP requests whose domain matches no
	// service. Default: none, such requests are refused (see the security
	// model).
	DefaultService string `yaml:"default_service"`
	// Trusted are the platform's own servers and carriers (CIDR): never
	// flood-limited, never subject to a company IP filter. Default none.
	Trusted []string `yaml:"trusted"`
	// Flood is the per-source anti-flood limiter for initial requests.
	Flood SIPFlood `yaml:"flood"`
	// ScannerUserAgents are case-insensitive User-Agent substrings of
	// scanning tools; matching requests are dropped silently. Default: the
	// built-in list (friendly-scanner, sipvicious, sipcli, ...).
	ScannerUserAgents []string `yaml:"scanner_user_agents"`
	// MaxMessage caps one SIP message (head and body) on any transport.
	// Default 65535.
	MaxMessage int `yaml:"max_message"`
	// IdleTimeout closes a UDP flow, or a SIP connection (TCP, TLS,
	// WebSocket), without traffic in either direction for this long; it
	// must cover the phones' re-registration interval. Default 1h.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// UDP tunes the UDP flow table.
	UDP SIPUDP `yaml:"udp"`
	// Calls tunes dialog tracking for the call limits.
	Calls SIPCalls `yaml:"calls"`
	// Brands are the tenants: brands contain companies. Default none.
	Brands []Brand `yaml:"brands"`
}

// SIPFlood configures the anti-flood limiter (Kamailio pike's model):
// initial requests (no To tag) per source per window.
type SIPFlood struct {
	// Window is the sliding window. Default 2s.
	Window Duration `yaml:"window"`
	// Limit is how many initial requests a source may send per window.
	// Default 100.
	Limit int `yaml:"limit"`
	// BlockFor is how long a source over the limit gets no answer.
	// Default 5m.
	BlockFor Duration `yaml:"block_for"`
	// MaxSources caps the sources tracked at once. Default 1000000.
	MaxSources int `yaml:"max_sources"`
}

// SIPUDP tunes the UDP flow table: one flow (and one upstream socket) per
// client address and port.
type SIPUDP struct {
	// MaxFlows caps the flows open at once. Default 100000.
	MaxFlows int `yaml:"max_flows"`
	// UpstreamAddresses are the local addresses flows toward the PBX are
	// opened from, spread over them. Each flow needs a local port of its
	// own toward its backend, so one address carries at most as many
	// flows per backend as the kernel's ephemeral port range. Default:
	// none, the kernel picks the address.
	UpstreamAddresses []string `yaml:"upstream_addresses"`
}

// SIPCalls tunes dialog tracking.
type SIPCalls struct {
	// MaxDuration releases a call's slot after this long even without a
	// BYE (a lost BYE must not leak a slot). Default 3h.
	MaxDuration Duration `yaml:"max_duration"`
	// MaxTracked caps the calls tracked at once. When full, a new call
	// replaces the oldest INVITE still waiting for its challenge to be
	// answered, or is refused (fail closed). Default 100000.
	MaxTracked int `yaml:"max_tracked"`
}

// Brand is a reseller: it contains companies and may cap their concurrent
// external calls together.
type Brand struct {
	// Name identifies the brand in metrics and events. Required, unique.
	Name string `yaml:"name"`
	// MaxCalls caps the brand's concurrent external calls, both
	// directions. 0 means no limit. Default 0.
	MaxCalls int `yaml:"max_calls" zero:"meaningful"`
	// Companies of the brand. At least one.
	Companies []Company `yaml:"companies"`
}

// Company is one customer: its SIP domains, networks, users and limits.
type Company struct {
	// Name identifies the company in metrics and events. Required, unique
	// across brands.
	Name string `yaml:"name"`
	// Service is the sip service the company's domains are routed to.
	// Required.
	Service string `yaml:"service"`
	// Domains are the company's SIP domains (exact, case-insensitive).
	// At least one.
	Domains []string `yaml:"domains"`
	// AllowedNetworks (CIDR) turn the company IP filter on: REGISTER and
	// INVITE from elsewhere are refused unless the user is a roadwarrior.
	// Default: none, filter off.
	AllowedNetworks []string `yaml:"allowed_networks"`
	// External is a regular expression (RE2) on the user part of a URI:
	// calls to (or, incoming, from) a matching number are external and
	// count toward max_calls. Default `^\+?[0-9]{6,}$`.
	External string `yaml:"external"`
	// MaxCalls caps the company's concurrent external calls, both
	// directions. 0 means no limit. Default 0.
	MaxCalls int `yaml:"max_calls" zero:"meaningful"`
	// BlockedDestinations are regular expressions on the dialled user
	// part; matching INVITEs are refused. Default none.
	BlockedDestinations []string `yaml:"blocked_destinations"`
	// Users with a policy of their own (roadwarriors). Default none.
	Users []SIPUser `yaml:"users"`
}

// SIPUser is a user of a company with its own policy.
type SIPUser struct {
	// Name is the user part of the user's SIP URI. Required.
	Name string `yaml:"name"`
	// CallsFromOtherNetworks, 0..3: a roadwarrior may register from
	// outside the company networks and place this many concurrent calls
	// from there. 0 makes the user an ordinary one. Default 0.
	CallsFromOtherNetworks int `yaml:"calls_from_other_networks" zero:"meaningful"`
}
