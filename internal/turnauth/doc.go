// Package turnauth issues and checks TURN REST API ephemeral credentials
// (draft-uberti-behave-turn-rest-00, coturn's use-auth-secret):
//
//	username = "<unix-expiry>:<user>"
//	password = base64(HMAC-SHA1(secret, username))
//
// An application that shares the secret with the TURN server hands such a
// pair to a WebRTC or SIP client; the TURN server recomputes the password from
// the username, so it needs no user database. [Secrets] holds several secrets
// for rotation: the first signs, all verify.
//
// For the STUN/TURN long-term credential mechanism (RFC 5389 section 10.2,
// RFC 8489 section 9.2) the server needs the key MD5(username ":" realm ":"
// password) to check MESSAGE-INTEGRITY; [Secrets.Keys] returns it for every
// secret that could have made the username, after checking the username's form
// and expiry. Usernames are restricted to printable ASCII, which SASLprep
// leaves unchanged, so no SASLprep is applied; the realm is used as given.
//
// Username form: the expiry is the part before the first ':', decimal digits
// only (no sign), and the user is everything after it. Like coturn, which splits
// at the first ':', Keys accepts a user containing ':' ("12:a:b" is user "a:b")
// so credentials minted by other issuers verify; Issue refuses ':' in a user so
// that what it mints is unambiguous.
//
// The package is pure: no I/O, no logging, no events. The TURN server (a later
// step) calls Keys and reports failures ([ErrMalformed], [ErrExpired],
// [ErrUnknownUser], or a wrong MESSAGE-INTEGRITY) as suspicious events; the
// `pbxgate turn credentials` command calls Issue.
package turnauth
