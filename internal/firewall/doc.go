// Package firewall turns pbxgate's roles, custom ports, listeners and
// trusted networks into one nftables script for pbxgate's own table
// (`table inet pbxgate`): loopback, established/related traffic, the ICMP and
// ICMPv6 messages RFC 4890 says not to drop, trusted networks on every port
// and the opened ports are accepted; everything else arriving at the host is
// dropped. GeoIP rules (Spec.Geo) drop sources by country on chosen ports,
// after loopback and trusted networks and before everything else, using
// interval sets of the networks package geoip locates. The script is
// deterministic (sorted, deduplicated, merged into sets) so it can be
// diffed, checked with `nft -c` and kept as the last-good artifact. The
// package also renders the uninstall script, names other firewall managers
// found on the host, and diffs two scripts for `plan`.
//
// Render is pure. The package does not read GeoIP databases (the caller
// passes the located networks in), does not run nft itself except through
// the injected nft.Runner (package internal/firewall/nft), does not keep
// state, arm rollback timers, or manage the kernel blacklist table
// (`inet pbxgate_bl`); it never flushes the ruleset or touches other tables.
package firewall
