package sniff

import "io"

// maxEmptyReads bounds consecutive (0, nil) reads, as bufio does.
const maxEmptyReads = 100

// Read reads from r into buf until Classify decides, buf is full, or r
// returns an error, and returns the number of bytes read (buf[:n], to be
// replayed to the handler) and the protocol.
//
// It calls r.Read once per step, each time with the rest of buf, and stops
// as soon as the bytes decide: whatever one r.Read returned is kept, but it
// never reads again once Classify has decided. It does not set deadlines;
// the caller sets one on the connection before calling Read.
//
// p != Unknown means the protocol was decided, even when err is not nil (a
// client may send its request and half-close in the same breath; on a
// net.Conn the error will recur on the handler's next read). With p ==
// Unknown, err says why nothing was decided: r's error (io.EOF, a timeout),
// ErrTooLong if buf filled while the bytes were still plausible, or nil if
// the bytes are no protocol this package knows.
func Read(r io.Reader, buf []byte) (n int, p Proto, err error) {
	empty := 0
	for n < len(buf) {
		m, rerr := r.Read(buf[n:])
		if m < 0 || m > len(buf)-n {
			return n, Unknown, errBadRead
		}
		if m > 0 {
			empty = 0
			n += m
			if p, more := Classify(buf[:n]); !more {
				return n, p, rerr
			}
		}
		if rerr != nil {
			return n, Unknown, rerr
		}
		if m == 0 {
			empty++
			if empty >= maxEmptyReads {
				return n, Unknown, io.ErrNoProgress
			}
		}
	}
	return n, Unknown, ErrTooLong
}
