package siptest

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pbxgate/pbxgate/internal/sip"
)

const head = "OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n" +
	"From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"

// TestReadMessage: keep-alives are skipped, bodies read by Content-Length,
// messages back to back come one by one; truncated and oversized input
// is an error.
func TestReadMessage(t *testing.T) {
	a := head + "l: 5\r\n\r\nhello"
	b := OK([]byte(head + "Content-Length: 0\r\n\r\n"))
	long := head + "X-Long: " + strings.Repeat("a", 10000) + "\r\nContent-Length: 0\r\n\r\n"
	r := bufio.NewReaderSize(strings.NewReader("\r\n\r\n"+a+string(b)+"\r\n"+long), 16)
	for i, want := range []string{a, string(b), long} {
		got, err := ReadMessage(r)
		if err != nil || string(got) != want {
			t.Fatalf("message %d = %q, %v; want %q", i, got, err, want)
		}
	}
	if _, err := ReadMessage(r); !errors.Is(err, io.EOF) {
		t.Errorf("after the last message: %v, want EOF", err)
	}
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"truncated head", head, io.ErrUnexpectedEOF},
		{"truncated body", head + "Content-Length: 10\r\n\r\nabc", io.ErrUnexpectedEOF},
		{"bad length", head + "Content-Length: -1\r\n\r\n", sip.ErrContentLength},
		{"too large", head + "Content-Length: 70000\r\n\r\n", sip.ErrTooLong},
	} {
		if msg, err := ReadMessage(bufio.NewReader(strings.NewReader(tc.in))); !errors.Is(err, tc.want) {
			t.Errorf("%s: ReadMessage = %q, %v; want %v", tc.name, msg, err, tc.want)
		}
	}
}
