package adminclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/admin"
	"github.com/pbxgate/pbxgate/internal/admin/admintest"
	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

// clients returns a socket client and a TCP client with the token.
func clients(t *testing.T, e *admintest.Env) map[string]*Client {
	t.Helper()
	out := map[string]*Client{}
	for name, o := range map[string]Options{
		"socket": {Socket: e.Socket},
		"tcp":    {URL: e.URL, Token: e.Token},
	} {
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out[name] = c
	}
	return out
}

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"nothing", Options{}, "neither Socket nor URL"},
		{"bad scheme", Options{URL: "ftp://x:1"}, "want http://host:port"},
		{"no host", Options{URL: "http://"}, "want http://host:port"},
		{"not a url", Options{URL: "127.0.0.1:9190"}, "want http://host:port"},
		{"query", Options{URL: "http://127.0.0.1:9190/?x=1"}, "want http://host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New(%+v) = %v, want error containing %q", tt.o, err, tt.want)
			}
		})
	}
	c, err := New(Options{Socket: "/x.sock", URL: "ftp://ignored"})
	if err != nil || c.where != "/x.sock" {
		t.Fatalf("Socket does not win over URL: %v", err)
	}
}

func TestEntries(t *testing.T) {
	e := admintest.Start(t, clock)
	ctx := context.Background()
	for name, c := range clients(t, e) {
		t.Run(name, func(t *testing.T) {
			if err := c.Health(ctx); err != nil {
				t.Fatal(err)
			}
			if err := c.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := c.Ban(ctx, "203.0.113.7", 30*time.Minute, "scanner")
			if err != nil {
				t.Fatal(err)
			}
			if got.Address != "203.0.113.7" || got.List != "blacklist" || got.Note != "scanner" || !got.Expires.Equal(now.Add(30*time.Minute)) {
				t.Fatalf("Ban = %+v", got)
			}
			if _, err := c.Ban(ctx, "198.51.100.0/24", 0, ""); err != nil {
				t.Fatal(err)
			}
			bans, err := c.Bans(ctx, "")
			if err != nil || len(bans) != 2 {
				t.Fatalf("Bans = %+v, %v", bans, err)
			}
			bans, err = c.Bans(ctx, "198.51.100.200")
			if err != nil || len(bans) != 1 || bans[0].Address != "198.51.100.0/24" || !bans[0].Expires.IsZero() {
				t.Fatalf("Bans(filter) = %+v, %v", bans, err)
			}
			if _, err := c.Allow(ctx, "203.0.113.0/24", time.Hour, "office"); err != nil {
				t.Fatal(err)
			}
			wl, err := c.Whitelist(ctx)
			if err != nil || len(wl) != 1 || wl[0].Note != "office" {
				t.Fatalf("Whitelist = %+v, %v", wl, err)
			}
			if bans, _ := c.Bans(ctx, ""); len(bans) != 1 {
				t.Fatalf("Allow did not lift the ban inside it: %+v", bans)
			}
			si, err := c.Inspect(ctx, "203.0.113.7")
			if err != nil || !si.Allowed || si.Whitelisted == nil || si.Blacklisted != nil {
				t.Fatalf("Inspect = %+v, %v", si, err)
			}
			if _, err := c.Ban(ctx, "2001:db8::/64", 0, ""); err != nil {
				t.Fatal(err)
			}
			si, err = c.Inspect(ctx, "2001:db8::7")
			if err != nil || si.Allowed || si.Blacklisted == nil || si.Blacklisted.Address != "2001:db8::/64" {
				t.Fatalf("Inspect(IPv6) = %+v, %v", si, err)
			}
			if _, err := c.Unban(ctx, "2001:db8::/64"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Disallow(ctx, "203.0.113.0/24"); err != nil {
				t.Fatal(err)
			}
			removed, err := c.Unban(ctx, "198.51.100.0/24")
			if err != nil || removed.Address != "198.51.100.0/24" {
				t.Fatalf("Unban = %+v, %v", removed, err)
			}
			_, err = c.Unban(ctx, "198.51.100.0/24")
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || ae.Message != "198.51.100.0/24 is not on the blacklist" {
				t.Fatalf("second Unban = %v", err)
			}
			if err.Error() != "198.51.100.0/24 is not on the blacklist (HTTP 404)" {
				t.Fatalf("error text %q", err)
			}
		})
	}
}

func TestAPIErrors(t *testing.T) {
	e := admintest.Start(t, clock)
	ctx := context.Background()
	c := clients(t, e)["socket"]
	tests := []struct {
		name   string
		call   func() error
		status int
		want   string
	}{
		{"bad address", func() error { _, err := c.Ban(ctx, "nope", 0, ""); return err }, 400, `field "address": "nope" is not a network`},
		{"negative", func() error { _, err := c.Ban(ctx, "192.0.2.1", -time.Second, ""); return err }, 0, "negative duration"},
		{"bad inspect", func() error { _, err := c.Inspect(ctx, "a/b"); return err }, 400, "is not an IP address"},
		{"bad kind", func() error { _, err := c.Events(ctx, EventQuery{Kind: "x"}); return err }, 400, "want one of"},
		{"bad follow", func() error {
			return c.Follow(ctx, EventQuery{Since: "later"}, func(admin.EventJSON) error { return nil })
		}, 400, "RFC 3339"},
		{"engine", func() error {
			e.Control.SetErr(fmt.Errorf("x: %w", fraud.ErrConfigEntry))
			defer e.Control.SetErr(nil)
			_, err := c.Disallow(ctx, "192.0.2.1")
			return err
		}, 409, "configuration file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			var ae *APIError
			if errors.As(err, &ae) != (tt.status != 0) || (ae != nil && ae.Status != tt.status) {
				t.Fatalf("error %#v, want status %d", err, tt.status)
			}
		})
	}
}

