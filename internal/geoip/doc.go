// Package geoip reads a MaxMind-format database (GeoLite2-Country,
// GeoIP2-Country, a City database, or any .mmdb whose records carry
// country.iso_code) and returns the IPv4 and IPv6 networks located in chosen
// countries, merged into the fewest covering prefixes in ascending order, for
// the host firewall's GeoIP sets.
//
// Where a network is: its record's country.iso_code, the country MaxMind
// locates the addresses in. registered_country (where the block is
// registered) and represented_country are not used. A network whose record
// has no country.iso_code is "not located": it is in no country's result,
// so an allow rule drops it and a deny rule lets it through. GeoLite2 leaves
// anycast networks and satellite providers unlocated this way (they carry
// only registered_country and traits), as well as networks it has no data
// for at all.
//
// IPv4 space is read once. MaxMind IPv6 databases keep IPv4 at ::/96 and
// alias ::ffff:0:0/96 (IPv4-mapped), 2001::/32 (Teredo) and 2002::/16 (6to4)
// to that subtree; aliases are skipped, so an IPv4 network appears once, as
// IPv4. Data a database keeps under ::ffff:0:0/96 without aliasing is ignored
// too: IPv4 lookups never consult it (the reader's Lookup of an IPv4 address
// reads only the IPv4 subtree) and IPv4-mapped addresses never arrive as
// IPv6 sources. A consequence: 6to4 and Teredo IPv6 sources are located only
// where the database has real IPv6 data for them, not through the IPv4
// address they embed.
//
// The work is bounded: one pass over the database's tree per Select, at
// most a fixed number of networks (ErrTooLarge beyond), cancellable through
// the context, with memory proportional to the networks selected. The
// package does not download or update databases, look up single addresses
// for other components, or render firewall rules (package firewall does).
package geoip
