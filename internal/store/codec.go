package store

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"
)

// Keys and values as stored by Bolt. The functions here are pure: bytes in,
// values out, and every decode error says where it happened.
//
// A key is 18 bytes: a family marker (4 or 6), the 16-byte address (IPv4 in
// its 4-in-6 mapped form), then the prefix length. Byte order therefore sorts
// IPv4 before IPv6, then by address, then by prefix length. History keys use
// the same layout with the full prefix length of the address.
//
// An entry value is: version byte (1), origin byte, zig-zag varints Level and
// Count, a byte whose low four bits say which of Created, FirstSeen, LastSeen
// and Expires are set, each set time as a zig-zag varint of Unix seconds and
// a uvarint of nanoseconds, then Reason and Note as uvarint-length strings,
// then a uvarint evidence count and that many strings. A history value is:
// version byte (1), uvarint Bans, the presence byte and Last as above.

const (
	keyLen = 18

	familyV4 = 4
	familyV6 = 6

	entryVersion   = 1
	historyVersion = 1

	// maxValueLen bounds an encoded entry and a meta value, so one record
	// can never make a read allocate much.
	maxValueLen = 64 << 10
	// maxMetaKeyLen bounds a meta key.
	maxMetaKeyLen = 256
)

// prefixKey returns the key of a masked, valid prefix.
func prefixKey(p netip.Prefix) [keyLen]byte {
	var k [keyLen]byte
	a := p.Addr()
	if a.Is4() {
		k[0] = familyV4
	} else {
		k[0] = familyV6
	}
	a16 := a.As16()
	copy(k[1:17], a16[:])
	k[17] = byte(p.Bits())
	return k
}

// addrKey returns the key under which the history of a is kept.
func addrKey(a netip.Addr) [keyLen]byte {
	return prefixKey(netip.PrefixFrom(a, a.BitLen()))
}

// decodeKey parses a key made by prefixKey. It refuses keys that prefixKey
// cannot produce, so that every key has exactly one meaning.
func decodeKey(k []byte) (netip.Prefix, error) {
	if len(k) != keyLen {
		return netip.Prefix{}, fmt.Errorf("key is %d bytes, want %d", len(k), keyLen)
	}
	a := netip.AddrFrom16([16]byte(k[1:17]))
	bits := int(k[17])
	switch k[0] {
	case familyV4:
		if !a.Is4In6() {
			return netip.Prefix{}, fmt.Errorf("key byte 1: IPv4 key without the 4-in-6 form")
		}
		a = a.Unmap()
	case familyV6:
	default:
		return netip.Prefix{}, fmt.Errorf("key byte 0: unknown address family %d", k[0])
	}
	if bits > a.BitLen() {
		return netip.Prefix{}, fmt.Errorf("key byte 17: prefix length %d exceeds %d", bits, a.BitLen())
	}
	p := netip.PrefixFrom(a, bits)
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("key: %s has host bits set", p)
	}
	return p, nil
}

// keyString names a key in an error: the prefix when it parses, hex if not.
func keyString(k []byte) string {
	if p, err := decodeKey(k); err == nil {
		return p.String()
	}
	if len(k) > 64 {
		return "0x" + hex.EncodeToString(k[:64]) + "..."
	}
	return "0x" + hex.EncodeToString(k)
}

// encodeEntry encodes the value part of e (List and Prefix live in the
// bucket name and the key).
func encodeEntry(e Entry) []byte {
	n := 2 + 2*binary.MaxVarintLen64 + 1 + 4*(2*binary.MaxVarintLen64) +
		3*binary.MaxVarintLen64 + len(e.Reason) + len(e.Note)
	for _, s := range e.Evidence {
		n += binary.MaxVarintLen64 + len(s)
	}
	b := make([]byte, 0, n)
	b = append(b, entryVersion, byte(e.Origin))
	b = binary.AppendVarint(b, int64(e.Level))
	b = binary.AppendVarint(b, int64(e.Count))
	times := [...]time.Time{e.Created, e.FirstSeen, e.LastSeen, e.Expires}
	var mask byte
	for i, t := range times {
		if !t.IsZero() {
			mask |= 1 << i
		}
	}
	b = append(b, mask)
	for _, t := range times {
		if !t.IsZero() {
			b = appendTime(b, t)
		}
	}
	b = appendString(b, e.Reason)
	b = appendString(b, e.Note)
	b = binary.AppendUvarint(b, uint64(len(e.Evidence)))
	for _, s := range e.Evidence {
		b = appendString(b, s)
	}
	return b
}

