package admin

import (
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
	"github.com/pbxgate/pbxgate/internal/store"
)

// The API's JSON documents. They are the one definition of the wire format;
// package adminclient decodes into them.

// EntryJSON is one blacklist or whitelist entry.
type EntryJSON struct {
	List      string    `json:"list"`    // "blacklist" or "whitelist"
	Address   string    `json:"address"` // "203.0.113.7" or "198.51.100.0/24"
	Origin    string    `json:"origin"`  // "auto" or "manual"
	Reason    string    `json:"reason"`
	Evidence  []string  `json:"evidence,omitempty"`
	Note      string    `json:"note,omitempty"`
	Created   time.Time `json:"created"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	Count     int       `json:"count"`
	Expires   time.Time `json:"expires,omitzero"` // absent: never
	Level     int       `json:"level"`
}

// NewEntryJSON converts a store entry.
func NewEntryJSON(e store.Entry) EntryJSON {
	return EntryJSON{
		List:      e.List.String(),
		Address:   FormatPrefix(e.Prefix),
		Origin:    e.Origin.String(),
		Reason:    e.Reason,
		Evidence:  e.Evidence,
		Note:      e.Note,
		Created:   e.Created,
		FirstSeen: e.FirstSeen,
		LastSeen:  e.LastSeen,
		Count:     e.Count,
		Expires:   e.Expires,
		Level:     e.Level,
	}
}

// EntriesJSON answers GET /api/v1/blacklist and /api/v1/whitelist.
type EntriesJSON struct {
	Entries []EntryJSON `json:"entries"`
}

// EntryRequest is the body of POST /api/v1/blacklist and /api/v1/whitelist.
type EntryRequest struct {
	Address string `json:"address"`       // IP address or CIDR prefix
	For     string `json:"for,omitempty"` // "30m", "7d"; empty: never expires
	Note    string `json:"note,omitempty"`
}

// MaxNote bounds EntryRequest.Note.
const MaxNote = 1024

// EventJSON is one event.
type EventJSON struct {
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	Source   string    `json:"source,omitempty"`
	Listener string    `json:"listener,omitempty"`
	Service  string    `json:"service,omitempty"`
	Proto    string    `json:"proto,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	User     string    `json:"user,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}

// NewEventJSON converts an event.
func NewEventJSON(e event.Event) EventJSON {
	out := EventJSON{
		Time:     e.Time,
		Kind:     e.Kind.String(),
		Listener: e.Listener,
		Service:  e.Service,
		Proto:    e.Proto,
		Reason:   e.Reason,
		User:     e.User,
		Detail:   e.Detail,
	}
	if e.Source.IsValid() {
		out.Source = e.Source.String()
	}
	return out
}

// EventsJSON answers GET /api/v1/events (without follow=1; with it, each
// line of the stream is one EventJSON).
type EventsJSON struct {
	Events []EventJSON `json:"events"`
}

// SourceJSON answers GET /api/v1/sources/{ip}.
type SourceJSON struct {
	Address     string     `json:"address"`
	Allowed     bool       `json:"allowed"`
	Whitelisted *EntryJSON `json:"whitelisted"` // null: not whitelisted
	Blacklisted *EntryJSON `json:"blacklisted"` // null: not blacklisted
	Score       int        `json:"score"`
	Threshold   int        `json:"threshold"`
	KnownUsers  int        `json:"known_users"`
	LastSeen    time.Time  `json:"last_seen,omitzero"`
}

// NewSourceJSON converts the fraud engine's answer.
func NewSourceJSON(si fraud.SourceInfo) SourceJSON {
	out := SourceJSON{
		Address:    si.Addr.String(),
		Allowed:    si.Allowed,
		Score:      si.Score,
		Threshold:  si.Threshold,
		KnownUsers: si.KnownUsers,
		LastSeen:   si.LastSeen,
	}
	if si.Whitelisted != nil {
		e := NewEntryJSON(*si.Whitelisted)
		out.Whitelisted = &e
	}
	if si.Blacklisted != nil {
		e := NewEntryJSON(*si.Blacklisted)
		out.Blacklisted = &e
	}
	return out
}

// StatsJSON answers GET /api/v1/stats: the fraud engine's counters and the
// events lost by slow followers of the event stream.
type StatsJSON struct {
	EventsSeen             uint64 `json:"events_seen"`
	EventsCounted          uint64 `json:"events_counted"`
	EventsIgnored          uint64 `json:"events_ignored"`
	Sources                int    `json:"sources"`
	SourcesEvicted         uint64 `json:"sources_evicted"`
	AutoBans               uint64 `json:"auto_bans"`
	ManualBans             uint64 `json:"manual_bans"`
	Unbans                 uint64 `json:"unbans"`
	Refused                uint64 `json:"refused"`
	Blacklisted            int    `json:"blacklisted"`
	Whitelisted            int    `json:"whitelisted"`
	StoreErrors            uint64 `json:"store_errors"`
	EventsDroppedFollowers uint64 `json:"events_dropped_followers"`
}

// NewStatsJSON converts the engine's counters.
func NewStatsJSON(s fraud.Stats, droppedFollowers uint64) StatsJSON {
	return StatsJSON{
		EventsSeen:             s.EventsSeen,
		EventsCounted:          s.EventsCounted,
		EventsIgnored:          s.EventsIgnored,
		Sources:                s.Sources,
		SourcesEvicted:         s.SourcesEvicted,
		AutoBans:               s.AutoBans,
		ManualBans:             s.ManualBans,
		Unbans:                 s.Unbans,
		Refused:                s.Refused,
		Blacklisted:            s.Blacklisted,
		Whitelisted:            s.Whitelisted,
		StoreErrors:            s.StoreErrors,
		EventsDroppedFollowers: droppedFollowers,
	}
}

// TokenJSON answers POST /api/v1/token/rotate.
type TokenJSON struct {
	Token string `json:"token"`
}

// StatusJSON answers /healthz and /readyz.
type StatusJSON struct {
	Status string `json:"status"`           // "ok" or "not ready"
	Reason string `json:"reason,omitempty"` // why not ready
}

// ErrorJSON is the body of every error answer.
type ErrorJSON struct {
	Error string `json:"error"`
}
