package sniff

const (
	recordHeaderLen     = 5
	recordTypeHandshake = 22
	// maxPlaintext is the largest TLSPlaintext fragment (RFC 8446 5.1).
	maxPlaintext = 1 << 14
	// maxHello bounds the ClientHello length, as crypto/tls does
	// (maxHandshake).
	maxHello        = 1 << 16
	typeClientHello = 1
	extServerName   = 0
	nameTypeHost    = 0
	// noLimit is the limit for fields not inside a length-prefixed structure.
	noLimit = 1 << 30
)

// ServerName returns the SNI host_name from the TLS ClientHello at the start
// of b, which holds TLS records exactly as the client sent them.
//
// The name aliases b and is returned as sent: the caller validates and
// normalises it (case, trailing dot, IDNA). With Encrypted Client Hello it
// is the outer, public name.
//
// Results:
//   - ok=true: name is the first host_name of the server_name extension. It
//     is returned as soon as it has been read, so the rest of the hello may
//     still be in flight and is not checked.
//   - needMore=true: b is a valid but incomplete prefix; read more and call
//     again with all the bytes.
//   - err != nil: b is not a valid ClientHello; err is a *DecodeError saying
//     where. errors.Is(err, ErrMalformed), or ErrNameSplit for a valid name
//     that straddles two records.
//   - all false and nil: the complete hello has no server_name extension
//     (or one without a host_name), as clients send for IP addresses.
//
// A ClientHello fragmented over several handshake records is reassembled as
// it is read (without copying); only a host_name that itself straddles a
// record boundary is reported as ErrNameSplit. Record and handshake lengths
// are bounded (16 KiB per record, 64 KiB per hello), every length is checked
// against its enclosing structure before use, and nothing beyond the hello
// is read.
func ServerName(b []byte) (name []byte, ok bool, needMore bool, err error) {
	if len(b) == 0 {
		return nil, false, true, nil
	}
	r := helloReader{b: b}

	if t := r.u8("handshake type", noLimit); r.ok() && t != typeClientHello {
		r.fail("handshake type", r.p-1, "not a ClientHello")
	}
	n := r.u24("handshake length", noLimit)
	if r.ok() && n > maxHello {
		r.fail("handshake length", r.p-3, "ClientHello too long")
	}
	end := r.pos + n

	r.skip("legacy_version", 2, end)
	r.skip("random", 32, end)
	if l := r.u8("session_id", end); r.ok() && l > 32 {
		r.fail("session_id", r.p-1, "longer than 32 bytes")
	} else {
		r.skip("session_id", l, end)
	}
	if l := r.u16("cipher_suites", end); r.ok() && (l < 2 || l%2 != 0) {
		r.fail("cipher_suites", r.p-2, "length not even and positive")
	} else {
		r.skip("cipher_suites", l, end)
	}
	if l := r.u8("compression_methods", end); r.ok() && l < 1 {
		r.fail("compression_methods", r.p-1, "empty")
	} else {
		r.skip("compression_methods", l, end)
	}
	if !r.ok() {
		return r.result()
	}
	if r.pos == end {
		return nil, false, false, nil // no extensions at all
	}
	extLen := r.u16("extensions", end)
	if r.ok() && r.pos+extLen != end {
		r.fail("extensions", r.p-2, "length does not fill the ClientHello")
	}
	// Each pass consumes at least 4 bytes of a block of at most 64 KiB.
	for r.ok() && r.pos < end {
		typ := r.u16("extension type", end)
		l := r.u16("extension", end)
		if !r.ok() {
			break
		}
		if typ != extServerName {
			r.skip("extension", l, end)
			continue
		}
		extEnd := r.pos + l
		listLen := r.u16("server_name", extEnd)
		if r.ok() && (listLen == 0 || r.pos+listLen != extEnd) {
			r.fail("server_name", r.p-2, "list length invalid")
		}
		// Each pass consumes at least 4 bytes.
		for r.ok() && r.pos < extEnd {
			nameType := r.u8("server_name type", extEnd)
			nameLen := r.u16("host_name", extEnd)
			if r.ok() && nameLen == 0 {
				r.fail("host_name", r.p-2, "empty")
			}
			if nameType != nameTypeHost {
				r.skip("server_name entry", nameLen, extEnd)
				continue
			}
			name := r.bytes("host_name", nameLen, extEnd)
			if !r.ok() {
				break
			}
			return name, true, false, nil
		}
	}
	if !r.ok() {
		return r.result()
	}
	return nil, false, false, nil
}