// decodeEntry parses a value made by encodeEntry. List and Prefix are left
// zero. Times come back in UTC; an empty Evidence comes back nil.
func decodeEntry(b []byte) (Entry, error) {
	d := decoder{b: b, what: "entry"}
	var e Entry
	if v := d.byte("version"); d.err == nil && v != entryVersion {
		return Entry{}, fmt.Errorf("entry byte 0: unsupported encoding version %d (this pbxgate reads %d)", v, entryVersion)
	}
	e.Origin = Origin(d.byte("origin"))
	e.Level = d.int("level")
	e.Count = d.int("count")
	mask := d.byte("time mask")
	if d.err == nil && mask&^0x0f != 0 {
		return Entry{}, fmt.Errorf("entry byte %d: unknown time flags %#x", d.off-1, mask)
	}
	for i, t := range [...]*time.Time{&e.Created, &e.FirstSeen, &e.LastSeen, &e.Expires} {
		if mask&(1<<i) != 0 {
			*t = d.time()
		}
	}
	e.Reason = d.string("reason")
	e.Note = d.string("note")
	n := d.uvarint("evidence count")
	if d.err == nil && n > MaxEvidence {
		return Entry{}, fmt.Errorf("entry byte %d: %d evidence lines exceed %d", d.off, n, MaxEvidence)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		e.Evidence = append(e.Evidence, d.string("evidence"))
	}
	if err := d.finish(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// encodeHistory encodes h.
func encodeHistory(h History) []byte {
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64)
	b = append(b, historyVersion)
	b = binary.AppendUvarint(b, uint64(h.Bans))
	if h.Last.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	return appendTime(b, h.Last)
}

// decodeHistory parses a value made by encodeHistory.
func decodeHistory(b []byte) (History, error) {
	d := decoder{b: b, what: "history"}
	if v := d.byte("version"); d.err == nil && v != historyVersion {
		return History{}, fmt.Errorf("history byte 0: unsupported encoding version %d (this pbxgate reads %d)", v, historyVersion)
	}
	var h History
	bans := d.uvarint("bans")
	if d.err == nil && bans > 1<<31 {
		return History{}, fmt.Errorf("history byte 1: ban count %d out of range", bans)
	}
	h.Bans = int(bans)
	switch mask := d.byte("time mask"); {
	case d.err != nil, mask == 0:
	case mask == 1:
		h.Last = d.time()
	default:
		return History{}, fmt.Errorf("history byte %d: unknown time flags %#x", d.off-1, mask)
	}
	if err := d.finish(); err != nil {
		return History{}, err
	}
	return h, nil
}

// normTime returns t as Bolt returns it after a round trip: zero stays
// zero, anything else is the same instant in UTC without a monotonic reading.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.Unix(t.Unix(), int64(t.Nanosecond())).UTC()
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads fields in order and keeps the first error, which names the
// field and its byte offset.
type decoder struct {
	b    []byte
	off  int
	what string
	err  error
}

func (d *decoder) fail(field, msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s byte %d: %s: %s", d.what, d.off, field, msg)
	}
}

func (d *decoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail(field, "truncated")
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail(field, "bad or truncated varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail(field, "bad or truncated varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) int(field string) int {
	v := d.varint(field)
	if int64(int(v)) != v {
		d.fail(field, "out of range")
		return 0
	}
	return int(v)
}

func (d *decoder) time() time.Time {
	sec := d.varint("time seconds")
	nsec := d.uvarint("time nanoseconds")
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		d.fail("time nanoseconds", fmt.Sprintf("%d out of range", nsec))
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec)).UTC()
	if t.IsZero() {
		// The zero time is encoded by a clear flag, never by value.
		d.fail("time", "zero time stored as a value")
		return time.Time{}
	}
	return t
}

func (d *decoder) string(field string) string {
	n := d.uvarint(field + " length")
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail(field, fmt.Sprintf("length %d exceeds the %d bytes left", n, len(d.b)-d.off))
		return ""
	}
	s := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return s
}

// finish returns the first error, or an error if bytes are left over.
func (d *decoder) finish() error {
	if d.err != nil {
		return d.err
	}
	if d.off != len(d.b) {
		return fmt.Errorf("%s byte %d: %d trailing bytes", d.what, d.off, len(d.b)-d.off)
	}
	return nil
}
