// Package e2e holds pbxgate's whole-binary end-to-end tests. It has no
// code of its own: everything is in the _test.go files, run by plain
// `go test ./test/e2e/` as part of the default suite.
//
// TestMain builds cmd/pbxgate once into a temporary directory; each test
// writes a configuration with free loopback ports, starts `pbxgate serve -c`
// as a subprocess (stderr captured and parsed as the text log), talks to it
// with real clients, and stops it with SIGTERM, asserting a clean exit.
//
// What is covered:
//   - HTTP routing with curl: Host and wildcard routing, default_service,
//     unknown hosts, path rules (the provisioning example, method and network
//     limits), forwarding headers, spoofed X-Forwarded-For, dead backends,
//     and the events each refusal logs (http_test.go).
//   - TLS: required and optional listeners, SNI certificate choice, HTTP/2,
//     plaintext refused, a TLS backend behind a plain listener, the
//     self-signed certificate generated on first start (tls_test.go).
//   - LDAP through a real slapd: bind and search, wrong password, ldaps://,
//     unknown bind domain (ldap_test.go).
//   - Bad input: garbage, slow clients, huge headers, requests without Host,
//     unknown SNI, truncated BER; the process stays healthy (badinput_test.go).
//   - CLI: check, version, serve with a broken configuration (cli_test.go).
//   - SIGHUP reload (new routes, surviving connections, refused reloads) and
//     SIGTERM draining (reload_test.go).
//   - `pbxgate demo` and the commands it prints (demo_test.go).
//   - Fraud detection: ban lifecycle, kill -9, NAT office, backup and restore
//     (fraud_test.go).
//   - SIP with sipp on both sides (sip_test.go, sip_policy_test.go, scenarios
//     in testdata/sipp): calls and REGISTERs over UDP, TCP and TLS (through
//     socat, Debian's sipp has no TLS), incoming calls through a phone's flow,
//     brand and company call limits (403 out, 486 in), roadwarriors, the
//     company IP filter from many 127/8 sources, anti-flood trip and
//     recovery, the trusted exemption, scanner User-Agents, and REGISTER
//     brute force against a PBX answering 401 or 403 ending in a ban.
//   - STUN/TURN with coturn's clients (turn_test.go): turnutils_stunclient
//     bindings, turnutils_uclient relaying over UDP, TCP and TLS (channels,
//     send indications, RFC 6062 TCP relays) with static users and REST
//     credentials (from `pbxgate turn credentials`), wrong credentials (401
//     and events), special-range peers refused (403), brute force ending in
//     a ban that silences UDP, closes TCP/TLS at accept and ends the source's
//     allocations, and `pbxgate turn allocations` / `end`.
//
// Debian packages the suite needs (a test fails, naming the package, when
// one is missing): curl, ldap-utils (ldapsearch), slapd, sip-tester (sipp),
// socat, coturn (turnutils_*). Traffic stays on 127.0.0.0/8.
package e2e
