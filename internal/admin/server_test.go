package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
)

func TestNewRequires(t *testing.T) {
	_, err := New(Config{})
	if err == nil || !strings.Contains(err.Error(), "Control") || !strings.Contains(err.Error(), "Events") {
		t.Fatalf("New(Config{}) = %v, want errors naming Control and Events", err)
	}
}

func TestUnauthenticatedEndpoints(t *testing.T) {
	e := startEnv(t)
	for _, via := range []transport{viaTCP, viaUnix} {
		t.Run(string(via), func(t *testing.T) {
			resp, body := e.do(t, via, "GET", "/healthz", "", "-")
			wantStatus(t, resp, body, http.StatusOK)
			if got := decode[StatusJSON](t, body); got.Status != "ok" {
				t.Fatalf("healthz = %+v", got)
			}
			resp, body = e.do(t, via, "GET", "/readyz", "", "-")
			wantStatus(t, resp, body, http.StatusOK)

			e.readyMu.Lock()
			e.ready = errors.New("listeners not open yet")
			e.readyMu.Unlock()
			resp, body = e.do(t, via, "GET", "/readyz", "", "-")
			wantStatus(t, resp, body, http.StatusServiceUnavailable)
			if got := decode[StatusJSON](t, body); got.Status != "not ready" || got.Reason != "listeners not open yet" {
				t.Fatalf("readyz = %+v", got)
			}
			e.readyMu.Lock()
			e.ready = nil
			e.readyMu.Unlock()

			resp, body = e.do(t, via, "GET", "/metrics", "", "-")
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "pbxgate_build_info") {
				t.Fatalf("metrics: %d %.300s", resp.StatusCode, body)
			}
		})
	}
	if n := len(e.sink.Events()); n != 0 {
		t.Fatalf("%d events for requests that need no token", n)
	}
}

