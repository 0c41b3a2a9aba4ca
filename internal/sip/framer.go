package sip

// DefaultMaxMessage is the Framer's limit when MaxMessage is zero: the
// largest UDP payload, and sipgo's ParseMaxMessageLength.
const DefaultMaxMessage = 65535

// Framer finds message boundaries in one direction of a SIP stream (TCP,
// TLS). Use one Framer per direction and connection. The zero value is
// ready to use.
//
// Next is incremental so that a peer trickling bytes costs linear time: when
// it returns n == 0 without error, the next call must pass the same bytes
// extended at the end (the usual read-and-append loop). After it returns
// n > 0, pass the bytes after the first n. Reset forgets the progress,
// e.g. when the caller discards the buffer.
type Framer struct {
	// MaxMessage bounds a message, head plus body. Zero means
	// DefaultMaxMessage.
	MaxMessage int

	// AcceptMissingContentLength treats a message without Content-Length
	// as having no body. RFC 3261 18.3 makes Content-Length mandatory on
	// streams, and by default (like Kamailio's tcp_accept_no_cl = no and
	// sipgo's stream parser) a message without it is an ErrContentLength
	// error: guessing would desynchronise the stream if a body follows.
	AcceptMissingContentLength bool

	scanned int   // bytes of the current head already checked
	head    int   // head length once the head is parsed and the body is awaited
	total   int   // message length once the head is parsed, 0 otherwise
	err     error // sticky: the stream cannot be resynchronised after an error
}

// Next reports the length n of the first message or keep-alive in buf, or
// n == 0 when buf holds only a prefix of one. A keep-alive (RFC 5626 3.5.1:
// CRLFCRLF ping, CRLF pong; RFC 3261 7.5: CRLF before a start line) is
// reported with keepalive true and n 4 for CRLFCRLF and 2 for a CRLF not
// followed by CRLF – a ping that arrives split may thus be reported as two
// 2-byte keep-alives. For a message, Next parses its head into m (m may be
// nil) as Parse does; the body is buf[m.HeaderLen:n].
//
// Errors are *ParseError values wrapping ErrTooLong (the head or head plus
// Content-Length exceeds MaxMessage), ErrContentLength (missing, invalid
// or conflicting Content-Length) or what Parse returns for a bad head. Bad
// bytes are refused as soon as they arrive, not only when the head is
// complete. An error is final: Next returns it again until Reset.
// Next never returns n > len(buf) and does not allocate except the error.
func (f *Framer) Next(buf []byte, m *Message) (n int, keepalive bool, err error) {
	if f.err != nil {
		return 0, false, f.err
	}
	var scratch Message
	if m == nil {
		m = &scratch
	}
	n, keepalive, err = f.next(buf, m)
	if err != nil {
		f.err = err
		return 0, false, err
	}
	return n, keepalive, nil
}

// Reset clears the Framer's progress and error; the limits are kept.
func (f *Framer) Reset() {
	f.scanned, f.head, f.total, f.err = 0, 0, 0, nil
}

func (f *Framer) next(buf []byte, m *Message) (int, bool, error) {
	if f.total > 0 {
		if len(buf) < f.total {
			return 0, false, nil
		}
		if err := parse(buf[:f.head], m); err != nil {
			return 0, false, err // the caller changed the buffer
		}
		n := f.total
		f.scanned, f.head, f.total = 0, 0, 0
		return n, false, nil
	}
	if f.scanned == 0 && len(buf) > 0 && buf[0] == '\r' {
		switch {
		case len(buf) == 1:
			return 0, false, nil
		case buf[1] != '\n':
			return 0, false, perr(ErrMalformed, 1, "CR not followed by LF")
		case len(buf) >= 4 && buf[2] == '\r' && buf[3] == '\n':
			return 4, true, nil
		case len(buf) == 3 && buf[2] == '\r':
			return 0, false, nil // maybe a ping
		}
		return 2, true, nil
	}
	limit := f.MaxMessage
	if limit <= 0 {
		limit = DefaultMaxMessage
	}
	end := min(len(buf), limit)
	headLen := 0
	for i := f.scanned; i < end && headLen == 0; i++ {
		c := buf[i]
		if c >= 0x20 && c != 0x7f || c == '\t' {
			continue
		}
		switch c {
		case '\r':
			if i+1 == len(buf) {
				f.scanned = i
				return 0, false, nil
			}
			if buf[i+1] != '\n' {
				return 0, false, perr(ErrMalformed, i, "CR not followed by LF")
			}
		case '\n':
			if i == 0 || buf[i-1] != '\r' {
				return 0, false, perr(ErrMalformed, i, "LF not preceded by CR")
			}
			if i >= 3 && buf[i-2] == '\n' {
				headLen = i + 1
			}
		default:
			return 0, false, perr(ErrMalformed, i, "control character in head")
		}
	}
	if headLen == 0 {
		if len(buf) >= limit {
			return 0, false, perr(ErrTooLong, limit, "head longer than MaxMessage")
		}
		f.scanned = len(buf)
		return 0, false, nil
	}
	if err := parse(buf[:headLen], m); err != nil {
		return 0, false, err
	}
	cl := m.ContentLength
	if cl < 0 {
		if !f.AcceptMissingContentLength {
			return 0, false, perr(ErrContentLength, headLen, "no Content-Length on a stream (RFC 3261 18.3)")
		}
		cl = 0
	}
	if cl > limit-headLen {
		return 0, false, perr(ErrTooLong, headLen, "head plus Content-Length longer than MaxMessage")
	}
	total := headLen + cl
	if len(buf) < total {
		f.scanned, f.head, f.total = headLen, headLen, total
		return 0, false, nil
	}
	f.scanned = 0
	return total, false, nil
}
