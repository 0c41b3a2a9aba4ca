package sip

import (
	"errors"
	"strings"
	"testing"
)

// frame is one result of Framer.Next: a message's bytes or a keep-alive.
type frame struct {
	keepalive bool
	data      string
}

// frameAll feeds stream to a Framer the way a connection reader does:
// chunks appended to a buffer, complete frames cut off the front. chunk
// returns the size of the next read (at least 1). It returns the frames,
// the error and the bytes left undecided.
func frameAll(t testing.TB, f *Framer, stream []byte, chunk func() int) (frames []frame, rest []byte, err error) {
	var buf []byte
	for fed := 0; ; {
		if fed < len(stream) {
			n := min(chunk(), len(stream)-fed)
			buf = append(buf, stream[fed:fed+n]...)
			fed += n
		}
		// Drain complete frames; each iteration consumes bytes or stops.
		for len(buf) > 0 {
			var m Message
			n, ka, err := f.Next(buf, &m)
			if err != nil {
				return frames, buf, err
			}
			if n > len(buf) || n < 0 {
				t.Fatalf("Next returned n=%d for %d bytes", n, len(buf))
			}
			if n == 0 {
				break
			}
			if !ka {
				if m.HeaderLen == 0 || m.HeaderLen > n {
					t.Fatalf("message of %d bytes has HeaderLen %d", n, m.HeaderLen)
				}
				var again Message
				if perr := Parse(buf[:n], &again); perr != nil {
					t.Fatalf("framed message does not Parse: %v", perr)
				}
			}
			frames = append(frames, frame{ka, string(buf[:n])})
			buf = buf[n:]
		}
		if fed == len(stream) {
			return frames, buf, nil
		}
	}
}

// mergeKeepalives joins adjacent keep-alive frames.
func mergeKeepalives(in []frame) []frame {
	var out []frame
	for _, f := range in {
		if n := len(out); f.keepalive && n > 0 && out[n-1].keepalive {
			out[n-1].data += f.data
			continue
		}
		out = append(out, f)
	}
	return out
}

func whole(stream []byte) func() int { return func() int { return len(stream) } }
func bytewise() int                  { return 1 }

const (
	regHead = "REGISTER sip:pbx.example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n" +
		"From: <sip:1001@pbx.example.com>;tag=1\r\n" +
		"To: <sip:1001@pbx.example.com>\r\n" +
		"Call-ID: c1@192.0.2.1\r\n" +
		"CSeq: 1 REGISTER\r\n"
	reg     = regHead + "Content-Length: 0\r\n\r\n"
	msgBody = "MESSAGE sip:1002@pbx.example.com SIP/2.0\r\n" +
		"v: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK2\r\n" +
		"f: <sip:1001@pbx.example.com>;tag=2\r\n" +
		"t: <sip:1002@pbx.example.com>\r\n" +
		"i: c2@192.0.2.1\r\n" +
		"CSeq: 2 MESSAGE\r\n" +
		"l: 17\r\n\r\n" +
		"hello\r\n\r\nINVITE x"
)

