// Package fraud turns the event stream into decisions about sources: it
// counts weighted suspicious events per source in a sliding one-minute
// window, bans a source that goes over the threshold (longer for repeat
// offenders), honours the whitelist and manual entries, and answers the
// per-connection question Allowed(addr) from a compact in-memory copy of the
// blacklist, without allocating.
//
// Scoring is NAT-aware: a user who logged in successfully from an address is
// "known" there for a while; failures of known users are held against a
// threshold raised in proportion to the number of known users, while
// failures of unknown users (and events naming no user) count against the
// plain threshold. An office of many phones behind one address survives a
// mass re-registration; a scanner behind that same address does not.
//
// Per-source state is bounded (Config.MaxSources) with an eviction policy
// that forgets the least suspicious sources first, so a flood of spoofed
// addresses cannot grow memory or push a real attacker out.
//
// The engine persists entries through store.Store before it reports them
// done. It does not accept connections, parse protocols or write the host
// firewall; the gateway calls Allowed and hands events to Emit.
//
// # Scoring, precisely
//
// Weight. An event weighs ReasonWeights[Reason] if that key exists, else
// KindWeights[Kind] (a missing kind weighs 0). Success events never weigh.
// Events of weight 0, from whitelisted sources, or from sources already
// banned are ignored (Stats.EventsIgnored) and touch no per-source state.
//
// Window. Each source has two sliding-window counters, "unknown" U and
// "known" K, of six 10-second slots (slot = floor(seconds/10)); an event
// counts while its slot is one of the newest six, i.e. for at least 50 s and
// at most 60 s. The engine's clock (Options.Now) places events, not
// Event.Time.
//
// Known users. A Success event naming a User marks the pair (source,
// hash(Service "\x00" User)) as known for NATWindow after that success.
// Known users are kept apart from the per-source counters (only addresses
// with successes have them), at most NATMaxFactor per address (the user
// whose last success is oldest makes room), and at most MaxSources in all
// (the address whose newest success is oldest is forgotten, sampled).
//
// Counting. A weighted event naming a user known at its source is a known
// failure: it adds to K and to that user's own sliding-window counter. If
// that user's own failures in the window would exceed Threshold (a brute
// force on one real account), the event and all of that user's failures
// still in the window count in U instead (moved from K), and so do its
// further failures while its own count stays above Threshold. Every other
// weighted event (no user, or a user not known there) adds to U.
//
// Ban. With n known users at the source (successes within NATWindow), a
// source is banned when
//
//	U > Threshold   or   U + K > Threshold × max(1, min(n, NATMaxFactor))
//
// So without successes the rule is the plain "more than Threshold weighted
// events in a minute"; 60 phones that logged in from one address may fail
// up to 60 × Threshold times a minute between them, but failures for users
// that never succeeded there, and more than Threshold failures of any one
// user, still ban at Threshold + 1.
//
// Escalation. A ban's level n is the number of bans of the address within
// RecidiveWindow, this one included (store.RecordBans); it lasts
// BanFor × 2^(n−1), capped at BanMax.
//
// Counting memory. A counted source costs a 56-byte slab entry plus its
// index map entry, about 90 bytes in all (TestSourceStateBounded); at most
// MaxSources are kept.
// When full, eight random states are compared and the one with the lowest
// score now (ties: oldest last event) is forgotten, so one-event sources of
// a spoofed flood are forgotten long before a source near the threshold.
// States with nothing left in the window are dropped by the sweep.
//
// Blacklist memory. Allowed reads single addresses from sharded lock-free
// hash tables (about 50 bytes an address, IPv4 or IPv6: 1M take 52 MB,
// measured by TestBlacklistMemory) and networks from a bart.Fast routing
// table (about 160–190 bytes a network); readers take no lock, so bans,
// unbans and sweeps never hold them up. In front of both, a Bloom
// pre-filter (16 bits an entry, one memory word per test) answers most
// lookups of unlisted addresses without touching the tables. Tables of
// 2 MiB or more are mapped off the Go heap on transparent huge pages
// (Linux; bigSlice), released by a cleanup once no reader holds them.
//
// Enforcement. A ban is in the in-memory blacklist before any store I/O, so
// the source is refused from the next Allowed call; then it is written to
// the store, then Options.OnBan runs, then one line "source banned" is
// logged. If the store write fails the ban stays in force in memory
// (Stats.StoreErrors). The whitelist wins over the blacklist; an expired
// entry allows at once and the sweep (Run) removes it within a second.
package fraud
