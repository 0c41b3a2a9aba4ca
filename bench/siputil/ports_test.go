package main

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestPorts(t *testing.T) {
	var out bytes.Buffer
	if err := ports(&out, "5"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range strings.Fields(out.String()) {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 || seen[p] {
			t.Fatalf("ports printed %q: want 5 distinct port numbers", out.String())
		}
		seen[p] = true
		// Free for both protocols again once ports has returned.
		ln, err := net.Listen("tcp", "127.0.0.1:"+p)
		if err != nil {
			t.Fatalf("TCP port %s: %v", p, err)
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+p)
		if err != nil {
			t.Fatalf("UDP port %s: %v", p, err)
		}
		ln.Close()
		pc.Close()
	}
	if len(seen) != 5 {
		t.Fatalf("ports printed %q: want 5 ports", out.String())
	}
	for _, bad := range []string{"0", "101", "x", "-1"} {
		if err := ports(&out, bad); err == nil {
			t.Errorf("ports(%q) succeeded", bad)
		}
	}
}
