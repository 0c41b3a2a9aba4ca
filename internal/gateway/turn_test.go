package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/turnauth"
)

const (
	turnRealm = "turn.test"
	turnPass  = "a password"
)

func turnYAML(dir, web, extra string) string {
	return fmt.Sprintf(`data_dir: %s
listeners:
  - {name: turn-udp, address: "127.0.0.1:0", transport: udp, protocols: [turn]}
  - {name: web-turn, address: "127.0.0.1:0", protocols: [http, turn]}
  - {name: turn-tls, address: "127.0.0.1:0", tls: required, protocols: [turn]}
services:
  - {name: web, protocol: http, hosts: [app.test], backend: {address: %q}}
turn:
  realm: %s
  public_addresses: [127.0.0.1]
  relay_ports: {min: 41000, max: 41999}
  users: [{name: alice, key: %x}]
%s`, dir, web, turnRealm, turnauth.LongTermKey("alice", turnRealm, turnPass), extra)
}

// turnClient allocates through conn (a UDP socket, or a stream wrapped in
// a STUNConn) and returns the client and its relay.
func turnClient(t *testing.T, server net.Addr, conn net.PacketConn) (*pionturn.Client, net.PacketConn) {
	t.Helper()
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server.String(), TURNServerAddr: server.String(),
		Conn: conn, Username: "alice", Password: turnPass, Realm: turnRealm,
		RTO: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate via %s: %v", server, err)
	}
	t.Cleanup(func() { relay.Close() })
	return c, relay
}

// TestTURNListeners: TURN over UDP, over TCP sharing a listener with HTTP,
// and over TLS; a ban ends the source's allocations and silences it; a
// reload keeps allocations and applies new settings.
func TestTURNListeners(t *testing.T) {
	dir := t.TempDir()
	web := origin(t, "portal")
	rec := &event.Recorder{}
	g := start(t, parse(t, turnYAML(dir, web, "")), rec)

	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	turnClient(t, g.Addr("turn-udp"), udp)

	tcp, err := net.Dial("tcp", g.Addr("web-turn").String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	turnClient(t, g.Addr("web-turn"), pionturn.NewSTUNConn(tcp))
	if code, body := get(t, g.Addr("web-turn").String(), "app.test"); code != 200 || body != "portal" {
		t.Errorf("HTTP beside TURN: %d %q", code, body)
	}

	tc, err := tls.Dial("tcp", g.Addr("turn-tls").String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	turnClient(t, g.Addr("turn-tls"), pionturn.NewSTUNConn(tc))

	as := g.turn.Allocations()
	listeners := map[string]bool{}
	for _, a := range as {
		listeners[a.Listener] = true
	}
	if len(as) != 3 || !listeners["turn-udp"] || !listeners["web-turn"] || !listeners["turn-tls"] {
		t.Fatalf("allocations %+v", as)
	}
	n := 0
	for _, e := range rec.Events() {
		if e.Kind == event.Success && e.Proto == "turn" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d TURN success events, want 3", n)
	}

	// A reload keeps the allocations and applies the new quotas at once.
	if err := g.Reload(parse(t, turnYAML(dir, web, "  quotas: {total: 3}\n"))); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if n := len(g.turn.Allocations()); n != 3 {
		t.Fatalf("%d allocations after reload, want 3", n)
	}
	udp2, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp2.Close()
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: g.Addr("turn-udp").String(), TURNServerAddr: g.Addr("turn-udp").String(),
		Conn: udp2, Username: "alice", Password: turnPass, Realm: turnRealm, RTO: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Allocate(); err == nil {
		r.Close()
		t.Fatal("allocation over the reloaded total quota")
	}

	// A ban: allocations end, TCP/TLS control connections close, UDP gets
	// no answer.
	if _, err := g.sec.engine.Load().Ban(context.Background(), netip.MustParsePrefix("127.0.0.1/32"), time.Hour, "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(g.turn.Allocations()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if as := g.turn.Allocations(); len(as) != 0 {
		t.Fatalf("allocations after the ban: %+v", as)
	}
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err == nil {
		t.Error("TLS control connection still open after the ban")
	}
	if bindingAnswered(t, g.Addr("turn-udp"), 300*time.Millisecond) {
		t.Error("banned source answered over UDP")
	}
	if _, _, err := g.sec.engine.Load().Unban(context.Background(), netip.MustParsePrefix("127.0.0.1/32")); err != nil {
		t.Fatal(err)
	}
	if !bindingAnswered(t, g.Addr("turn-udp"), 5*time.Second) {
		t.Error("no STUN answer after unban")
	}
}

// bindingAnswered sends a STUN Binding request over UDP.
func bindingAnswered(t *testing.T, server net.Addr, wait time.Duration) bool {
	t.Helper()
	c, err := net.Dial("udp4", server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := c.Write(m.Raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err = c.Read(make([]byte, 1500))
	return err == nil
}

// TestTURNNeedsStart: TURN cannot be added by a reload, and the reload
// says so and keeps the old configuration.
func TestTURNNeedsStart(t *testing.T) {
	dir := t.TempDir()
	web := origin(t, "portal")
	g := start(t, parse(t, webConfig(dir, "127.0.0.1:0", web, "")), &event.Recorder{})
	err := g.Reload(parse(t, turnYAML(dir, web, "")))
	if err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("reload adding TURN: %v", err)
	}
	if code, _ := get(t, g.Addr("web").String(), "app.test"); code != 200 {
		t.Errorf("old configuration not kept: %d", code)
	}
}

// TestTURNListenerMoves: a reload moving a TURN UDP listener to another
// address serves the new socket and closes the old one.
func TestTURNListenerMoves(t *testing.T) {
	dir := t.TempDir()
	web := origin(t, "portal")
	g := start(t, parse(t, turnYAML(dir, web, "")), &event.Recorder{})
	old := g.Addr("turn-udp")
	if !bindingAnswered(t, old, 5*time.Second) {
		t.Fatal("no STUN answer before the move")
	}
	moved := strings.Replace(turnYAML(dir, web, ""), `{name: turn-udp, address: "127.0.0.1:0"`, `{name: turn-udp, address: "127.0.0.2:0"`, 1)
	if err := g.Reload(parse(t, moved)); err != nil {
		t.Fatalf("reload: %v", err)
	}
	now := g.Addr("turn-udp")
	if now.String() == old.String() || !bindingAnswered(t, now, 5*time.Second) {
		t.Fatalf("no STUN answer at the new address %v", now)
	}
	deadline := time.Now().Add(5 * time.Second)
	for bindingAnswered(t, old, 200*time.Millisecond) && time.Now().Before(deadline) {
	}
	if bindingAnswered(t, old, 200*time.Millisecond) {
		t.Error("the old socket still answers")
	}
}
