// Package peerfilter decides whether a TURN relay may send to a peer address.
//
// A TURN server relays for authenticated clients to addresses they choose, which
// makes it a ready-made SSRF and internal-network scanner unless the peer address
// is checked. peerfilter is safe by default: every special-purpose range in the
// IANA IPv4 and IPv6 Special-Purpose Address Registries that should never be a
// media peer on the public Internet (loopback, RFC 1918, shared CGN space,
// link-local including the 169.254.169.254 cloud metadata service, multicast,
// documentation, reserved, unique-local, NAT64/6to4/Teredo, ...) is denied; see
// [DeniedRanges] for the list and the reason for each entry. An operator's allow
// list (allow_peers) reopens exactly the networks it names, typically the
// private networks of the platform's own media servers.
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are unmapped before any check, so
// ::ffff:127.0.0.1 is denied as loopback. Invalid addresses and addresses with an
// IPv6 zone are denied.
//
// Translation and tunnelling prefixes (NAT64 64:ff9b::/96 and 64:ff9b:1::/48,
// 6to4 2002::/16, Teredo 2001::/32 inside 2001::/23) are denied whole rather than
// by decoding the IPv4 address they embed: the embedded address may be private
// (2002:0a00:0001:: is 6to4 for 10.0.0.1, 64:ff9b::7f00:1 is NAT64 for
// 127.0.0.1) and a real media server has no reason to be reached through them.
//
// The package is pure: it does no I/O, emits no events and keeps no state beyond
// the immutable [Filter]. The TURN server calls [Filter.Check] on
// CreatePermission, ChannelBind, Send and TCP Connect and turns a denial into an
// event itself.
package peerfilter