func TestAuthFailures(t *testing.T) {
	e := startEnv(t)
	tests := []struct {
		name, method, path, auth, detail string
	}{
		{"missing", "GET", "/api/v1/stats", "-", "missing token"},
		{"wrong token", "GET", "/api/v1/blacklist", "Bearer pbxg_nope", "wrong token"},
		{"wrong scheme", "GET", "/api/v1/stats", "Basic " + e.token, "not a bearer token"},
		{"empty bearer", "GET", "/api/v1/stats", "Bearer ", "not a bearer token"},
		{"post without token", "POST", "/api/v1/blacklist", "-", "missing token"},
		{"unknown path", "GET", "/api/v2/secret", "-", "missing token"},
		{"path outside api", "GET", "/console", "Bearer x", "wrong token"},
		{"rotate without token", "POST", "/api/v1/token/rotate", "-", "missing token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.sink.Events())
			resp, body := e.do(t, viaTCP, tt.method, tt.path, `{"address":"192.0.2.1"}`, tt.auth)
			wantStatus(t, resp, body, http.StatusUnauthorized)
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			if msg := errorMessage(t, body); msg != "unauthorized" {
				t.Errorf("error %q reveals more than unauthorized", msg)
			}
			evs := e.sink.Events()
			if len(evs) != before+1 {
				t.Fatalf("%d events, want %d", len(evs), before+1)
			}
			ev := evs[len(evs)-1]
			want := event.Event{Time: testNow, Kind: event.RejectedByGateway, Reason: event.ReasonAdminAuth,
				Listener: "admin", Proto: "http", Source: netip.MustParseAddr("127.0.0.1"), Detail: tt.detail}
			if ev != want {
				t.Errorf("event %+v, want %+v", ev, want)
			}
		})
	}
	if calls := e.ctrl.calls; len(calls) != 0 {
		t.Fatalf("unauthenticated requests reached the engine: %v", calls)
	}
	// The auth failures are counted in the metrics.
	_, body := e.do(t, viaTCP, "GET", "/metrics", "", "-")
	if !strings.Contains(string(body), `pbxgate_events_total{kind="rejected_by_gateway",listener="admin",proto="http",reason="admin_auth",service=""} 8`) {
		t.Fatalf("metrics do not count the auth failures:\n%s", grepLines(string(body), "pbxgate_events_total"))
	}
	// Scheme names are case-insensitive.
	resp, body := e.do(t, viaTCP, "GET", "/api/v1/stats", "", "bearer "+e.token)
	wantStatus(t, resp, body, http.StatusOK)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestServeTCPNeedsToken(t *testing.T) {
	srv, err := New(Config{Control: newFakeControl(), Events: event.NewRing(1)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(context.Background(), ln); err == nil || !strings.Contains(err.Error(), "Token") {
		t.Fatalf("Serve = %v, want an error naming Config.Token", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("listener left open")
	}
}

func TestEntries(t *testing.T) {
	for _, via := range []transport{viaTCP, viaUnix} {
		t.Run(string(via), func(t *testing.T) {
			e := startEnv(t)
			resp, body := e.do(t, via, "GET", "/api/v1/blacklist", "", "")
			wantStatus(t, resp, body, http.StatusOK)
			if string(body) != `{"entries":[]}`+"\n" {
				t.Fatalf("empty list = %s", body)
			}

			resp, body = e.do(t, via, "POST", "/api/v1/blacklist", `{"address":"203.0.113.7","for":"30m","note":"scanner"}`, "")
			wantStatus(t, resp, body, http.StatusCreated)
			got := decode[EntryJSON](t, body)
			want := EntryJSON{List: "blacklist", Address: "203.0.113.7", Origin: "manual", Reason: "manual",
				Note: "scanner", Created: testNow, Expires: testNow.Add(30 * time.Minute)}
			if !entryEqual(got, want) {
				t.Fatalf("ban = %+v, want %+v", got, want)
			}

			resp, body = e.do(t, via, "POST", "/api/v1/blacklist", `{"address":"198.51.100.0/24","for":"7d"}`, "")
			wantStatus(t, resp, body, http.StatusCreated)
			if got := decode[EntryJSON](t, body); got.Address != "198.51.100.0/24" || !got.Expires.Equal(testNow.Add(7*24*time.Hour)) {
				t.Fatalf("ban /24 = %+v", got)
			}
			resp, body = e.do(t, via, "POST", "/api/v1/blacklist", `{"address":"2001:db8::1"}`, "")
			wantStatus(t, resp, body, http.StatusCreated)
			if strings.Contains(string(body), "expires") {
				t.Fatalf("permanent ban shows an expiry: %s", body)
			}

			resp, body = e.do(t, via, "GET", "/api/v1/blacklist", "", "")
			wantStatus(t, resp, body, http.StatusOK)
			if got := addresses(decode[EntriesJSON](t, body)); got != "198.51.100.0/24 203.0.113.7 2001:db8::1" {
				t.Fatalf("blacklist = %s", got)
			}
			resp, body = e.do(t, via, "GET", "/api/v1/blacklist?address=198.51.100.9", "", "")
			wantStatus(t, resp, body, http.StatusOK)
			if got := addresses(decode[EntriesJSON](t, body)); got != "198.51.100.0/24" {
				t.Fatalf("blacklist?address=198.51.100.9 = %s", got)
			}

			resp, body = e.do(t, via, "DELETE", "/api/v1/blacklist?address=203.0.113.7", "", "")
			wantStatus(t, resp, body, http.StatusOK)
			if got := decode[EntryJSON](t, body); got.Address != "203.0.113.7" {
				t.Fatalf("unban = %+v", got)
			}
			resp, body = e.do(t, via, "DELETE", "/api/v1/blacklist?address=203.0.113.7", "", "")
			wantStatus(t, resp, body, http.StatusNotFound)
			if msg := errorMessage(t, body); msg != "203.0.113.7 is not on the blacklist" {
				t.Fatalf("second unban: %q", msg)
			}

			// Whitelisting lifts the ban inside it.
			resp, body = e.do(t, via, "POST", "/api/v1/whitelist", `{"address":"198.51.100.0/24","note":"office"}`, "")
			wantStatus(t, resp, body, http.StatusCreated)
			if got := decode[EntryJSON](t, body); got.List != "whitelist" || got.Note != "office" {
				t.Fatalf("allow = %+v", got)
			}
			resp, body = e.do(t, via, "GET", "/api/v1/whitelist", "", "")
			wantStatus(t, resp, body, http.StatusOK)
			if got := addresses(decode[EntriesJSON](t, body)); got != "198.51.100.0/24" {
				t.Fatalf("whitelist = %s", got)
			}
			resp, body = e.do(t, via, "GET", "/api/v1/blacklist", "", "")
			wantStatus(t, resp, body, http.StatusOK)
			if got := addresses(decode[EntriesJSON](t, body)); got != "2001:db8::1" {
				t.Fatalf("blacklist after allow = %s", got)
			}
			resp, body = e.do(t, via, "DELETE", "/api/v1/whitelist?address=198.51.100.0/24", "", "")
			wantStatus(t, resp, body, http.StatusOK)
			resp, body = e.do(t, via, "DELETE", "/api/v1/whitelist?address=198.51.100.0/24", "", "")
			wantStatus(t, resp, body, http.StatusNotFound)
		})
	}
}

func entryEqual(a, b EntryJSON) bool {
	return a.List == b.List && a.Address == b.Address && a.Origin == b.Origin && a.Reason == b.Reason &&
		a.Note == b.Note && a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires) &&
		a.FirstSeen.Equal(b.FirstSeen) && a.LastSeen.Equal(b.LastSeen) && a.Count == b.Count &&
		a.Level == b.Level && strings.Join(a.Evidence, "|") == strings.Join(b.Evidence, "|")
}

func addresses(l EntriesJSON) string {
	var out []string
	for _, e := range l.Entries {
		out = append(out, e.Address)
	}
	return strings.Join(out, " ")
}

func TestSourceAndStats(t *testing.T) {
	e := startEnv(t)
	e.ctrl.inspect = fraud.SourceInfo{Score: 7, Threshold: 20, KnownUsers: 2, LastSeen: testNow.Add(-time.Minute)}
	e.ctrl.stats = fraud.Stats{EventsSeen: 10, AutoBans: 3, ManualBans: 1, Blacklisted: 4, Whitelisted: 1, Sources: 5}
	for _, via := range []transport{viaTCP, viaUnix} {
		t.Run(string(via), func(t *testing.T) {
			resp, body := e.do(t, via, "POST", "/api/v1/blacklist", `{"address":"203.0.113.0/24"}`, "")
			wantStatus(t, resp, body, http.StatusCreated)
			resp, body = e.do(t, via, "GET", "/api/v1/sources/203.0.113.9", "", "")
			wantStatus(t, resp, body, http.StatusOK)
			si := decode[SourceJSON](t, body)
			if si.Address != "203.0.113.9" || si.Allowed || si.Blacklisted == nil || si.Blacklisted.Address != "203.0.113.0/24" ||
				si.Whitelisted != nil || si.Score != 7 || si.Threshold != 20 || si.KnownUsers != 2 || !si.LastSeen.Equal(testNow.Add(-time.Minute)) {
				t.Fatalf("source = %s", body)
			}
			// An IPv4-mapped address is asked about as the IPv4 address.
			resp, body = e.do(t, via, "GET", "/api/v1/sources/::ffff:192.0.2.1", "", "")
			wantStatus(t, resp, body, http.StatusOK)
			if si := decode[SourceJSON](t, body); si.Address != "192.0.2.1" || !si.Allowed {
				t.Fatalf("mapped source = %s", body)
			}

			resp, body = e.do(t, via, "GET", "/api/v1/stats", "", "")
			wantStatus(t, resp, body, http.StatusOK)
			st := decode[StatsJSON](t, body)
			if st.EventsSeen != 10 || st.AutoBans != 3 || st.ManualBans != 1 || st.Blacklisted != 4 || st.Sources != 5 {
				t.Fatalf("stats = %s", body)
			}
			if !strings.Contains(string(body), `"events_dropped_followers":0`) {
				t.Fatalf("stats lack events_dropped_followers: %s", body)
			}
		})
	}
}

func TestEventsList(t *testing.T) {
	e := startEnv(t)
	src := netip.MustParseAddr("203.0.113.7")
	other := netip.MustParseAddr("192.0.2.1")
	evs := []event.Event{
		{Time: testNow.Add(-time.Hour), Kind: event.RejectedByService, Source: src, Listener: "web", Service: "portal", Proto: "http", Reason: event.ReasonStatus, User: "alice", Detail: "401"},
		{Time: testNow.Add(-5 * time.Minute), Kind: event.Success, Source: other, Listener: "web", Service: "portal", Proto: "http", Reason: event.ReasonOK},
		{Time: testNow.Add(-time.Minute), Kind: event.RejectedByGateway, Source: src, Listener: "ldaps", Proto: "ldap", Reason: event.ReasonUnknownDomain},
		{Time: testNow, Kind: event.BackendUnreachable, Source: other, Listener: "web", Service: "prov", Proto: "http", Reason: event.ReasonDial},
	}
	for _, ev := range evs {
		e.ring.Emit(ev)
	}
	tests := []struct {
		query string
		want  []int // indexes into evs, oldest first
	}{
		{"", []int{0, 1, 2, 3}},
		{"?limit=2", []int{2, 3}},
		{"?kind=success", []int{1}},
		{"?source=203.0.113.7", []int{0, 2}},
		{"?source=192.0.2.0/24", []int{1, 3}},
		{"?listener=web&service=portal", []int{0, 1}},
		{"?proto=ldap", []int{2}},
		{"?reason=dial", []int{3}},
		{"?user=alice", []int{0}},
		{"?suspicious=1", []int{0, 2, 3}},
		{"?since=10m", []int{1, 2, 3}},
		{"?since=" + testNow.Add(-2*time.Minute).Format(time.RFC3339), []int{2, 3}},
		{"?kind=rejected_by_gateway&source=192.0.2.1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			resp, body := e.do(t, viaTCP, "GET", "/api/v1/events"+tt.query, "", "")
			wantStatus(t, resp, body, http.StatusOK)
			got := decode[EventsJSON](t, body)
			if len(got.Events) != len(tt.want) {
				t.Fatalf("%d events, want %d: %s", len(got.Events), len(tt.want), body)
			}
			for i, j := range tt.want {
				if w := NewEventJSON(evs[j]); got.Events[i] != w {
					t.Errorf("event %d = %+v, want %+v", i, got.Events[i], w)
				}
			}
		})
	}
	_, body := e.do(t, viaTCP, "GET", "/api/v1/events?limit=1", "", "")
	want := `{"events":[{"time":"2025-03-01T12:00:00Z","kind":"backend_unreachable","source":"192.0.2.1","listener":"web","service":"prov","proto":"http","reason":"dial"}]}` + "\n"
	if string(body) != want {
		t.Fatalf("wire form\n got %s\nwant %s", body, want)
	}
}

func TestBadRequests(t *testing.T) {
	e := startEnv(t)
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     string // substring of the error message
	}{
		{"bad json", "POST", "/api/v1/blacklist", `{"address":`, 400, "JSON ends early"},
		{"syntax", "POST", "/api/v1/blacklist", `{"address" "x"}`, 400, "invalid JSON at byte"},
		{"unknown field", "POST", "/api/v1/blacklist", `{"address":"192.0.2.1","duration":"5m"}`, 400, `unknown field "duration"`},
		{"wrong type", "POST", "/api/v1/blacklist", `{"address":42}`, 400, `field "address" must be a string`},
		{"not an object", "POST", "/api/v1/blacklist", `["192.0.2.1"]`, 400, "want a JSON object"},
		{"empty body", "POST", "/api/v1/blacklist", ``, 400, "empty"},
		{"trailing data", "POST", "/api/v1/blacklist", `{"address":"192.0.2.1"} {}`, 400, "data after the JSON object"},
		{"oversized", "POST", "/api/v1/blacklist", `{"address":"192.0.2.1","note":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, 413, "larger than 1048576 bytes"},
		{"bad address", "POST", "/api/v1/blacklist", `{"address":"203.0.113.300"}`, 400, `field "address": "203.0.113.300" is not a network`},
		{"missing address", "POST", "/api/v1/whitelist", `{"note":"x"}`, 400, `field "address"`},
		{"host bits", "POST", "/api/v1/blacklist", `{"address":"198.51.100.7/24"}`, 400, "did you mean 198.51.100.0/24"},
		{"bad duration", "POST", "/api/v1/blacklist", `{"address":"192.0.2.1","for":"soon"}`, 400, `field "for": invalid duration "soon"`},
		{"negative duration", "POST", "/api/v1/blacklist", `{"address":"192.0.2.1","for":"-5m"}`, 400, `field "for"`},
		{"unitless duration", "POST", "/api/v1/whitelist", `{"address":"192.0.2.1","for":"30"}`, 400, `field "for": duration "30" has no unit`},
		{"long note", "POST", "/api/v1/blacklist", `{"address":"192.0.2.1","note":"` + strings.Repeat("x", MaxNote+1) + `"}`, 400, `field "note": longer than 1024 bytes`},
		{"delete without address", "DELETE", "/api/v1/blacklist", ``, 400, "address is required"},
		{"delete bad address", "DELETE", "/api/v1/whitelist?address=nope", ``, 400, `"nope" is not a network`},
		{"list bad filter", "GET", "/api/v1/blacklist?address=nope", ``, 400, `"nope" is not a network`},
		{"source not ip", "GET", "/api/v1/sources/example.com", ``, 400, `"example.com" is not an IP address`},
		{"source prefix", "GET", "/api/v1/sources/192.0.2.0/24", ``, 400, "is not an IP address"},
		{"events kind", "GET", "/api/v1/events?kind=bad", ``, 400, "want one of rejected_by_gateway, backend_unreachable, rejected_by_service, success"},
		{"events limit", "GET", "/api/v1/events?limit=10001", ``, 400, "from 1 to 10000"},
		{"events limit zero", "GET", "/api/v1/events?limit=0", ``, 400, "from 1 to 10000"},
		{"events since", "GET", "/api/v1/events?since=yesterday", ``, 400, "RFC 3339"},
		{"events source", "GET", "/api/v1/events?source=x", ``, 400, `source: "x" is not a network`},
		{"events unknown param", "GET", "/api/v1/events?sorce=192.0.2.1", ``, 400, `unknown parameter "sorce"`},
		{"events repeated", "GET", "/api/v1/events?kind=success&kind=success", ``, 400, "given 2 times"},
		{"events follow value", "GET", "/api/v1/events?follow=maybe", ``, 400, "want 1 or 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(t, viaTCP, tt.method, tt.path, tt.body, "")
			wantStatus(t, resp, body, tt.status)
			if msg := errorMessage(t, body); !strings.Contains(msg, tt.want) {
				t.Fatalf("error %q does not contain %q", msg, tt.want)
			}
		})
	}
	if calls := e.ctrl.calls; len(calls) != 0 {
		t.Fatalf("refused requests reached the engine: %v", calls)
	}
}

func TestControlErrors(t *testing.T) {
	e := startEnv(t)
	tests := []struct {
		name   string
		err    error
		status int
		want   string
	}{
		{"invalid", fmt.Errorf("prefix too wide: %w", fraud.ErrInvalid), 400, "prefix too wide"},
		{"config entry", fmt.Errorf("198.51.100.0/24: %w", fraud.ErrConfigEntry), 409, "change it in the configuration file"},
		{"closed", fraud.ErrClosed, 503, "closed"},
		{"other", errBoom, 500, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.ctrl.setErr(tt.err)
			defer e.ctrl.setErr(nil)
			for _, r := range []struct{ method, path, body string }{
				{"POST", "/api/v1/blacklist", `{"address":"192.0.2.1"}`},
				{"DELETE", "/api/v1/whitelist?address=198.51.100.0/24", ""},
				{"GET", "/api/v1/blacklist", ""},
				{"GET", "/api/v1/sources/192.0.2.1", ""},
			} {
				resp, body := e.do(t, viaUnix, r.method, r.path, r.body, "")
				wantStatus(t, resp, body, tt.status)
				if msg := errorMessage(t, body); !strings.Contains(msg, tt.want) {
					t.Fatalf("%s %s: error %q does not contain %q", r.method, r.path, msg, tt.want)
				}
			}
		})
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	e := startEnv(t)
	tests := []struct {
		via          transport
		method, path string
		status       int
		allow        string
	}{
		{viaTCP, "GET", "/api/v1/nope", 404, ""},
		{viaUnix, "GET", "/", 404, ""},
		{viaTCP, "GET", "/api/v1/sources/", 400, ""},
		{viaTCP, "PUT", "/api/v1/blacklist", 405, "DELETE, GET, POST"},
		{viaUnix, "POST", "/api/v1/stats", 405, "GET"},
		{viaTCP, "POST", "/healthz", 405, "GET"},
		{viaUnix, "GET", "/api/v1/token/rotate", 405, "POST"},
		{viaUnix, "DELETE", "/api/v1/sources/192.0.2.1", 405, "GET"},
	}
	for _, tt := range tests {
		t.Run(string(tt.via)+" "+tt.method+" "+tt.path, func(t *testing.T) {
			resp, body := e.do(t, tt.via, tt.method, tt.path, "", "")
			wantStatus(t, resp, body, tt.status)
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Fatalf("Allow = %q, want %q", got, tt.allow)
			}
			if errorMessage(t, body) == "" {
				t.Fatal("empty error message")
			}
		})
	}
}

func TestTokenRotate(t *testing.T) {
	e := startEnv(t)
	resp, body := e.do(t, viaTCP, "POST", "/api/v1/token/rotate", "", "")
	wantStatus(t, resp, body, http.StatusForbidden)
	if msg := errorMessage(t, body); !strings.Contains(msg, "unix socket") {
		t.Fatalf("TCP rotate: %q", msg)
	}

	resp, body = e.do(t, viaUnix, "POST", "/api/v1/token/rotate", "", "")
	wantStatus(t, resp, body, http.StatusOK)
	tok := decode[TokenJSON](t, body).Token
	if !strings.HasPrefix(tok, "pbxg_") || tok == e.token {
		t.Fatalf("new token %q", tok)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatal("token answer may be cached")
	}
	// The old token stops working at once, the new one works.
	resp, body = e.do(t, viaTCP, "GET", "/api/v1/stats", "", "Bearer "+e.token)
	wantStatus(t, resp, body, http.StatusUnauthorized)
	resp, body = e.do(t, viaTCP, "GET", "/api/v1/stats", "", "Bearer "+tok)
	wantStatus(t, resp, body, http.StatusOK)
	// And a verifier loaded from the store accepts only the new one.
	hv, err := LoadVerifier(context.Background(), e.st)
	if err != nil || !hv.Verify(tok) || hv.Verify(e.token) {
		t.Fatalf("stored hash does not follow the rotation (err %v)", err)
	}
}

func TestState(t *testing.T) {
	e := startEnv(t)
	resp, body := e.do(t, viaTCP, "GET", "/api/v1/state", "", "")
	wantStatus(t, resp, body, http.StatusForbidden)

	resp, body = e.do(t, viaUnix, "GET", "/api/v1/state", "", "")
	if resp.StatusCode != 200 || string(body) != "STATE" || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("state: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	e.snapshot = func(context.Context, io.Writer) error { return errBoom }
	resp, body = e.do(t, viaUnix, "GET", "/api/v1/state", "", "")
	wantStatus(t, resp, body, http.StatusInternalServerError)
	if msg := errorMessage(t, body); msg != "snapshot: boom" {
		t.Fatalf("state error %q", msg)
	}

	// A failure after part of the snapshot is out breaks the response.
	e.snapshot = func(_ context.Context, w io.Writer) error {
		if _, err := w.Write(make([]byte, 64<<10)); err != nil {
			return err
		}
		return errBoom
	}
	r, err := e.unix.Get("http://pbxgate/api/v1/state")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(r.Body)
	r.Body.Close()
	if err == nil {
		t.Fatal("a failed snapshot read as complete")
	}
}

func TestSocketPeerUID(t *testing.T) {
	e := startEnv(t, func(_ *env, s *Server) { s.trusted = func(uid int) bool { return uid == -12345 } })
	resp, body := e.do(t, viaUnix, "GET", "/api/v1/stats", "", "")
	wantStatus(t, resp, body, http.StatusForbidden)
	want := fmt.Sprintf("forbidden: uid %d is neither root nor the user pbxgate runs as", os.Geteuid())
	if msg := errorMessage(t, body); msg != want {
		t.Fatalf("error %q, want %q", msg, want)
	}
	// Even health checks: the socket is for the operator only.
	resp, body = e.do(t, viaUnix, "GET", "/healthz", "", "")
	wantStatus(t, resp, body, http.StatusForbidden)
}

func TestPeerCheckDefault(t *testing.T) {
	e := startEnv(t)
	for _, uid := range []int{0, os.Geteuid()} {
		if !e.srv.trusted(uid) {
			t.Errorf("uid %d not trusted", uid)
		}
	}
	if os.Geteuid() != 4242 && e.srv.trusted(4242) {
		t.Error("a foreign uid is trusted")
	}
}

// follow opens an events stream and returns a line reader.
func (e *env) follow(t *testing.T, ctx context.Context, via transport, query string) (*bufio.Reader, func()) {
	t.Helper()
	base, client := e.tcpURL, e.tcp
	if via == viaUnix {
		base, client = "http://pbxgate", e.unix
	}
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/events?follow=1"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("follow: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return bufio.NewReader(resp.Body), func() { resp.Body.Close() }
}

// nextEvent reads lines until one holds an event, skipping heartbeats.
func nextEvent(t *testing.T, r *bufio.Reader) EventJSON {
	t.Helper()
	for range 1000 {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		return decode[EventJSON](t, line)
	}
	t.Fatal("only heartbeats")
	return EventJSON{}
}

func TestFollow(t *testing.T) {
	for _, via := range []transport{viaTCP, viaUnix} {
		t.Run(string(via), func(t *testing.T) {
			e := startEnv(t)
			mk := func(i int, reason string) event.Event {
				return event.Event{Time: testNow.Add(time.Duration(i) * time.Second), Kind: event.RejectedByGateway,
					Source: netip.MustParseAddr("203.0.113.7"), Listener: "web", Proto: "http", Reason: reason}
			}
			for i := range 5 {
				e.ring.Emit(mk(i, event.ReasonDeniedPath))
			}
			e.ring.Emit(mk(5, event.ReasonUnknownHost)) // filtered out
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r, closeBody := e.follow(t, ctx, via, "&reason=denied_path&limit=3")
			defer closeBody()
			for i := 2; i < 5; i++ {
				if got := nextEvent(t, r); !got.Time.Equal(mk(i, "").Time) {
					t.Fatalf("recent event %d at %v", i, got.Time)
				}
			}
			e.ring.Emit(mk(6, event.ReasonUnknownHost)) // filtered out
			e.ring.Emit(mk(7, event.ReasonDeniedPath))
			if got := nextEvent(t, r); !got.Time.Equal(mk(7, "").Time) || got.Reason != event.ReasonDeniedPath {
				t.Fatalf("live event = %+v", got)
			}
		})
	}
}

func TestFollowOutlivesTimeouts(t *testing.T) {
	e := startEnv(t, func(_ *env, s *Server) {
		s.t.read, s.t.write, s.t.heartbeat = 50*time.Millisecond, 50*time.Millisecond, 20*time.Millisecond
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, closeBody := e.follow(t, ctx, viaTCP, "")
	defer closeBody()
	// Wait for heartbeats spanning several read and write timeouts.
	start := time.Now()
	for n := 0; n < 10 || time.Since(start) < 200*time.Millisecond; n++ {
		line, err := r.ReadBytes('\n')
		if err != nil || string(line) != "\n" {
			t.Fatalf("heartbeat %d: %q %v", n, line, err)
		}
		if n > 10000 {
			t.Fatal("too many heartbeats")
		}
	}
	ev := event.Event{Time: testNow, Kind: event.Success, Reason: event.ReasonOK}
	e.ring.Emit(ev)
	if got := nextEvent(t, r); got != NewEventJSON(ev) {
		t.Fatalf("event after timeouts = %+v", got)
	}
}

func TestFollowDropsStalledClient(t *testing.T) {
	e := startEnv(t, func(_ *env, s *Server) { s.t.streamWrite = 50 * time.Millisecond })
	// A raw connection that asks to follow and never reads.
	c, err := net.Dial("unix", e.sockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /api/v1/events?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Wait for the response header, so the handler is streaming.
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("status line %q, %v", line, err)
	}
	// Emit more than the socket buffers hold, then stop reading for longer
	// than the stream's write timeout: the server must give up on us and
	// close the connection. (The pause is the behaviour under test.)
	big := event.Event{Time: testNow, Kind: event.Success, Detail: strings.Repeat("x", 4000)}
	for range 2 * followBuffer {
		e.ring.Emit(big)
	}
	time.Sleep(300 * time.Millisecond)
	// Now drain: the stream must end (EOF) without any further event, well
	// before the 15s heartbeat.
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("stalled follower not dropped: %v", err)
	}
	if e.ring.Dropped() == 0 {
		t.Fatal("no events dropped for the stalled follower")
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	e := startEnv(t)
	ctx := context.Background()
	r, closeBody := e.follow(t, ctx, viaUnix, "")
	defer closeBody()
	r2, closeBody2 := e.follow(t, ctx, viaTCP, "")
	defer closeBody2()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, rd := range []*bufio.Reader{r, r2} {
		if _, err := io.ReadAll(rd); err != nil {
			t.Fatalf("stream did not end cleanly: %v", err)
		}
	}
	if err := e.srv.Shutdown(sctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatalf("Close after Shutdown: %v", err)
	}
	if _, err := os.Stat(e.sockPath); !os.IsNotExist(err) {
		t.Fatalf("socket file left behind: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Serve(ctx, ln); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Shutdown = %v, want ErrClosed", err)
	}
}

func TestServeContextEndsStreams(t *testing.T) {
	e := startEnv(t)
	r, closeBody := e.follow(t, context.Background(), viaTCP, "")
	defer closeBody()
	e.cancel()
	if _, err := io.ReadAll(r); err != nil {
		t.Logf("stream ended with %v", err) // closed either way
	}
	for range 2 {
		select {
		case err := <-e.served:
			if err != nil {
				t.Fatalf("Serve = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return")
		}
	}
	e.served <- nil // for the cleanup
	e.served <- nil
	if _, err := os.Stat(e.sockPath); !os.IsNotExist(err) {
		t.Fatalf("socket file left behind: %v", err)
	}
}

// *fraud.Engine is the Control the gateway hands in.
var _ Control = (*fraud.Engine)(nil)
