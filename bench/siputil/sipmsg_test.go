package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func TestAnswer(t *testing.T) {
	const invite = "INVITE sip:34910000000@bench.example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1\r\n" +
		"From: <sip:bench@bench.example.com>;tag=a\r\n" +
		"To: <sip:34910000000@bench.example.com>\r\n" +
		"Call-ID: c1@127.0.0.1\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:bench@127.0.0.1:5099>\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Content-Length: 4\r\n\r\nv=0\n"
	tests := []struct {
		name string
		in   string
		want []string // lines the answer must contain, in order; nil: no answer
	}{
		{"invite gets a To tag", invite, []string{
			"SIP/2.0 200 OK", "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1", "From: <sip:bench@bench.example.com>;tag=a",
			"To: <sip:34910000000@bench.example.com>;tag=bench-uas", "Call-ID: c1@127.0.0.1", "CSeq: 1 INVITE",
			"Contact: <sip:bench@127.0.0.1:5099>", "Content-Length: 0",
		}},
		{"compact names, To tag kept", "BYE sip:x@y SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK-2\r\nv: SIP/2.0/UDP p;branch=z9hG4bK-3\r\n" +
			"f: <sip:a@y>;tag=1\r\nt: <sip:x@y>;TAG=2\r\ni: c2\r\nCSeq: 2 BYE\r\n\r\n", []string{
			"SIP/2.0 200 OK", "v: SIP/2.0/UDP h;branch=z9hG4bK-2", "v: SIP/2.0/UDP p;branch=z9hG4bK-3", "f: <sip:a@y>;tag=1",
			"t: <sip:x@y>;TAG=2\r\n", "i: c2", "CSeq: 2 BYE",
		}},
		{"ACK is never answered", strings.Replace(invite, "INVITE sip", "ACK sip", 1), nil},
		{"a response is not answered", "SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n", nil},
		{"no Call-ID", strings.Replace(invite, "Call-ID: c1@127.0.0.1\r\n", "", 1), nil},
		{"not SIP", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", nil},
		{"empty", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := answer([]byte(tc.in))
			if tc.want == nil {
				if got != nil {
					t.Fatalf("answer = %q, want none", got)
				}
				return
			}
			if !bytes.HasSuffix(got, []byte("\r\n\r\n")) {
				t.Errorf("answer does not end with an empty line: %q", got)
			}
			rest := string(got)
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("answer %q lacks %q (in order)", got, w)
				}
				rest = rest[i+len(w):]
			}
			if strings.Count(strings.ToLower(string(got)), ";tag=") != 2 {
				t.Errorf("answer %q: want exactly the From and the To tag", got)
			}
		})
	}
}

// TestRegisterAnswered: the REGISTER the memory step sends is answered 200
// by the stub PBX, with its transaction identifiers.
func TestRegisterAnswered(t *testing.T) {
	for _, transport := range []string{"UDP", "TLS"} {
		t.Run(transport, func(t *testing.T) {
			local := netip.MustParseAddrPort("127.16.0.9:20003")
			req := register(transport, local, "u42", 42)
			for _, want := range []string{"REGISTER sip:bench.example.com SIP/2.0\r\n", "Via: SIP/2.0/" + transport + " 127.16.0.9:20003;",
				"From: <sip:u42@bench.example.com>;tag=", "transport=" + strings.ToLower(transport) + ">"} {
				if !bytes.Contains(req, []byte(want)) {
					t.Errorf("REGISTER %q lacks %q", req, want)
				}
			}
			msg, err := readMessage(bufio.NewReader(bytes.NewReader(req)))
			if err != nil || !bytes.Equal(msg, req) {
				t.Fatalf("readMessage(REGISTER) = %q, %v: want it whole", msg, err)
			}
			resp := answer(req)
			if code := status(resp); code != 200 {
				t.Fatalf("status(answer) = %d, want 200: %q", code, resp)
			}
			if !bytes.Contains(resp, []byte("Call-ID: bench-42-20003@127.16.0.9\r\n")) {
				t.Errorf("answer %q lacks the Call-ID", resp)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	for in, want := range map[string]int{
		"SIP/2.0 200 OK\r\n": 200, "SIP/2.0 403 Forbidden\r\n": 403, "SIP/2.0 1": 0, "SIP/2.0 abc": 0,
		"REGISTER sip:x SIP/2.0\r\n": 0, "": 0,
	} {
		if got := status([]byte(in)); got != want {
			t.Errorf("status(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestReadMessage(t *testing.T) {
	a := "OPTIONS sip:x SIP/2.0\r\nl: 5\r\n\r\nhello"
	b := "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
	long := "OPTIONS sip:x SIP/2.0\r\nX-Long: " + strings.Repeat("a", 10000) + "\r\n\r\n"
	t.Run("keep-alives, body, back to back, long header", func(t *testing.T) {
		r := bufio.NewReaderSize(strings.NewReader("\r\n\r\n"+a+b+"\r\n"+long), 16)
		for i, want := range []string{a, b, long} {
			got, err := readMessage(r)
			if err != nil || string(got) != want {
				t.Fatalf("message %d = %q, %v; want %q", i, got, err, want)
			}
		}
		if _, err := readMessage(r); !errors.Is(err, io.EOF) {
			t.Errorf("after the last message: %v, want EOF", err)
		}
	})
	for _, tc := range []struct {
		name, in string
		want     error // nil: any error
	}{
		{"truncated head", "OPTIONS sip:x SIP/2.0\r\nVia: x", io.ErrUnexpectedEOF},
		{"truncated body", "OPTIONS sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nabc", io.ErrUnexpectedEOF},
		{"bad length", "OPTIONS sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n", nil},
		{"head too large", "OPTIONS sip:x SIP/2.0\r\nX: " + strings.Repeat("a", maxMessage) + "\r\n\r\n", errTooLarge},
		{"body too large", "OPTIONS sip:x SIP/2.0\r\nContent-Length: 70000\r\n\r\n", errTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := readMessage(bufio.NewReader(strings.NewReader(tc.in)))
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("readMessage = %q, %v; want error %v", msg, err, tc.want)
			}
		})
	}
}
