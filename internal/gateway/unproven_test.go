package gateway

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/pion/stun/v4"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
	"github.com/pbxgate/pbxgate/internal/turnauth"
)

// dialFrom connects to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// statusLine writes req to c and returns the answer's first line, "" when
// the connection closes unanswered.
func statusLine(c net.Conn, req string) string {
	if _, err := io.WriteString(c, req); err != nil {
		return ""
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// slotsInUse is what pbxgate_unproven_connections_in_first_exchange shows.
func slotsInUse(g *Gateway) int { return len(g.sec.unproven.Load().ch) }

func waitSlotsInUse(t *testing.T, g *Gateway, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for slotsInUse(g) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d unproven slots in use, want %d", what, slotsInUse(g), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUnprovenGate: with fraud.unproven_concurrency 1, a source nobody
// logged in from waits while another unproven connection is in its first
// exchange (and is closed unanswered after timeouts.first_bytes), while
// whitelisted and logged-in sources pass at once; a connection gives its
// slot back as soon as its request is with the backend, also when it stays
// open (lean path and net/http's).
func TestUnprovenGate(t *testing.T) {
	setHold(t, 10*time.Second) // the holder below keeps its slot
	dir := t.TempDir()
	a := origin(t, "A")
	conf := func(n int) string {
		return webConfig(dir, "127.0.0.1:0", a, fmt.Sprintf(
			"timeouts:\n  first_bytes: 1s\nfraud:\n  unproven_concurrency: %d\n  whitelist: [127.0.0.5]\n", n))
	}
	g := start(t, parse(t, conf(1)), &event.Recorder{})
	addr := g.Addr("web").String()
	get := "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"
	getClose := "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
	request := func(src string) string { return statusLine(dialFrom(t, src, addr), getClose) }

	// Keep-alive connections of unproven sources, left open once answered,
	// hold no slot: the lean path's and net/http's (HTTP/1.0).
	if got := statusLine(dialFrom(t, "127.0.0.3", addr), get); got != "HTTP/1.1 200 OK" {
		t.Fatalf("keep-alive request: %q", got)
	}
	waitSlotsInUse(t, g, 0, "after a keep-alive answer")
	if got := statusLine(dialFrom(t, "127.0.0.4", addr), "GET / HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n"); got != "HTTP/1.0 200 OK" {
		t.Fatalf("HTTP/1.0 keep-alive request: %q", got)
	}
	waitSlotsInUse(t, g, 0, "after an HTTP/1.0 keep-alive answer")

	// A client that has sent nothing holds no slot.
	silent := dialFrom(t, "127.0.0.10", addr)
	time.Sleep(50 * time.Millisecond)
	if got := request("127.0.0.3"); got != "HTTP/1.1 200 OK" {
		t.Fatalf("request beside a silent connection: %q", got)
	}
	silent.Close()

	// A login proves its source.
	auth := base64.StdEncoding.EncodeToString([]byte("alice:secret"))
	if got := statusLine(dialFrom(t, "127.0.0.8", addr), "GET / HTTP/1.1\r\nHost: app.test\r\nAuthorization: Basic "+auth+"\r\nConnection: close\r\n\r\n"); got != "HTTP/1.1 200 OK" {
		t.Fatalf("login: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for g.sec.engine.Load().Standing(mustAddr("127.0.0.8")) != fraud.Proven {
		if time.Now().After(deadline) {
			t.Fatal("a login did not prove its source")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A client that has not finished its request holds the only slot.
	holder := dialFrom(t, "127.0.0.6", addr)
	if _, err := io.WriteString(holder, "GET / HTTP/1.1\r\nHost: app.test\r\n"); err != nil {
		t.Fatal(err)
	}
	waitSlotsInUse(t, g, 1, "a request in progress")
	// Another unproven source waits first_bytes for it, then is closed
	// unanswered.
	began := time.Now()
	if got := request("127.0.0.7"); got != "" {
		t.Fatalf("unproven source while the slot is taken: %q, want no answer", got)
	}
	if waited := time.Since(began); waited < 900*time.Millisecond {
		t.Errorf("closed after %v, want about timeouts.first_bytes (1s)", waited)
	}
	if d := g.sec.unprovenDropped.Load(); d != 1 {
		t.Errorf("dropped %d, want 1", d)
	}
	// Whitelisted and logged-in sources pass at once.
	for _, src := range []string{"127.0.0.5", "127.0.0.8"} {
		began := time.Now()
		if got := request(src); got != "HTTP/1.1 200 OK" {
			t.Fatalf("%s while the slot is taken: %q", src, got)
		}
		if took := time.Since(began); took > 500*time.Millisecond {
			t.Errorf("%s took %v", src, took)
		}
	}
	// A waiter gets the slot as soon as the holder's request reaches the
	// backend.
	delayed := g.sec.unprovenDelayed.Load()
	answer := make(chan string, 1)
	go func() { answer <- request("127.0.0.9") }()
	for g.sec.unprovenDelayed.Load() == delayed {
		time.Sleep(5 * time.Millisecond)
	}
	if got := statusLine(holder, "\r\n"); got != "HTTP/1.1 200 OK" {
		t.Fatalf("the holder: %q", got)
	}
	if got := <-answer; got != "HTTP/1.1 200 OK" {
		t.Fatalf("the waiter: %q", got)
	}

	// The metrics say so.
	mfs, err := g.sec.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if m := mf.GetMetric(); strings.HasPrefix(mf.GetName(), "pbxgate_unproven_") && len(m) == 1 {
			got[mf.GetName()] = m[0].GetCounter().GetValue() + m[0].GetGauge().GetValue()
		}
	}
	if got["pbxgate_unproven_connections_dropped_total"] != 1 || got["pbxgate_unproven_connections_delayed_total"] < 2 ||
		len(got) != 3 {
		t.Errorf("metrics %v: want 1 dropped, 2 or more delayed, and the slots in use", got)
	}

	// A reload resizes the gate.
	if err := g.Reload(parse(t, conf(3))); err != nil {
		t.Fatal(err)
	}
	if n := cap(g.sec.unproven.Load().ch); n != 3 {
		t.Errorf("after the reload: %d slots, want 3", n)
	}
}

// setHold sets unprovenHold for one test.
func setHold(t *testing.T, d time.Duration) {
	old := unprovenHold
	unprovenHold = d
	t.Cleanup(func() { unprovenHold = old })
}

// TestUnprovenHold: a connection that stalls in its first exchange keeps
// its slot only for unprovenHold; the next unproven source is then served.
func TestUnprovenHold(t *testing.T) {
	setHold(t, 300*time.Millisecond)
	g := start(t, parse(t, webConfig(t.TempDir(), "127.0.0.1:0", origin(t, "A"),
		"timeouts:\n  first_bytes: 2s\nfraud:\n  unproven_concurrency: 1\n")), &event.Recorder{})
	addr := g.Addr("web").String()
	stalled := dialFrom(t, "127.0.0.6", addr)
	if _, err := io.WriteString(stalled, "GET / HTTP/1.1\r\nHost: app.test\r\n"); err != nil {
		t.Fatal(err)
	}
	waitSlotsInUse(t, g, 1, "a stalled request")
	began := time.Now()
	if got := statusLine(dialFrom(t, "127.0.0.7", addr), "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"); got != "HTTP/1.1 200 OK" {
		t.Fatalf("the next source: %q", got)
	}
	if took := time.Since(began); took < 150*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("the next source was served after %v, want about the hold (300ms)", took)
	}
	// The stalled client lost nothing: it finishes its request.
	if got := statusLine(stalled, "\r\n"); got != "HTTP/1.1 200 OK" {
		t.Fatalf("the stalled client: %q", got)
	}
}

// ldapBind is a simple BindRequest for name.
func ldapBind(name string) []byte {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "request")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 1, "id"))
	b := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 0, nil, "bind")
	b.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "version"))
	b.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, "name"))
	b.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "pw", "password"))
	p.AppendChild(b)
	return p.Bytes()
}