func TestToken(t *testing.T) {
	e := admintest.Start(t, clock)
	ctx := context.Background()
	cs := clients(t, e)
	wrong, err := New(Options{URL: e.URL, Token: "pbxg_wrong"})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	var ae *APIError
	if _, err := wrong.Stats(ctx); !errors.As(err, &ae) || ae.Status != 401 || ae.Message != "unauthorized" {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := cs["tcp"].RotateToken(ctx); !errors.As(err, &ae) || ae.Status != 403 {
		t.Fatalf("rotate over TCP: %v", err)
	}
	tok, err := cs["socket"].RotateToken(ctx)
	if err != nil || !strings.HasPrefix(tok, "pbxg_") {
		t.Fatalf("RotateToken = %q, %v", tok, err)
	}
	if _, err := cs["tcp"].Stats(ctx); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("old token still works: %v", err)
	}
	fresh, err := New(Options{URL: e.URL, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := fresh.Stats(ctx); err != nil {
		t.Fatalf("new token: %v", err)
	}
}

func TestStatsAndState(t *testing.T) {
	e := admintest.Start(t, clock)
	e.Control.SetStats(fraud.Stats{EventsSeen: 42, AutoBans: 2})
	ctx := context.Background()
	cs := clients(t, e)
	st, err := cs["tcp"].Stats(ctx)
	if err != nil || st.EventsSeen != 42 || st.AutoBans != 2 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	var buf bytes.Buffer
	if err := cs["socket"].State(ctx, &buf); err != nil || buf.String() != string(e.State) {
		t.Fatalf("State = %q, %v", buf.String(), err)
	}
	var ae *APIError
	if err := cs["tcp"].State(ctx, &buf); !errors.As(err, &ae) || ae.Status != 403 {
		t.Fatalf("State over TCP: %v", err)
	}
}

func TestEventsAndFollow(t *testing.T) {
	for _, via := range []string{"socket", "tcp"} {
		t.Run(via, func(t *testing.T) {
			e := admintest.Start(t, clock)
			c := clients(t, e)[via]
			src := netip.MustParseAddr("203.0.113.7")
			for i := range 5 {
				e.Events.Emit(event.Event{Time: now.Add(time.Duration(i) * time.Second), Kind: event.RejectedByService,
					Source: src, Listener: "web", Proto: "http", Reason: event.ReasonStatus, User: fmt.Sprint("u", i)})
			}
			e.Events.Emit(event.Event{Time: now, Kind: event.Success, Source: src, Reason: event.ReasonOK})
			ctx := context.Background()
			evs, err := c.Events(ctx, EventQuery{Suspicious: true, Limit: 2, Source: "203.0.113.0/24"})
			if err != nil || len(evs) != 2 || evs[0].User != "u3" || evs[1].User != "u4" {
				t.Fatalf("Events = %+v, %v", evs, err)
			}
			fctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var got []string
			done := make(chan error, 1)
			go func() {
				done <- c.Follow(fctx, EventQuery{Kind: "rejected_by_service", Limit: 1}, func(ev admin.EventJSON) error {
					got = append(got, ev.User)
					switch len(got) {
					case 1: // the recent one; now live ones, one filtered out
						e.Events.Emit(event.Event{Time: now, Kind: event.Success, User: "skipped"})
						e.Events.Emit(event.Event{Time: now.Add(4 * time.Second), Kind: event.RejectedByService,
							Source: src, Listener: "web", Proto: "http", Reason: event.ReasonStatus, User: "u4"}) // same as the recent one
						e.Events.Emit(event.Event{Time: now, Kind: event.RejectedByService, User: "live"})
					case 3:
						cancel()
					}
					return nil
				})
			}()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Follow = %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Follow did not return; got %v", got)
			}
			if strings.Join(got, ",") != "u4,u4,live" {
				t.Fatalf("followed %v", got)
			}
			// fn's error ends Follow with that error.
			stop := errors.New("enough")
			if err := c.Follow(ctx, EventQuery{}, func(admin.EventJSON) error { return stop }); err != stop {
				t.Fatalf("Follow = %v, want fn's error", err)
			}
		})
	}
}

func TestFollowServerStops(t *testing.T) {
	e := admintest.Start(t, clock)
	c := clients(t, e)["socket"]
	e.Events.Emit(event.Event{Time: now, Kind: event.Success})
	err := c.Follow(context.Background(), EventQuery{}, func(admin.EventJSON) error {
		go e.Server.Shutdown(context.Background())
		return nil
	})
	if !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("Follow = %v, want ErrStreamEnded", err)
	}
}

func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	missing := filepath.Join(dir, "admin.sock")
	c, err := New(Options{Socket: missing})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Stats(ctx)
	var ue *UnreachableError
	if !errors.As(err, &ue) || err.Error() != "cannot reach pbxgate at "+missing+": is it running?" {
		t.Fatalf("missing socket: %v", err)
	}

	// A plain file where the socket should be.
	if err := os.WriteFile(missing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Bans(ctx, ""); !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "cannot reach pbxgate at "+missing) {
		t.Fatalf("not a socket: %v", err)
	}

	// A TCP port nobody listens on (a listener opened and closed).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	tc, err := New(Options{URL: "http://" + ln.Addr().String(), Token: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.Health(ctx); !errors.As(err, &ue) || !strings.Contains(err.Error(), "is it running?") {
		t.Fatalf("closed port: %v", err)
	}
}
