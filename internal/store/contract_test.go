package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpOpts compare entries: netip values by ==, times by Equal.
var cmpOpts = cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})

// backends are the Store implementations the contract runs against. Each
// open returns a fresh, empty store that the test closes.
var backends = []struct {
	name string
	open func(t *testing.T) Store
}{
	{"bolt", func(t *testing.T) Store {
		t.Helper()
		b, err := OpenBolt(filepath.Join(t.TempDir(), "data", "pbxgate.db"), BoltOptions{})
		if err != nil {
			t.Fatalf("OpenBolt: %v", err)
		}
		return b
	}},
	{"memory", func(t *testing.T) Store { return NewMemory() }},
}

var (
	t0  = time.Date(2025, 3, 1, 12, 30, 15, 123456789, time.UTC)
	cet = time.FixedZone("CET", 3600)
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// fullEntry sets every field to a non-zero value.
func fullEntry() Entry {
	return Entry{
		List:      Blacklist,
		Prefix:    pfx("192.0.2.7/32"),
		Origin:    Auto,
		Reason:    "weighted 12 >= 10: invalid_credentials, unknown_host",
		Evidence:  []string{"ldap invalid_credentials user=bob", "http unknown_host host=x", "ünïcode \x00 bytes"},
		Note:      "seen on the SIP trunk too",
		Created:   t0.Add(time.Hour).In(cet),
		FirstSeen: t0.Add(-time.Hour),
		LastSeen:  t0,
		Count:     12,
		Expires:   time.Date(2300, 1, 1, 0, 0, 0, 1, time.UTC),
		Level:     3,
	}
}

// wantErr fails unless err wraps target and its text contains every want.
func wantErr(t *testing.T, err, target error, want ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want one wrapping %v", err, target)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// contract is the behaviour every Store must have.
var contract = []struct {
	name string
	run  func(t *testing.T, s Store)
}{
	{"every field round-trips", func(t *testing.T, s Store) {
		ctx := context.Background()
		e := fullEntry()
		if err := s.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.Get(ctx, e.List, e.Prefix)
		if err != nil || !ok {
			t.Fatalf("Get = %v, %v", ok, err)
		}
		if diff := cmp.Diff(e, got, cmpOpts); diff != "" {
			t.Errorf("Get differs (-put +got):\n%s", diff)
		}
		if got.Created.Location() != time.UTC {
			t.Errorf("Created comes back in %v, want UTC", got.Created.Location())
		}
	}},
	{"zero times and empty fields stay zero", func(t *testing.T, s Store) {
		ctx := context.Background()
		e := Entry{List: Whitelist, Prefix: pfx("2001:db8::/32"), Origin: Manual, Evidence: []string{}}
		if err := s.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.Get(ctx, Whitelist, e.Prefix)
		if err != nil || !ok {
			t.Fatalf("Get = %v, %v", ok, err)
		}
		e.Evidence = nil
		if got.Created != (time.Time{}) || got.Expires != (time.Time{}) || got.FirstSeen != (time.Time{}) || got.LastSeen != (time.Time{}) {
			t.Errorf("zero times came back as %v %v %v %v", got.Created, got.FirstSeen, got.LastSeen, got.Expires)
		}
		if diff := cmp.Diff(e, got, cmpOpts); diff != "" {
			t.Errorf("Get differs (-put +got):\n%s", diff)
		}
	}},
	{"put masks the prefix", func(t *testing.T, s Store) {
		ctx := context.Background()
		if err := s.Put(ctx, Entry{List: Blacklist, Prefix: pfx("10.1.2.3/8"), Origin: Manual}); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{"10.0.0.0/8", "10.9.9.9/8"} {
			got, ok, err := s.Get(ctx, Blacklist, pfx(q))
			if err != nil || !ok || got.Prefix != pfx("10.0.0.0/8") {
				t.Errorf("Get(%s) = %v, %v, %v; want 10.0.0.0/8", q, got.Prefix, ok, err)
			}
		}
		if _, ok, _ := s.Get(ctx, Blacklist, pfx("10.1.2.3/32")); ok {
			t.Error("Get(10.1.2.3/32) found the /8")
		}
	}},
	{"put replaces", func(t *testing.T, s Store) {
		ctx := context.Background()
		p := pfx("198.51.100.0/24")
		for i, note := range []string{"first", "second"} {
			if err := s.Put(ctx, Entry{List: Blacklist, Prefix: p, Note: note, Level: i + 1}); err != nil {
				t.Fatal(err)
			}
		}
		got, _, err := s.Get(ctx, Blacklist, p)
		if err != nil || got.Note != "second" || got.Level != 2 {
			t.Errorf("Get = %+v, %v; want the second put", got, err)
		}
		if n, err := s.Count(ctx, Blacklist); err != nil || n != 1 {
			t.Errorf("Count = %d, %v; want 1", n, err)
		}
	}},
	{"lists are separate", func(t *testing.T, s Store) {
		ctx := context.Background()
		p := pfx("203.0.113.9/32")
		if err := s.Put(ctx, Entry{List: Whitelist, Prefix: p, Note: "office"}); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := s.Get(ctx, Blacklist, p); ok || err != nil {
			t.Errorf("blacklist Get = %v, %v; want absent", ok, err)
		}
		if n, _ := s.Count(ctx, Blacklist); n != 0 {
			t.Errorf("blacklist Count = %d, want 0", n)
		}
		if n, _ := s.Count(ctx, Whitelist); n != 1 {
			t.Errorf("whitelist Count = %d, want 1", n)
		}
	}},
	{"delete returns the entry", func(t *testing.T, s Store) {
		ctx := context.Background()
		e := fullEntry()
		if err := s.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.Delete(ctx, e.List, e.Prefix)
		if err != nil || !ok {
			t.Fatalf("Delete = %v, %v", ok, err)
		}
		if diff := cmp.Diff(e, got, cmpOpts); diff != "" {
			t.Errorf("Delete returned (-put +got):\n%s", diff)
		}
		if _, ok, err := s.Get(ctx, e.List, e.Prefix); ok || err != nil {
			t.Errorf("Get after Delete = %v, %v", ok, err)
		}
		if _, ok, err := s.Delete(ctx, e.List, e.Prefix); ok || err != nil {
			t.Errorf("second Delete = %v, %v; want not found", ok, err)
		}
	}},
	{"range is in key order", func(t *testing.T, s Store) {
		ctx := context.Background()
		want := []string{
			"0.0.0.0/0", "1.2.3.0/24", "1.2.3.4/32", "10.0.0.0/8", "10.0.0.0/16",
			"10.0.0.1/32", "255.255.255.255/32",
			"::/0", "::ffff:1.2.3.4/128", "2001:db8::/32", "2001:db8::/64", "2001:db8::1/128", "fe80::/10",
		}
		for i := range want { // insert in a scrambled order
			p := want[(i*5)%len(want)]
			if err := s.Put(ctx, Entry{List: Blacklist, Prefix: pfx(p)}); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		err := s.Range(ctx, Blacklist, func(e Entry) bool {
			if e.List != Blacklist {
				t.Errorf("%s: List = %v", e.Prefix, e.List)
			}
			got = append(got, e.Prefix.String())
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Range order (-want +got):\n%s", diff)
		}
		n := 0
		if err := s.Range(ctx, Blacklist, func(Entry) bool { n++; return n < 3 }); err != nil || n != 3 {
			t.Errorf("Range stopped after %d calls (%v), want 3", n, err)
		}
		if err := s.Range(ctx, Whitelist, func(Entry) bool { t.Error("whitelist is empty"); return true }); err != nil {
			t.Error(err)
		}
	}},
	{"invalid arguments", func(t *testing.T, s Store) {
		ctx := context.Background()
		tooMuch := make([]string, MaxEvidence+1)
		for _, e := range []Entry{
			{List: 0, Prefix: pfx("192.0.2.1/32")},
			{List: 3, Prefix: pfx("192.0.2.1/32")},
			{List: Blacklist},
			{List: Blacklist, Prefix: pfx("192.0.2.1/32"), Evidence: tooMuch},
			{List: Blacklist, Prefix: pfx("192.0.2.1/32"), Note: strings.Repeat("x", maxValueLen)},
		} {
			wantErr(t, s.Put(ctx, e), ErrInvalid)
		}
		_, _, err := s.Get(ctx, 7, pfx("192.0.2.1/32"))
		wantErr(t, err, ErrInvalid, "list 7")
		_, _, err = s.Get(ctx, Blacklist, netip.Prefix{})
		wantErr(t, err, ErrInvalid, "invalid prefix")
		_, _, err = s.Delete(ctx, Whitelist, netip.Prefix{})
		wantErr(t, err, ErrInvalid)
		wantErr(t, s.Range(ctx, 0, func(Entry) bool { return true }), ErrInvalid)
		_, err = s.Count(ctx, 9)
		wantErr(t, err, ErrInvalid)
		_, err = recordBan(ctx, s, netip.Addr{}, t0, time.Hour)
		wantErr(t, err, ErrInvalid)
		_, err = recordBan(ctx, s, netip.MustParseAddr("192.0.2.1"), t0, -time.Hour)
		wantErr(t, err, ErrInvalid)
		wantErr(t, s.PutMeta(ctx, "schema", []byte("2")), ErrInvalid, "reserved")
		wantErr(t, s.PutMeta(ctx, "", nil), ErrInvalid)
		wantErr(t, s.PutMeta(ctx, "big", make([]byte, maxValueLen+1)), ErrInvalid)
		if n, _ := s.Count(ctx, Blacklist); n != 0 {
			t.Errorf("refused puts left %d entries", n)
		}
	}},
	{"record ban counts within the window", func(t *testing.T, s Store) {
		ctx := context.Background()
		a := netip.MustParseAddr("2001:db8::7")
		day := 24 * time.Hour
		steps := []struct {
			at       time.Time
			wantBans int
			wantLast time.Time
		}{
			{t0, 1, t0},
			{t0.Add(time.Hour), 2, t0.Add(time.Hour)},
			{t0.Add(25 * time.Hour), 3, t0.Add(25 * time.Hour)},     // exactly window after the last: still counts
			{t0.Add(20 * time.Hour), 4, t0.Add(25 * time.Hour)},     // out of order: Last does not go back
			{t0.Add(49*time.Hour + 1), 1, t0.Add(49*time.Hour + 1)}, // more than window: restart
		}
		for i, st := range steps {
			h, err := recordBan(ctx, s, a, st.at, day)
			if err != nil {
				t.Fatal(err)
			}
			if h.Bans != st.wantBans || !h.Last.Equal(st.wantLast) {
				t.Errorf("step %d: history = %d at %v, want %d at %v", i, h.Bans, h.Last, st.wantBans, st.wantLast)
			}
		}
		h, err := recordBan(ctx, s, netip.MustParseAddr("192.0.2.1"), t0, day)
		if err != nil || h.Bans != 1 {
			t.Errorf("other address: %+v, %v; want its own count 1", h, err)
		}
	}},
	{"record bans in one write", func(t *testing.T, s Store) {
		ctx := context.Background()
		a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::9")
		if _, err := recordBan(ctx, s, a, t0, time.Hour); err != nil {
			t.Fatal(err)
		}
		var seen []History
		entry := func(p string, ok bool) func(History) (Entry, bool) {
			return func(h History) (Entry, bool) {
				seen = append(seen, h)
				return Entry{List: Blacklist, Prefix: pfx(p), Origin: Auto, Reason: "r", Level: h.Bans,
					Created: t0, Expires: t0.Add(time.Duration(h.Bans) * time.Hour)}, ok
			}
		}
		at := t0.Add(time.Minute)
		err := s.RecordBans(ctx, time.Hour, []AutoBan{
			{Addr: a, At: at, Entry: entry("192.0.2.1/32", true)},
			{Addr: b, At: at, Entry: entry("2001:db8::9/128", false)}, // lifted meanwhile: history only
			{Addr: a, At: at.Add(time.Second), Entry: entry("192.0.2.1/32", true)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != 3 || seen[0].Bans != 2 || seen[1].Bans != 1 || seen[2].Bans != 3 {
			t.Errorf("histories %+v, want 2, 1, 3 bans", seen)
		}
		if e, ok, _ := s.Get(ctx, Blacklist, pfx("192.0.2.1/32")); !ok || e.Level != 3 {
			t.Errorf("entry of a: %+v, %v; want the last one, level 3", e, ok)
		}
		if _, ok, _ := s.Get(ctx, Blacklist, pfx("2001:db8::9/128")); ok {
			t.Error("an entry refused by Entry was written")
		}
		if h, _ := recordBan(ctx, s, b, at.Add(time.Minute), time.Hour); h.Bans != 2 {
			t.Errorf("history of b: %d bans, want 2", h.Bans)
		}
		// An invalid entry fails the whole write: nothing of it is stored.
		err = s.RecordBans(ctx, time.Hour, []AutoBan{
			{Addr: a, At: at, Entry: entry("192.0.2.1/32", true)},
			{Addr: b, At: at, Entry: func(History) (Entry, bool) { return Entry{List: Whitelist, Prefix: pfx("2001:db8::9/128")}, true }},
		})
		wantErr(t, err, ErrInvalid)
		if e, _, _ := s.Get(ctx, Blacklist, pfx("192.0.2.1/32")); e.Level != 3 {
			t.Errorf("a failed RecordBans changed an entry: level %d", e.Level)
		}
		if h, _ := recordBan(ctx, s, a, at.Add(time.Minute), time.Hour); h.Bans != 4 {
			t.Errorf("a failed RecordBans changed the history: %d bans, want 4", h.Bans)
		}
		wantErr(t, s.RecordBans(ctx, -time.Hour, []AutoBan{{Addr: a, At: at, Entry: entry("192.0.2.1/32", true)}}), ErrInvalid)
		wantErr(t, s.RecordBans(ctx, time.Hour, []AutoBan{{At: at, Entry: entry("192.0.2.1/32", true)}}), ErrInvalid)
		wantErr(t, s.RecordBans(ctx, time.Hour, []AutoBan{{Addr: a, At: at}}), ErrInvalid)
	}},
	{"prune history", func(t *testing.T, s Store) {
		ctx := context.Background()
		old, recent := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
		for _, r := range []struct {
			a  netip.Addr
			at time.Time
		}{{old, t0}, {old, t0.Add(time.Hour)}, {recent, t0.Add(10 * time.Hour)}} {
			if _, err := recordBan(ctx, s, r.a, r.at, 48*time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		n, err := s.PruneHistory(ctx, t0.Add(5*time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("PruneHistory = %d, %v; want 1", n, err)
		}
		if h, _ := recordBan(ctx, s, old, t0.Add(6*time.Hour), 48*time.Hour); h.Bans != 1 {
			t.Errorf("pruned address has %d bans, want a fresh 1", h.Bans)
		}
		if h, _ := recordBan(ctx, s, recent, t0.Add(11*time.Hour), 48*time.Hour); h.Bans != 2 {
			t.Errorf("kept address has %d bans, want 2", h.Bans)
		}
		if n, err := s.PruneHistory(ctx, t0); err != nil || n != 0 {
			t.Errorf("PruneHistory(t0) = %d, %v; want 0", n, err)
		}
	}},
	{"meta values", func(t *testing.T, s Store) {
		ctx := context.Background()
		if _, ok, err := s.GetMeta(ctx, "admin_token"); ok || err != nil {
			t.Fatalf("GetMeta missing = %v, %v", ok, err)
		}
		if err := s.PutMeta(ctx, "admin_token", []byte("$argon2id$x")); err != nil {
			t.Fatal(err)
		}
		v, ok, err := s.GetMeta(ctx, "admin_token")
		if err != nil || !ok || string(v) != "$argon2id$x" {
			t.Fatalf("GetMeta = %q, %v, %v", v, ok, err)
		}
		v[0] = 'X' // the caller owns the copy
		if v, _, _ := s.GetMeta(ctx, "admin_token"); string(v) != "$argon2id$x" {
			t.Errorf("changing a returned value changed the store: %q", v)
		}
		if err := s.PutMeta(ctx, "empty", nil); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := s.GetMeta(ctx, "empty"); !ok || err != nil || len(v) != 0 {
			t.Errorf("empty value: %q, %v, %v", v, ok, err)
		}
		if v, ok, _ := s.GetMeta(ctx, "schema"); !ok || string(v) != "1" {
			t.Errorf("schema = %q, %v; want \"1\"", v, ok)
		}
	}},
	{"returned evidence is the caller's", func(t *testing.T, s Store) {
		ctx := context.Background()
		e := fullEntry()
		if err := s.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
		e.Evidence[0] = "changed after Put"
		got, _, _ := s.Get(ctx, e.List, e.Prefix)
		if got.Evidence[0] == "changed after Put" {
			t.Fatal("the store kept the caller's slice")
		}
		got.Evidence[0] = "changed after Get"
		again, _, _ := s.Get(ctx, e.List, e.Prefix)
		if again.Evidence[0] == "changed after Get" {
			t.Fatal("Get returned the store's slice")
		}
	}},
	{"cancelled context", func(t *testing.T, s Store) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		p, a := pfx("192.0.2.0/24"), netip.MustParseAddr("192.0.2.1")
		_, _, getErr := s.Get(ctx, Blacklist, p)
		_, _, delErr := s.Delete(ctx, Blacklist, p)
		_, countErr := s.Count(ctx, Blacklist)
		_, banErr := recordBan(ctx, s, a, t0, time.Hour)
		_, pruneErr := s.PruneHistory(ctx, t0)
		_, _, getMetaErr := s.GetMeta(ctx, "k")
		for name, err := range map[string]error{
			"Put":          s.Put(ctx, Entry{List: Blacklist, Prefix: p}),
			"Get":          getErr,
			"Delete":       delErr,
			"Range":        s.Range(ctx, Blacklist, func(Entry) bool { return true }),
			"Count":        countErr,
			"RecordBans":   banErr,
			"PruneHistory": pruneErr,
			"GetMeta":      getMetaErr,
			"PutMeta":      s.PutMeta(ctx, "k", nil),
			"Snapshot":     s.Snapshot(ctx, new(strings.Builder)),
		} {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: error = %v, want context.Canceled", name, err)
			}
		}
		if err := s.Watch(ctx, func(Change) { t.Error("Watch called fn") }); err != nil {
			t.Errorf("Watch(cancelled) = %v, want nil", err)
		}
		if n, _ := s.Count(context.Background(), Blacklist); n != 0 {
			t.Errorf("cancelled Put wrote: Count = %d", n)
		}
	}},
	{"closed store", func(t *testing.T, s Store) {
		ctx := context.Background()
		done := make(chan error, 1)
		go func() { done <- s.Watch(context.Background(), func(Change) {}) }()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("Watch across Close = %v, want ErrClosed", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
		p := pfx("192.0.2.0/24")
		_, _, getErr := s.Get(ctx, Blacklist, p)
		_, _, delErr := s.Delete(ctx, Blacklist, p)
		_, countErr := s.Count(ctx, Blacklist)
		_, banErr := recordBan(ctx, s, netip.MustParseAddr("192.0.2.1"), t0, time.Hour)
		for i, err := range []error{
			s.Put(ctx, Entry{List: Blacklist, Prefix: p}), getErr, delErr, countErr, banErr,
			s.Range(ctx, Blacklist, func(Entry) bool { return true }),
			s.PutMeta(ctx, "k", nil), s.Watch(ctx, func(Change) {}),
			s.RecordBans(ctx, time.Hour, []AutoBan{{Addr: netip.MustParseAddr("192.0.2.1"), At: t0,
				Entry: func(History) (Entry, bool) { return Entry{}, false }}}),
		} {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("call %d after Close: %v, want ErrClosed", i, err)
			}
		}
	}},
}

func TestContract(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range contract {
				t.Run(c.name, func(t *testing.T) {
					s := b.open(t)
					defer s.Close()
					c.run(t, s)
				})
			}
		})
	}
}

func TestMemorySnapshotUnsupported(t *testing.T) {
	err := NewMemory().Snapshot(context.Background(), new(strings.Builder))
	wantErr(t, err, errors.ErrUnsupported, "memory store has no snapshot")
}

// ExampleStore shows the calls the fraud engine makes around a ban.
func ExampleStore() {
	var s Store = NewMemory()
	defer s.Close()
	ctx := context.Background()
	src := netip.MustParseAddr("192.0.2.7")
	h, _ := recordBan(ctx, s, src, t0, 7*24*time.Hour)
	_ = s.Put(ctx, Entry{
		List: Blacklist, Prefix: netip.PrefixFrom(src, 32), Origin: Auto,
		Reason: "weighted 10 >= 10", Created: t0, Expires: t0.Add(time.Hour), Level: h.Bans,
	})
	e, ok, _ := s.Get(ctx, Blacklist, netip.MustParsePrefix("192.0.2.7/32"))
	fmt.Println(ok, e.Level, e.Expired(t0.Add(2*time.Hour)))
	// Output: true 1 true
}

// recordBan counts one ban of a at at through RecordBans, writing no entry,
// and returns the history with it.
func recordBan(ctx context.Context, s Store, a netip.Addr, at time.Time, window time.Duration) (History, error) {
	var h History
	err := s.RecordBans(ctx, window, []AutoBan{{Addr: a, At: at,
		Entry: func(x History) (Entry, bool) { h = x; return Entry{}, false }}})
	return h, err
}
