package fraud

import (
	"net/netip"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/store"
)

// Config is the fraud engine's policy, built by the gateway from the
// configuration file's fraud section. Durations and counts must be
// positive; New and Reconfigure refuse a Config that is not.
type Config struct {
	// Enabled turns counting and automatic bans on. Manual entries and the
	// whitelist are enforced either way.
	Enabled bool
	// Threshold is how many weighted suspicious events one source may cause
	// within a minute (sliding window); one more bans it.
	Threshold int
	// BanFor is the first automatic ban's duration; each further ban of the
	// same address within RecidiveWindow doubles it, up to BanMax.
	BanFor         time.Duration
	BanMax         time.Duration
	RecidiveWindow time.Duration
	// KindWeights gives each event kind's weight; a missing kind weighs 0
	// (ignored). Success is never counted against a source.
	KindWeights map[event.Kind]int
	// ReasonWeights overrides the kind's weight for events with that Reason.
	ReasonWeights map[string]int
	// Whitelist holds the configuration file's whitelist: never counted,
	// never banned. Entries made at run time live in the store.
	Whitelist []netip.Prefix
	// MaxSources caps the sources whose events are being counted; beyond it
	// the least suspicious are forgotten first.
	MaxSources int
	// NATWindow is how long a successful login makes a user "known" at its
	// source address.
	NATWindow time.Duration
	// NATMaxFactor caps how far known users raise a source's threshold.
	NATMaxFactor int
}

// Stats are the engine's counters since start, for metrics and the API.
type Stats struct {
	EventsSeen     uint64 // every event handed to Emit
	EventsCounted  uint64 // suspicious events that added weight to a source
	EventsIgnored  uint64 // weight 0 (successes included), whitelisted or already banned sources, or counting disabled
	Sources        int    // sources being counted now
	SourcesEvicted uint64 // sources forgotten because of MaxSources
	AutoBans       uint64 // automatic bans made
	ManualBans     uint64 // bans made by an operator
	Unbans         uint64 // bans lifted (by an operator or expiry)
	Refused        uint64 // Allowed answers false
	Blacklisted    int    // blacklist entries in force (addresses and prefixes)
	Whitelisted    int    // whitelist entries in force, the configuration's included
	StoreErrors    uint64 // store writes that failed (the ban stays in memory)
}

// SourceInfo is what the engine knows about one address, for operators
// asking "why is this address blocked / not blocked".
type SourceInfo struct {
	Addr        netip.Addr
	Allowed     bool         // what Allowed answers now
	Whitelisted *store.Entry // the whitelist entry covering Addr, if any
	Blacklisted *store.Entry // the blacklist entry covering Addr, if any
	Score       int          // weighted events in the current window (all users)
	Threshold   int          // the threshold that applies now (NAT-raised for known users)
	KnownUsers  int          // distinct users that logged in from Addr within NATWindow
	LastSeen    time.Time    // last event counted, zero if none
}
