package config

// TURN is the STUN/TURN server shared by every listener carrying turn:
// relay addresses, credentials, the peer filter and quotas. It is unused
// (and may be left out) when no listener carries turn.
type TURN struct {
	// Realm is the long-term credential realm (RFC 8489), usually the
	// platform's domain. Required when a listener carries turn. A change
	// takes effect at restart.
	Realm string `yaml:"realm"`
	// PublicAddresses are the relay addresses told to clients: the host's
	// public address, or the public side of its 1:1 NAT. At most one IPv4
	// and one IPv6; a family without one gets no relays (RFC 6156).
	// Required when a listener carries turn. A change takes effect at
	// restart.
	PublicAddresses []string `yaml:"public_addresses"`
	// RelayAddresses are the local addresses relay sockets bind, at most
	// one per family of public_addresses. Default: every address (0.0.0.0,
	// ::). A change takes effect at restart.
	RelayAddresses []string `yaml:"relay_addresses"`
	// RelayPorts is the port range of relay sockets (UDP and TCP). Default
	// 49152-65535. A change takes effect at restart.
	RelayPorts PortRange `yaml:"relay_ports"`
	// Users are long-term static users. Default none.
	Users []TURNUser `yaml:"users"`
	// RESTSecrets are the shared secrets of the TURN REST API: credentials
	// "<expiry>:<user>" with password base64(HMAC-SHA1(secret, username)).
	// The first one signs (pbxgate turn credentials); all verify, so a new
	// secret can be put first while the old one's credentials run out. At
	// least 16 bytes each. Default none.
	RESTSecrets []string `yaml:"rest_secrets"`
	// RESTSecretsFile names a file with one secret per line, read at start
	// and reload after rest_secrets (keeps secrets out of the main file).
	// Default none.
	RESTSecretsFile string `yaml:"rest_secrets_file"`
	// AllowPeers opens special-purpose peer networks (loopback, RFC 1918,
	// link-local, ...) that relays may otherwise never reach: list exactly
	// your media servers' networks. Default none.
	AllowPeers []string `yaml:"allow_peers"`
	// Quotas bound allocations.
	Quotas TURNQuotas `yaml:"quotas"`
	// IdleTimeout closes a TURN TCP/TLS control connection that sends
	// nothing for this long (clients refresh permissions every 5 minutes).
	// Default 10m.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// TURNUser is a static long-term user.
type TURNUser struct {
	// Name is the username. Required, unique.
	Name string `yaml:"name"`
	// Key is hex(MD5(name ":" realm ":" password)), the long-term key of
	// RFC 8489; print it with `pbxgate turn key NAME`. The password itself
	// is never written anywhere. Required.
	Key string `yaml:"key"`
}

// PortRange is an inclusive port range.
type PortRange struct {
	// Min is the lowest port. Default 49152.
	Min int `yaml:"min"`
	// Max is the highest port. Default 65535.
	Max int `yaml:"max"`
}

// TURNQuotas bound allocations. 0 means no limit where noted.
type TURNQuotas struct {
	// PerUser caps a user's allocations (a REST credential's user part).
	// 0: no limit. Default 50.
	PerUser *int `yaml:"per_user"`
	// PerSource caps the allocations of one client IP address (an office
	// behind NAT shares one). 0: no limit. Default 200.
	PerSource *int `yaml:"per_source"`
	// Total caps the server's allocations. 0: no limit. Default 20000.
	Total *int `yaml:"total"`
	// MaxLifetime ends an allocation this long after its creation however
	// often it is refreshed. Default 12h.
	MaxLifetime Duration `yaml:"max_lifetime"`
	// MaxKbps caps each allocation's relayed payload per direction, in
	// kbit/s; best effort (UDP datagrams over it are dropped, TCP relays
	// slowed). 0: no cap. Default 10000.
	MaxKbps *int `yaml:"max_kbps"`
}
