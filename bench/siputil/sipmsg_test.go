package main

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/pbxgate/pbxgate/internal/siptest"
)

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
			msg, err := siptest.ReadMessage(bufio.NewReader(bytes.NewReader(req)))
			if err != nil || !bytes.Equal(msg, req) {
				t.Fatalf("ReadMessage(REGISTER) = %q, %v: want it whole", msg, err)
			}
			resp := siptest.OK(req)
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
