// Package kernelbl mirrors the fraud engine's blacklist into the kernel: a
// separate nftables table `inet pbxgate_bl` whose prerouting chain (priority
// raw, before conntrack) drops packets from any source in the interval sets
// bl4 and bl6. Each set element carries its own timeout, so the kernel lifts
// a ban on time even when pbxgate is not running.
//
// Sync talks netlink (github.com/google/nftables), never the nft CLI, and
// sends elements in chunks so a large blacklist loads in one pass without
// "message too long". The caller's store is the truth: Reconcile makes the
// kernel sets equal to the given entries, reading the kernel only over
// netlink to compute the difference; overlapping prefixes are flattened into
// non-overlapping ranges first (interval sets reject overlaps). Subtract
// cuts networks that must never be dropped (whitelist, trusted networks)
// out of a list of bans before it is handed to Sync.
//
// The package does not decide who is banned (that is the fraud engine), does
// not persist anything, and never touches the policy table `inet pbxgate` or
// any other tool's table; rolling the policy back leaves the blacklist alone.
package kernelbl