// tcpBackend serves every connection to a new loopback listener with
// serve, closes it when serve returns, and returns the address.
func tcpBackend(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return ln.Addr().String()
}

// TestLongConnectionsGiveTheirSlotBack: every protocol handler ends the
// first exchange of its connections (listen.Settle), so a phone's SIP
// connection, an LDAP session, a TCP relay or a TURN allocation that stays
// open for hours does not keep one of fraud.unproven_concurrency's slots.
func TestLongConnectionsGiveTheirSlotBack(t *testing.T) {
	setHold(t, 10*time.Second) // only settling gives a slot back in time
	pbx, _ := sipPBX(t)
	hold := tcpBackend(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }) // reads until closed
	yaml := fmt.Sprintf(`data_dir: %s
listeners:
  - {name: web-turn, address: "127.0.0.1:0", protocols: [http, turn]}
  - {name: sip-tcp, address: "127.0.0.1:0", protocols: [sip]}
  - {name: ldap, address: "127.0.0.1:0", protocols: [ldap]}
  - {name: raw, address: "127.0.0.1:0", protocols: [tcp], tcp_service: raw}
services:
  - {name: web, protocol: http, hosts: [app.test], backend: {address: %q}}
  - {name: pbx, protocol: sip, domains: [pbx.test], backend: {address: %q}}
  - {name: dir, protocol: ldap, domains: [example.com], backend: {address: %q}}
  - {name: raw, protocol: tcp, backend: {address: %q}}
turn:
  realm: %s
  public_addresses: [127.0.0.1]
  relay_ports: {min: 42000, max: 42099}
  users: [{name: alice, key: %x}]
fraud: {unproven_concurrency: 1}
`, t.TempDir(), origin(t, "portal"), pbx, hold, hold, turnRealm, turnauth.LongTermKey("alice", turnRealm, turnPass))
	g := start(t, parse(t, yaml), &event.Recorder{})

	for _, tc := range []struct {
		name     string
		listener string
		src      string
		first    func(c net.Conn) error
	}{
		{"SIP over TCP", "sip-tcp", "127.0.0.11", func(c net.Conn) error {
			if _, err := c.Write(sipRegister("100", "pbx.test", "slot-1")); err != nil {
				return err
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			if !strings.HasPrefix(line, "SIP/2.0 200") {
				return fmt.Errorf("answer %q, %v", line, err)
			}
			return nil
		}},
		{"LDAP", "ldap", "127.0.0.12", func(c net.Conn) error {
			_, err := c.Write(ldapBind("cn=x,dc=example,dc=com"))
			return err
		}},
		{"TCP relay", "raw", "127.0.0.13", func(c net.Conn) error {
			_, err := io.WriteString(c, "\x00\x01 opaque")
			return err
		}},
		{"TURN over TCP", "web-turn", "127.0.0.14", func(c net.Conn) error {
			if _, err := c.Write(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw); err != nil {
				return err
			}
			_, err := c.Read(make([]byte, 1500))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st := g.sec.engine.Load().Standing(mustAddr(tc.src)); st != fraud.Unproven {
				t.Fatalf("%s is %v before its first connection", tc.src, st)
			}
			c := dialFrom(t, tc.src, g.Addr(tc.listener).String())
			if err := tc.first(c); err != nil {
				t.Fatal(err)
			}
			waitSlotsInUse(t, g, 0, tc.name+" connection left open")
			// Still open: the slot came back while the connection lives.
			_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the connection ended (%v); want it open", err)
			}
		})
	}
}
