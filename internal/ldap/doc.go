// Package ldap routes LDAP and LDAPS connections by the domain of their first
// BindRequest, relays them to the chosen backend, and watches BindResponses
// so that failed and successful binds become security events.
//
// The pure part decodes the little of LDAP the gateway needs: the framing of
// one LDAPMessage (ReadMessage), BindRequest, StartTLS and the result of
// responses (ParseRequest, ParseResponse), and the routing domain and user of
// a bind name (Domain, AppendDomain, User). The I/O part is Proxy, which
// serves one accepted connection at a time (ServeConn) or a whole listener
// (Serve). It routes a first bind without allocating: the name stays in the
// message, its domain is derived into a stack buffer and looked up in
// Options.Routes.
//
// The package does not terminate TLS (the listener does, and hands over the
// decrypted connection), does not check credentials itself and does not
// decode searches or other operations: everything but binds, StartTLS and
// their responses is relayed as framed bytes. After a StartTLS exchange the
// relay can no longer see binds, so StartTLS is refused unless a target is
// configured for it.
package ldap
