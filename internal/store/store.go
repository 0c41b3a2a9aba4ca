// Package store keeps pbxgate's durable state: blacklist and whitelist
// entries (automatic and manual), the ban history that escalation reads, and
// small metadata such as the admin token's hash. Store is the interface the
// rest of the program uses; Bolt is the embedded backend (one bbolt file in
// the data directory). A shared backend for several gateways (Redis)
// implements the same interface, and announces changes made by other nodes
// through Watch, so callers do not change when it is added.
//
// The package does not decide anything: it does not count events, compute
// ban durations or enforce bans. That is package fraud's job; fraud keeps a
// compact in-memory copy of the entries for the per-connection check and
// reads details from here.
//
// Every write is durable when the call returns (bbolt commits with fsync),
// so an entry acknowledged to an operator survives kill -9.
package store

import (
	"context"
	"io"
	"net/netip"
	"strconv"
	"time"
)

// List names one of the two address lists.
type List uint8

const (
	// Blacklist entries are refused at accept.
	Blacklist List = iota + 1
	// Whitelist entries are never counted and never banned.
	Whitelist
)

// String returns "blacklist" or "whitelist".
func (l List) String() string {
	switch l {
	case Blacklist:
		return "blacklist"
	case Whitelist:
		return "whitelist"
	}
	return "list(" + strconv.Itoa(int(l)) + ")"
}

// Origin says who made an entry.
type Origin uint8

const (
	// Auto entries are made by the fraud engine.
	Auto Origin = iota + 1
	// Manual entries are made by an operator (API, CLI) or the config file.
	Manual
)

// String returns "auto" or "manual".
func (o Origin) String() string {
	switch o {
	case Auto:
		return "auto"
	case Manual:
		return "manual"
	}
	return "origin(" + strconv.Itoa(int(o)) + ")"
}

// Entry is one blacklist or whitelist entry. The key is (List, Prefix).
type Entry struct {
	List   List
	Prefix netip.Prefix // masked; a single address is a /32 or /128
	Origin Origin
	// Reason says why, in one line: for automatic bans the weighted count and
	// the kinds of events that tipped it; for manual entries "manual".
	Reason string
	// Evidence holds up to MaxEvidence one-line descriptions of the events
	// that led to an automatic ban, oldest first.
	Evidence []string
	Note     string // operator's note, may be empty
	// Created is when the entry was made; FirstSeen and LastSeen bound the
	// events counted for it (zero for manual entries).
	Created   time.Time
	FirstSeen time.Time
	LastSeen  time.Time
	Count     int       // weighted events counted for an automatic ban
	Expires   time.Time // zero: never
	Level     int       // escalation step of an automatic ban: 1 for a first offence
}

// Expired reports whether the entry has an expiry at or before now.
func (e Entry) Expired(now time.Time) bool {
	return !e.Expires.IsZero() && !now.Before(e.Expires)
}

// MaxEvidence bounds Entry.Evidence.
const MaxEvidence = 16

// History is the ban record of one address within the recidive window.
type History struct {
	Bans int       // bans counted in the window, this one included
	Last time.Time // time of the latest ban
}

// AutoBan is one automatic ban for RecordBans.
type AutoBan struct {
	Addr netip.Addr
	At   time.Time
	// Entry returns the blacklist entry to write, given the address's ban
	// history with this ban counted; ok false writes no entry (the history
	// is recorded all the same). RecordBans calls it at most once, inside
	// its write: it must be quick and must not call the Store.
	Entry func(h History) (e Entry, ok bool)
}

// Change is an entry written or deleted by another node sharing the store.
type Change struct {
	Entry   Entry // for a delete only List and Prefix are set
	Deleted bool
}

// Store is durable state. Implementations are safe for concurrent use.
// Every method that writes returns only once the write is durable.
type Store interface {
	// Put inserts or replaces the entry with e's (List, Prefix).
	Put(ctx context.Context, e Entry) error
	// Get returns the entry with that key.
	Get(ctx context.Context, l List, p netip.Prefix) (Entry, bool, error)
	// Delete removes the entry with that key and returns it.
	Delete(ctx context.Context, l List, p netip.Prefix) (Entry, bool, error)
	// Range calls fn for every entry of l, in prefix order (addresses, then
	// prefix length), until fn returns false. fn must not call the Store.
	Range(ctx context.Context, l List, fn func(Entry) bool) error
	// Count returns the number of entries in l.
	Count(ctx context.Context, l List) (int, error)

	// RecordBans records automatic bans in one durable write: for each ban
	// in order, one more ban of its address at its time is counted (a
	// previous ban older than window restarts the count at 1), and the
	// entry its Entry returns for that history is written. A wave of bans
	// costs one commit. On error nothing of it is stored; the Entry
	// functions that were called say which.
	RecordBans(ctx context.Context, window time.Duration, bans []AutoBan) error
	// PruneHistory forgets bans whose latest one is before cutoff and
	// returns how many addresses were forgotten.
	PruneHistory(ctx context.Context, cutoff time.Time) (int, error)

	// GetMeta and PutMeta keep small named values (the admin token hash).
	GetMeta(ctx context.Context, key string) ([]byte, bool, error)
	PutMeta(ctx context.Context, key string, value []byte) error

	// Snapshot writes a consistent copy of the whole state in the backend's
	// own format (for backup); Restore in the backend's package reads it.
	Snapshot(ctx context.Context, w io.Writer) error

	// Watch calls fn for every change made by another node until ctx ends,
	// then returns nil. A single-node backend calls fn never and just waits.
	Watch(ctx context.Context, fn func(Change)) error

	// Close releases the backend. It is idempotent.
	Close() error
}
