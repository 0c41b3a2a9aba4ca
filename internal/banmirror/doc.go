// Package banmirror keeps the kernel blacklist (package kernelbl) equal to
// the fraud engine's bans, minus the addresses that must never be dropped:
// the whitelist and the firewall's trusted networks.
//
// The fraud engine reports bans and lifts through two callbacks, OnBan and
// OnLift, which it calls on its hot path; they only put the prefix in a
// small bounded queue (duplicates coalesce; when it is full the prefix is
// dropped, counted, and the next reconcile repairs the kernel) and never
// block on I/O. Run drains the queue in batches: bans go to the kernel in
// one Add with a provisional expiry (now + the longest ban,
// fraud.blacklist_max, because an automatic ban reaches the kernel before
// its real expiry is decided), lifts are removed at once. A full reconcile
// from the engine's stored entries follows a few seconds after a burst of
// bans (so real expiries land soon), shortly after a lift (an allow may
// carve a hole in a wider ban), and every resync interval. A reconcile
// subtracts the whitelist and the trusted networks from the bans
// (kernelbl.Subtract) and hands the result to kernelbl.Sync.Reconcile;
// automatic bans not yet written to the store are kept (with their
// provisional expiry) until the store lists them.
//
// Failures are counted, logged once per failure streak (with a reminder
// while it lasts, and a line when it recovers), and retried with backoff;
// they never stop Run.
//
// The package does not decide bans (package fraud does), does not talk to
// the kernel itself (package kernelbl does), and does not read the
// configuration: the gateway hands in the settings and calls Reconfigure
// on reload.
package banmirror