// helloReader reads the handshake byte stream carried by the TLS records in
// b, stepping over record headers. The first failure (needing more bytes or
// a decode error) sticks: later reads return zero and consume nothing.
type helloReader struct {
	b    []byte
	p    int // offset in b of the next handshake byte
	end  int // offset in b where the current record ends; may exceed len(b)
	pos  int // handshake bytes consumed so far, across records
	more bool
	err  *DecodeError
}

func (r *helloReader) ok() bool { return !r.more && r.err == nil }

func (r *helloReader) fail(place string, offset int, msg string) {
	if r.ok() {
		r.err = &DecodeError{Place: place, Offset: offset, Err: ErrMalformed, Msg: msg}
	}
}

func (r *helloReader) result() ([]byte, bool, bool, error) {
	if r.err != nil {
		return nil, false, false, r.err
	}
	return nil, false, true, nil
}

// nextRecord steps over the record header at r.end.
func (r *helloReader) nextRecord() bool {
	h := r.end
	if len(r.b)-h < recordHeaderLen {
		// Check what is there already, so garbage fails early.
		if len(r.b) > h && r.b[h] != recordTypeHandshake {
			r.fail("record type", h, "not a handshake record")
		} else if len(r.b) > h+1 && r.b[h+1] != 0x03 {
			r.fail("record version", h, "not TLS")
		} else if len(r.b) > h+2 && r.b[h+2] > 0x04 {
			r.fail("record version", h, "not TLS")
		} else {
			r.more = true
		}
		return false
	}
	switch l := int(r.b[h+3])<<8 | int(r.b[h+4]); {
	case r.b[h] != recordTypeHandshake:
		r.fail("record type", h, "not a handshake record")
	case r.b[h+1] != 0x03 || r.b[h+2] > 0x04:
		r.fail("record version", h, "not TLS")
	case l == 0:
		r.fail("record length", h, "empty handshake record")
	case l > maxPlaintext:
		r.fail("record length", h, "longer than 16 KiB")
	default:
		r.p = h + recordHeaderLen
		r.end = r.p + l
		return true
	}
	return false
}

// avail returns the number of handshake bytes at r.p that b holds in the
// current record, moving to the next record if the current one is used up.
func (r *helloReader) avail() int {
	if !r.ok() {
		return 0
	}
	if r.p == r.end && !r.nextRecord() {
		return 0
	}
	n := min(r.end, len(r.b)) - r.p
	if n == 0 {
		r.more = true
	}
	return n
}

// byte1 reads one handshake byte.
func (r *helloReader) byte1() byte {
	if r.avail() == 0 {
		return 0
	}
	c := r.b[r.p]
	r.p++
	r.pos++
	return c
}

// room fails unless k more bytes fit before the logical offset limit.
func (r *helloReader) room(place string, k, limit int) bool {
	if !r.ok() {
		return false
	}
	if r.pos+k > limit {
		r.fail(place, r.p, "overruns its enclosing structure")
		return false
	}
	return true
}

// u8, u16 and u24 read big-endian integers that must fit before limit.
func (r *helloReader) u8(place string, limit int) int {
	if !r.room(place, 1, limit) {
		return 0
	}
	return int(r.byte1())
}

func (r *helloReader) u24(place string, limit int) int {
	if !r.room(place, 3, limit) {
		return 0
	}
	return int(r.byte1())<<16 | int(r.byte1())<<8 | int(r.byte1())
}

func (r *helloReader) u16(place string, limit int) int {
	if !r.room(place, 2, limit) {
		return 0
	}
	return int(r.byte1())<<8 | int(r.byte1())
}

// skip consumes n handshake bytes, which must fit before limit.
func (r *helloReader) skip(place string, n, limit int) {
	if !r.room(place, n, limit) {
		return
	}
	// Each pass consumes at least one byte or stops.
	for n > 0 {
		a := r.avail()
		if a == 0 {
			return
		}
		k := min(a, n)
		r.p += k
		r.pos += k
		n -= k
	}
}

// bytes returns the next n handshake bytes, which must fit before limit, as
// a slice of b. They must lie in one record.
func (r *helloReader) bytes(place string, n, limit int) []byte {
	if !r.room(place, n, limit) || r.avail() == 0 {
		return nil
	}
	if r.end-r.p < n {
		r.err = &DecodeError{Place: place, Offset: r.p, Err: ErrNameSplit, Msg: "name continues in the next record"}
		return nil
	}
	if len(r.b)-r.p < n {
		r.more = true
		return nil
	}
	s := r.b[r.p : r.p+n : r.p+n]
	r.p += n
	r.pos += n
	return s
}
