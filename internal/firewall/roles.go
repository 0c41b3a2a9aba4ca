package firewall

// Role port table. Every role opens its ports to any source, except admin,
// which opens 9190/tcp only to Spec.AdminFrom:
//
//	role          tcp                        udp
//	sip           5060                       5060
//	sip-tls       5061                       -
//	web           80, 443                    -
//	provisioning  80, 443 (same as web)      -
//	turn          3478, 5349, relay range    3478, relay range
//	ldap          389, 636                   -
//	ssh           22                         -
//	admin         9190 from AdminFrom only   -
//
// Compared with the platforms pbxgate fronts (see shared/reference):
//   - sip:provider CE opens 5060 udp+tcp, 5061 tcp, 443 tcp (customer self
//     care), 1443 tcp (admin), 2443 tcp (provisioning), 22 tcp and RTP
//     30000-40000 udp. pbxgate's provisioning and web share 80/443 (the
//     gateway routes by Host), its admin API is 9190 and restricted by
//     source, and media ports are not opened by a role: RTP goes through the
//     TURN relay range, or a custom PortRule.
//   - IvozProvider opens 5060 udp+tcp, 5061 tcp, 7060 udp+tcp and 7061 tcp
//     (when the users' and trunks' proxies share an IP), RTP 13000-19000
//     udp and 443, 1443, 2443 tcp. pbxgate has one SIP edge, so 7060/7061
//     are not a role (add a PortRule if a backend needs them exposed), and
//     the portals sit behind 443.
//   - Neither opens TURN (3478/5349) or LDAP (389/636); pbxgate proxies both.

// Role names accepted in Spec.Roles.
const (
	RoleSIP          = "sip"
	RoleSIPTLS       = "sip-tls"
	RoleWeb          = "web"
	RoleProvisioning = "provisioning"
	RoleAdmin        = "admin"
	RoleTURN         = "turn"
	RoleLDAP         = "ldap"
	RoleSSH          = "ssh"
)

// AdminPort is the admin API port the admin role opens to Spec.AdminFrom.
const AdminPort = 9190

// Opening is one protocol and port range.
type Opening struct {
	Proto string // "tcp" or "udp"
	Ports PortRange
}

// RoleInfo describes what a role opens, for documentation and `fw plan`.
type RoleInfo struct {
	Role string
	Open []Opening
	Note string // restrictions and additions not in Open; empty if none
}

// Roles returns the role → ports table, in a stable order. The caller may
// modify the result.
func Roles() []RoleInfo {
	tcp := func(p uint16) Opening { return Opening{"tcp", Port(p)} }
	udp := func(p uint16) Opening { return Opening{"udp", Port(p)} }
	return []RoleInfo{
		{Role: RoleSIP, Open: []Opening{tcp(5060), udp(5060)}},
		{Role: RoleSIPTLS, Open: []Opening{tcp(5061)}},
		{Role: RoleWeb, Open: []Opening{tcp(80), tcp(443)}},
		{Role: RoleProvisioning, Open: []Opening{tcp(80), tcp(443)}, Note: "same ports as web; a separate role for clarity"},
		{Role: RoleTURN, Open: []Opening{tcp(3478), udp(3478), tcp(5349)}, Note: "plus the TURN relay range (Spec.TURNRelay), udp and tcp"},
		{Role: RoleLDAP, Open: []Opening{tcp(389), tcp(636)}},
		{Role: RoleSSH, Open: []Opening{tcp(22)}},
		{Role: RoleAdmin, Open: []Opening{tcp(AdminPort)}, Note: "only from Spec.AdminFrom; opens nothing when AdminFrom is empty"},
	}
}

func roleInfo(name string) (RoleInfo, bool) {
	for _, r := range Roles() {
		if r.Role == name {
			return r, true
		}
	}
	return RoleInfo{}, false
}
