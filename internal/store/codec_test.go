package store

import (
	"bytes"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEntryCodecRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name string
		e    Entry
	}{
		{"zero", Entry{}},
		{"full", fullEntry()},
		{"manual", Entry{Origin: Manual, Reason: "manual", Note: "office NAT", Created: t0}},
		{"extremes", Entry{
			Origin: 255, Level: math.MinInt64, Count: math.MaxInt64,
			Created:   time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), // one ns after the zero time
			FirstSeen: time.Unix(-1, 999999999).In(cet),
			Expires:   time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
			Evidence:  make([]string, MaxEvidence),
		}},
		{"monotonic clock reading", Entry{LastSeen: time.Now()}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := encodeEntry(c.e)
			got, err := decodeEntry(b)
			if err != nil {
				t.Fatal(err)
			}
			want := copyEntry(c.e)
			want.List, want.Prefix = 0, netip.Prefix{} // kept in the bucket and key
			if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			for i, pair := range [][2]time.Time{{want.Created, got.Created}, {want.FirstSeen, got.FirstSeen}, {want.LastSeen, got.LastSeen}, {want.Expires, got.Expires}} {
				if pair[0] != pair[1] { // == also compares location and monotonic reading
					t.Errorf("time %d: %#v != %#v", i, pair[0], pair[1])
				}
			}
			if !bytes.Equal(encodeEntry(got), b) {
				t.Error("re-encoding differs")
			}
		})
	}
}

func TestDecodeEntryErrors(t *testing.T) {
	good := encodeEntry(fullEntry())
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "entry byte 0: version: truncated"},
		{"newer version", append([]byte{2}, good[1:]...), "unsupported encoding version 2"},
		{"truncated", good[:len(good)-3], "exceeds the 14 bytes left"},
		{"trailing", append(bytes.Clone(good), 0), "1 trailing bytes"},
		{"unknown time flag", []byte{1, 1, 0, 0, 0x10}, "unknown time flags 0x10"},
		{"nanoseconds", []byte{1, 1, 0, 0, 1, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03}, "1000000000 out of range"},
		{"zero time as value", []byte{1, 1, 0, 0, 1, 0xff, 0xdb, 0x8f, 0xf9, 0xce, 0x03, 0}, "zero time stored as a value"},
		{"long string", []byte{1, 1, 0, 0, 0, 0x7f}, "length 127 exceeds the 0 bytes left"},
		{"bad varint", []byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "level: bad or truncated varint"},
		{"too much evidence", []byte{1, 1, 0, 0, 0, 0, 0, MaxEvidence + 1}, "17 evidence lines exceed 16"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeEntry(c.b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("decodeEntry = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestHistoryCodec(t *testing.T) {
	for _, h := range []History{{}, {Bans: 1, Last: t0}, {Bans: 1 << 20, Last: t0.In(cet)}} {
		got, err := decodeHistory(encodeHistory(h))
		if err != nil || got.Bans != h.Bans || got.Last != normTime(h.Last) {
			t.Errorf("round trip of %+v = %+v, %v", h, got, err)
		}
	}
	for _, b := range [][]byte{nil, {2, 1, 0}, {1, 1, 2}, {1, 1, 0, 0}, {1, 0xff, 0xff, 0xff, 0xff, 0x7f, 0}} {
		if _, err := decodeHistory(b); err == nil {
			t.Errorf("decodeHistory(%x) accepted", b)
		}
	}
}

func TestKeyCodec(t *testing.T) {
	for _, s := range []string{"0.0.0.0/0", "192.0.2.7/32", "10.0.0.0/8", "::/0", "2001:db8::/32", "::ffff:192.0.2.7/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"} {
		p := pfx(s)
		k := prefixKey(p)
		got, err := decodeKey(k[:])
		if err != nil || got != p {
			t.Errorf("%s: round trip = %v, %v", s, got, err)
		}
		if keyString(k[:]) != s {
			t.Errorf("%s: keyString = %q", s, keyString(k[:]))
		}
	}
	k4, k6 := prefixKey(pfx("192.0.2.7/32")), prefixKey(pfx("::ffff:192.0.2.7/128"))
	if k4 == k6 {
		t.Error("an IPv4 prefix and its 4-in-6 form share a key")
	}
	for _, c := range []struct {
		name string
		k    []byte
		want string
	}{
		{"short", []byte{4, 1}, "2 bytes"},
		{"family", append([]byte{5}, make([]byte, 17)...), "unknown address family 5"},
		{"v4 not mapped", append([]byte{4}, make([]byte, 17)...), "4-in-6"},
		{"bits", func() []byte { k := prefixKey(pfx("192.0.2.0/24")); k[17] = 33; return k[:] }(), "prefix length 33 exceeds 32"},
		{"host bits", func() []byte { k := prefixKey(pfx("192.0.2.7/32")); k[17] = 24; return k[:] }(), "host bits"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeKey(c.k)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("decodeKey = %v, want an error containing %q", err, c.want)
			}
			if !strings.HasPrefix(keyString(c.k), "0x") {
				t.Errorf("keyString of a bad key = %q, want hex", keyString(c.k))
			}
		})
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(Entry{}))
	f.Add(encodeEntry(fullEntry()))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		again, err := decodeEntry(encodeEntry(e))
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if diff := cmp.Diff(e, again, cmpOpts); diff != "" {
			t.Fatalf("round trip differs:\n%s", diff)
		}
	})
}

func FuzzDecodeKey(f *testing.F) {
	for _, s := range []string{"192.0.2.0/24", "2001:db8::/32"} {
		k := prefixKey(pfx(s))
		f.Add(k[:])
	}
	f.Fuzz(func(t *testing.T, k []byte) {
		p, err := decodeKey(k)
		if err != nil {
			return
		}
		if got := prefixKey(p); !bytes.Equal(got[:], k) {
			t.Fatalf("key %x decodes to %s, which encodes to %x", k, p, got)
		}
		if p != p.Masked() || !p.IsValid() {
			t.Fatalf("decoded %s is not a valid masked prefix", p)
		}
	})
}
