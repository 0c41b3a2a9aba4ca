package config

// Firewall is the host firewall pbxgate writes with `pbxgate firewall
// apply`: the ports the node serves (by role, by pbxgate's own listeners,
// by custom rule) are opened, trusted networks are always accepted, and
// everything else is dropped. It also enables the kernel blacklist, which
// the running gateway keeps equal to the fraud engine's bans. The section is
// optional; nothing touches the host firewall until an operator runs
// `pbxgate firewall apply` (or enables kernel_blacklist).
type Firewall struct {
	// Roles are what this node serves, each opening its ports to any
	// source: sip, sip-tls, web, provisioning, turn (with the TURN relay
	// range), ldap, ssh, admin (the admin API's port, only from
	// admin_from). See docs/firewall.md for the port table. Default none:
	// only listeners, ports and trusted_networks open anything.
	Roles []string `yaml:"roles"`
	// OpenListeners opens the port of every listener in the listeners
	// section that is not bound to a loopback address. Default true.
	OpenListeners *bool `yaml:"open_listeners"`
	// TrustedNetworks are accepted on every port and protocol, before the
	// SIP flood limit, GeoIP rules and the kernel blacklist: your
	// carriers, offices and monitoring. Default none.
	TrustedNetworks []string `yaml:"trusted_networks"`
	// AdminFrom are the networks the admin role opens the admin API's port
	// (admin.address) to. Required with role admin.
	AdminFrom []string `yaml:"admin_from"`
	// Ports are custom openings. Default none.
	Ports []FirewallPort `yaml:"ports"`
	// SIPFloodLimit rate-limits SIP per source address in the kernel.
	SIPFloodLimit FirewallFloodLimit `yaml:"sip_flood_limit"`
	// GeoIP allows or denies countries on chosen ports.
	GeoIP FirewallGeoIP `yaml:"geoip"`
	// KernelBlacklist enforces the fraud engine's bans in the kernel.
	KernelBlacklist KernelBlacklist `yaml:"kernel_blacklist"`
	// StateDir keeps the confirmed ruleset, the pending test apply and the
	// history. Default "<data_dir>/firewall".
	StateDir string `yaml:"state_dir"`
	// TestDuration is how long `pbxgate firewall apply` waits for
	// `pbxgate firewall confirm` before it loads the last confirmed ruleset
	// again. Between 30s and 24h. Default 10m.
	TestDuration Duration `yaml:"test_duration"`
}

// FirewallPort opens one port or port range.
type FirewallPort struct {
	// Proto is tcp or udp. Required.
	Proto string `yaml:"proto"`
	// Port is one port ("5080") or an inclusive range ("10000-20000").
	// Required.
	Port string `yaml:"port"`
	// From limits the sources (networks or addresses). Default: any source.
	From []string `yaml:"from"`
	// Comment is shown in the ruleset: printable ASCII without quotes, at
	// most 128 bytes. Default none.
	Comment string `yaml:"comment"`
}

// FirewallFloodLimit drops a source's SIP UDP packets and new TCP
// connections above Rate per second, in the kernel. Trusted networks are
// exempt, so a spoofed flood cannot get a carrier limited.
type FirewallFloodLimit struct {
	// Rate is packets (udp) or new connections (tcp) per second and
	// source. 0 turns the limit off. Default 0.
	Rate int `yaml:"rate" zero:"meaningful"`
	// Burst is how many packets above the rate a source may send at once.
	// Default: rate.
	Burst int `yaml:"burst" zero:"meaningful"`
	// Ports are the limited ports. Default: the ports of the listeners
	// carrying sip, or 5060 and 5061 when there are none.
	Ports []int `yaml:"ports"`
}

// FirewallGeoIP filters sources by country from a MaxMind-format database
// (GeoLite2-Country or GeoIP2-Country, or any .mmdb with country.iso_code).
// The database is read by `pbxgate firewall plan|check|apply`; apply again
// after updating it.
type FirewallGeoIP struct {
	// Database is the .mmdb file. Required when rules are set.
	Database string `yaml:"database"`
	// Rules are applied in order, after trusted networks. Default none.
	Rules []GeoRule `yaml:"rules"`
}

// GeoRule limits who reaches some ports by country. Exactly one of Allow
// and Deny is set.
type GeoRule struct {
	// Proto is tcp, udp, or empty for both. Default both.
	Proto string `yaml:"proto"`
	// Ports are the ports ("5060") or ranges ("10000-20000") the rule
	// covers. Required.
	Ports []string `yaml:"ports"`
	// Allow lists ISO 3166-1 alpha-2 country codes ("DE", "AT"): sources
	// located elsewhere, or not located at all, are dropped on Ports.
	Allow []string `yaml:"allow"`
	// Deny lists country codes whose sources are dropped on Ports.
	Deny []string `yaml:"deny"`
}

// KernelBlacklist mirrors the fraud engine's bans into the nftables table
// inet pbxgate_bl, where the kernel drops banned sources before any other
// processing. Needs CAP_NET_ADMIN (root).
type KernelBlacklist struct {
	// Enabled turns it on. A gateway that cannot create the table does not
	// start. Default false.
	Enabled bool `yaml:"enabled"`
	// Resync is how often the kernel sets are made equal to the stored
	// bans (adding what is missing, removing lifted bans, refreshing
	// elements before they lapse). Between 10s and 1h. Default 1m.
	Resync Duration `yaml:"resync"`
}