func TestFramer(t *testing.T) {
	tests := []struct {
		name   string
		framer Framer
		stream string
		want   []frame
		rest   string // undecided bytes at the end
		err    error
	}{
		{name: "one message", stream: reg, want: []frame{{false, reg}}},
		{name: "pipelined with body that looks like a head", stream: reg + msgBody + reg,
			want: []frame{{false, reg}, {false, msgBody}, {false, reg}}},
		{name: "keep-alives", stream: "\r\n\r\n" + reg + "\r\n" + reg + "\r\n\r\n\r\n",
			want: []frame{{true, "\r\n\r\n"}, {false, reg}, {true, "\r\n"}, {false, reg}, {true, "\r\n\r\n"}, {true, "\r\n"}}},
		{name: "partial head", stream: reg + regHead, want: []frame{{false, reg}}, rest: regHead},
		{name: "partial body", stream: msgBody[:len(msgBody)-3], rest: msgBody[:len(msgBody)-3]},
		{name: "lone CR waits", stream: "\r", rest: "\r"},
		{name: "CR garbage", stream: "\rX", err: ErrMalformed},
		{name: "bare LF keep-alive", stream: "\n", err: ErrMalformed},
		{name: "missing Content-Length", stream: regHead + "\r\n", err: ErrContentLength},
		{name: "missing Content-Length accepted", framer: Framer{AcceptMissingContentLength: true},
			stream: regHead + "\r\n" + reg, want: []frame{{false, regHead + "\r\n"}, {false, reg}}},
		{name: "conflicting Content-Length", stream: regHead + "l: 1\r\nContent-Length: 2\r\n\r\nab", err: ErrContentLength},
		{name: "huge Content-Length", stream: regHead + "l: 2147483647\r\n\r\n", err: ErrTooLong},
		{name: "Content-Length beyond MaxMessage", framer: Framer{MaxMessage: len(regHead+"l: 5\r\n\r\n") + 4},
			stream: regHead + "l: 5\r\n\r\nabcde", err: ErrTooLong},
		{name: "exactly MaxMessage", framer: Framer{MaxMessage: len(reg)}, stream: reg + reg,
			want: []frame{{false, reg}, {false, reg}}},
		{name: "head beyond MaxMessage", framer: Framer{MaxMessage: 100}, stream: reg, err: ErrTooLong},
		{name: "folded", stream: strings.Replace(reg, "From:", "From:\r\n", 1), err: ErrFolded},
		{name: "garbage refused before a head completes", stream: "\x16\x03\x01\x02\x00", err: ErrMalformed},
		{name: "bare LF head end", stream: strings.ReplaceAll(reg, "\r\n", "\n"), err: ErrMalformed},
		{name: "error after good message", stream: reg + "GET / HTTP/1.1\r\n\r\n", want: []frame{{false, reg}}, err: ErrMalformed},
	}
	for _, tt := range tests {
		for _, feed := range []struct {
			name  string
			chunk func() int
		}{{"whole", whole([]byte(tt.stream))}, {"bytewise", bytewise}} {
			t.Run(tt.name+"/"+feed.name, func(t *testing.T) {
				f := tt.framer
				frames, rest, err := frameAll(t, &f, []byte(tt.stream), feed.chunk)
				if tt.err == nil && err != nil || tt.err != nil && !errors.Is(err, tt.err) {
					t.Fatalf("error = %v, want %v", err, tt.err)
				}
				want := tt.want
				if feed.name != "whole" {
					// A ping split across reads may come out as two pongs.
					frames, want = mergeKeepalives(frames), mergeKeepalives(want)
				}
				if len(frames) != len(want) {
					t.Fatalf("got %d frames %+v, want %d", len(frames), frames, len(want))
				}
				for i := range frames {
					if frames[i] != want[i] {
						t.Errorf("frame %d = %+v, want %+v", i, frames[i], want[i])
					}
				}
				if tt.err == nil && string(rest) != tt.rest {
					t.Errorf("undecided bytes %q, want %q", rest, tt.rest)
				}
			})
		}
	}
}

func TestFramerStickyErrorAndReset(t *testing.T) {
	var f Framer
	bad := []byte("\x00" + reg)
	if _, _, err := f.Next(bad, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Next(garbage) = %v", err)
	}
	if _, _, err := f.Next([]byte(reg), nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("after an error Next = %v, want the same error", err)
	}
	f.Reset()
	if n, ka, err := f.Next([]byte(reg), nil); n != len(reg) || ka || err != nil {
		t.Fatalf("after Reset Next = %d, %v, %v", n, ka, err)
	}
}

// TestFramerTrickleIsLinear checks that a head arriving byte by byte is
// scanned once: the work per call is bounded by the new bytes, observed as
// the Framer's progress tracking the buffer end.
func TestFramerTrickleIsLinear(t *testing.T) {
	var f Framer
	head := []byte(regHead + "X-Pad: " + strings.Repeat("a", 4000) + "\r\n")
	for i := 1; i <= len(head); i++ {
		n, _, err := f.Next(head[:i], nil)
		if n != 0 || err != nil {
			t.Fatalf("Next(%d bytes) = %d, %v", i, n, err)
		}
		want := i
		if head[i-1] == '\r' {
			want = i - 1 // a CR at the end is looked at again with its LF
		}
		if f.scanned != want {
			t.Fatalf("after %d bytes scanned = %d, want %d", i, f.scanned, want)
		}
	}
}
