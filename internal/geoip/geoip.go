package geoip

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"sync"
	"time"

	maxminddb "github.com/oschwald/maxminddb-golang/v2"
	"go4.org/netipx"
)

// MaxNetworks bounds the networks Select walks in one pass, counting those
// without data: about ten times a full GeoIP2-City database. A tree that
// has more (a corrupt or hostile file whose nodes point back at each other
// unfolds into exponentially many) fails with ErrTooLarge instead of running
// for ever.
const MaxNetworks = 1 << 26

// maxCachedRecords bounds the cache of decoded country codes by record
// offset. A Country database has a few thousand distinct records, so all of
// them are decoded once; a City database has more, and the rest are decoded
// each time.
const maxCachedRecords = 1 << 16

// DB is an open MaxMind-format database. Its methods are safe for
// concurrent use; Close waits for running Selects.
type DB struct {
	name        string // the path, or "database bytes", for errors
	maxNetworks int

	mu sync.RWMutex // guards r: Close takes it for writing
	r  *maxminddb.Reader
}

// Info describes a database, from its metadata.
type Info struct {
	// Type is the metadata's database_type, e.g. "GeoLite2-Country".
	Type string
	// Built is when the database was built.
	Built time.Time
	// IPVersion is 4 (IPv4 only) or 6 (IPv4 and IPv6).
	IPVersion int
}

// Networks are the addresses located in a set of countries: sorted,
// disjoint, and the fewest prefixes that cover exactly those addresses
// (adjacent networks are merged).
type Networks struct {
	V4, V6 []netip.Prefix
}

// Stats describe one Select pass.
type Stats struct {
	// Networks is how many networks with data the database has.
	Networks int
	// Unlocated is how many of them have no country.iso_code.
	Unlocated int
	// ByCountry counts, for each requested code (upper case), the networks
	// the database locates in it, before merging. A zero count usually
	// means a wrong code ("UK" instead of "GB").
	ByCountry map[string]int
}

// Open opens the database at path (memory-mapped; Close releases it). A
// missing or unreadable file gives an error wrapping the *fs.PathError; a
// file that is not a MaxMind DB gives ErrNotMMDB. Whether it holds country
// data is known only after a Select (ErrNoCountryData).
func Open(path string) (*DB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		if _, ok := errors.AsType[*fs.PathError](err); ok {
			return nil, fmt.Errorf("geoip: %w", err)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrNotMMDB, path, err)
	}
	return &DB{name: path, maxNetworks: MaxNetworks, r: r}, nil
}

// FromBytes opens a database held in b, which it keeps and which must not
// change while the DB is open. Errors are as for Open.
func FromBytes(b []byte) (*DB, error) {
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotMMDB, err)
	}
	return &DB{name: "database bytes", maxNetworks: MaxNetworks, r: r}, nil
}

// Info returns the database's metadata, or the zero Info once closed.
func (db *DB) Info() Info {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.r == nil {
		return Info{}
	}
	m := db.r.Metadata
	return Info{Type: m.DatabaseType, Built: m.BuildTime(), IPVersion: int(m.IPVersion)}
}

// Close releases the database. It is idempotent; later Selects return
// ErrClosed.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.r == nil {
		return nil
	}
	err := db.r.Close()
	db.r = nil
	if err != nil {
		return fmt.Errorf("geoip: close %s: %w", db.name, err)
	}
	return nil
}

// Select walks the database once and returns, for each group of country
// codes (ISO 3166-1 alpha-2, any case), the networks located in any country
// of the group; an empty group gives empty Networks. Every bad code is
// reported at once (ErrBadCountry). A database in which no network has
// country.iso_code gives ErrNoCountryData; a corrupt one ErrCorrupt; more
// than MaxNetworks networks ErrTooLarge; a done ctx its error.
func (db *DB) Select(ctx context.Context, groups ...[]string) ([]Networks, Stats, error) {
	slotOf := map[code]int{}
	var codes []code
	members := make([][]int, len(groups))
	var errs []error
	for gi, g := range groups {
		for _, s := range g {
			c, ok := parseCode(s)
			if !ok {
				errs = append(errs, fmt.Errorf("%w: %q", ErrBadCountry, s))
				continue
			}
			slot, seen := slotOf[c]
			if !seen {
				slot = len(codes)
				slotOf[c] = slot
				codes = append(codes, c)
			}
			members[gi] = append(members[gi], slot)
		}
	}
	if len(errs) > 0 {
		return nil, Stats{}, errors.Join(errs...)
	}

	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.r == nil {
		return nil, Stats{}, ErrClosed
	}
	acc := make([]collector, len(codes))
	stats := Stats{ByCountry: make(map[string]int, len(codes))}
	for _, c := range codes {
		stats.ByCountry[c.String()] = 0
	}
	if err := db.walk(ctx, slotOf, acc, &stats); err != nil {
		return nil, Stats{}, err
	}
	for i, c := range codes {
		stats.ByCountry[c.String()] = acc[i].n
	}

	sets := make([]*netipx.IPSet, len(acc))
	for i := range acc {
		sets[i] = acc[i].set()
	}
	out := make([]Networks, len(groups))
	for gi, slots := range members {
		var set *netipx.IPSet
		switch len(slots) {
		case 0:
			continue
		case 1:
			set = sets[slots[0]]
		default:
			var b netipx.IPSetBuilder
			for _, s := range slots {
				b.AddSet(sets[s])
			}
			var err error
			if set, err = b.IPSet(); err != nil { // only invalid ranges fail, and none are added
				return nil, Stats{}, fmt.Errorf("geoip: merging networks: %w", err)
			}
		}
		for _, p := range set.Prefixes() {
			if p.Addr().Is4() {
				out[gi].V4 = append(out[gi].V4, p)
			} else {
				out[gi].V6 = append(out[gi].V6, p)
			}
		}
	}
	return out, stats, nil
}

var (
	// mapped96 holds the IPv4-mapped IPv6 addresses (::ffff:0:0/96).
	mapped96 = netip.MustParsePrefix("::ffff:0:0/96")
	allIPv4  = netipx.RangeOfPrefix(netip.MustParsePrefix("0.0.0.0/0"))
)

// walk is one pass over the tree; db.mu is held for reading.
func (db *DB) walk(ctx context.Context, slotOf map[code]int, acc []collector, stats *Stats) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cache := map[uintptr]code{}
	leaves := 0
	// Networks without data are walked too (and counted) so that the
	// bound on leaves bounds the work: the iterator visits them anyway.
	for res := range db.r.Networks(maxminddb.IncludeNetworksWithoutData()) {
		leaves++
		if leaves > db.maxNetworks {
			return fmt.Errorf("%w: %s: more than %d", ErrTooLarge, db.name, db.maxNetworks)
		}
		if leaves%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := res.Err(); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, db.name, err)
		}
		if !res.Found() {
			continue
		}
		stats.Networks++
		c, err := countryOf(res, cache)
		if err != nil {
			return fmt.Errorf("%w: %s: network %s: %v", ErrCorrupt, db.name, res.Prefix(), err)
		}
		if c == (code{}) {
			stats.Unlocated++
			continue
		}
		slot, ok := slotOf[c]
		if !ok {
			continue
		}
		p := res.Prefix()
		if !p.IsValid() {
			return fmt.Errorf("%w: %s: a network without a valid prefix", ErrCorrupt, db.name)
		}
		if p.Addr().Is6() {
			if p.Bits() >= 96 && mapped96.Contains(p.Addr()) {
				continue // see the package doc: IPv4 is read from ::/96 only
			}
			if p.Bits() < 96 && p.Contains(netip.IPv6Unspecified()) {
				// A record above the IPv4 subtree holds all of IPv4.
				acc[slot].add(allIPv4)
			}
		}
		acc[slot].add(netipx.RangeOfPrefix(p))
	}
	if stats.Networks == stats.Unlocated {
		return fmt.Errorf("%w: %s (type %q)", ErrNoCountryData, db.name, db.r.Metadata.DatabaseType)
	}
	return ctx.Err()
}

// countryOf returns the record's country.iso_code, or the zero code when it
// has none (not located). Decoded codes are cached by record offset.
func countryOf(res maxminddb.Result, cache map[uintptr]code) (code, error) {
	off := res.Offset()
	if c, ok := cache[off]; ok {
		return c, nil
	}
	var iso *string
	if err := res.DecodePath(&iso, "country", "iso_code"); err != nil {
		// DecodePath does not say whether the data is corrupt or only of
		// another shape (a string record, a country that is not a map);
		// decoding into the struct does.
		var rec struct {
			Country struct {
				ISOCode string `maxminddb:"iso_code"`
			} `maxminddb:"country"`
		}
		if err := res.Decode(&rec); err != nil {
			if _, ok := errors.AsType[maxminddb.UnmarshalTypeError](err); !ok {
				return code{}, err
			}
		}
		iso = nil // a record of another shape: not located
	}
	var c code
	if iso != nil {
		c, _ = parseCode(*iso)
	}
	if len(cache) < maxCachedRecords {
		cache[off] = c
	}
	return c, nil
}

// code is an upper-case ISO 3166-1 alpha-2 code; the zero code is none.
type code [2]byte

func (c code) String() string { return string(c[:]) }

func parseCode(s string) (code, bool) {
	if len(s) != 2 {
		return code{}, false
	}
	var c code
	for i := range 2 {
		b := s[i]
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		if b < 'A' || b > 'Z' {
			return code{}, false
		}
		c[i] = b
	}
	return c, true
}

// collector gathers one country's networks. The walk yields them in
// ascending order, so adjacent ones are merged as they come, which keeps
// the builder small; the builder sorts and merges the rest.
type collector struct {
	b    netipx.IPSetBuilder
	last netipx.IPRange // not yet added; zero when none
	n    int            // networks added
}

func (c *collector) add(r netipx.IPRange) {
	c.n++
	if c.last.IsValid() && c.last.To().Next() == r.From() {
		c.last = netipx.IPRangeFrom(c.last.From(), r.To())
		return
	}
	if c.last.IsValid() {
		c.b.AddRange(c.last)
	}
	c.last = r
}

func (c *collector) set() *netipx.IPSet {
	if c.last.IsValid() {
		c.b.AddRange(c.last)
		c.last = netipx.IPRange{}
	}
	s, _ := c.b.IPSet() // only invalid ranges fail, and none are added
	return s
}
