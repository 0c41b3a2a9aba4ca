package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/admin/admintest"
	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
	"github.com/pbxgate/pbxgate/internal/store"
	"net/netip"
)

var adminTestNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// startAdmin runs an admin server for the test, points the commands' clock
// at the server's and checks for leaked goroutines at the end.
func startAdmin(t *testing.T) *admintest.Env {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	old := adminNow
	adminNow = func() time.Time { return adminTestNow }
	t.Cleanup(func() { adminNow = old })
	return admintest.Start(t, func() time.Time { return adminTestNow })
}

// syncBuffer is a bytes.Buffer safe for a command running in a goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// run runs the CLI and returns exit code, stdout and stderr.
func run(args ...string) (int, string, string) {
	var out, errw bytes.Buffer
	code := Main(args, &out, &errw)
	return code, out.String(), errw.String()
}

// mustRun runs the CLI and fails unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := run(args...)
	if code != 0 {
		t.Fatalf("pbxgate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// raw fetches an API path over the socket, for comparing with --json.
func raw(t *testing.T, e *admintest.Env, path string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", e.Socket)
	}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://pbxgate" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return string(b)
}

func local(t time.Time) string { return t.Local().Format(timeLayout) }

func TestAdminBanCommands(t *testing.T) {
	e := startAdmin(t)
	sock := "--socket=" + e.Socket

	out := mustRun(t, "ban", "203.0.113.7", "--for", "30m", "--note", "scanner", sock)
	if want := fmt.Sprintf("banned 203.0.113.7 until %s (in 30m)\n", local(adminTestNow.Add(30*time.Minute))); out != want {
		t.Fatalf("ban:\n got %q\nwant %q", out, want)
	}
	out = mustRun(t, "ban", "198.51.100.0/24", sock)
	if out != "banned 198.51.100.0/24 permanently\n" {
		t.Fatalf("ban /24: %q", out)
	}
	e.Control.Put(store.Entry{List: store.Blacklist, Prefix: netip.MustParsePrefix("192.0.2.66/32"), Origin: store.Auto,
		Reason: "12 weighted events in 1m", Created: adminTestNow.Add(-time.Minute), Expires: adminTestNow.Add(6*24*time.Hour + 23*time.Hour + 59*time.Minute), Level: 3})

	out = mustRun(t, "bans", sock)
	want := "" +
		"ADDRESS          ORIGIN  EXPIRES  LEVEL  REASON/NOTE\n" +
		"192.0.2.66       auto    in 6d23h  3      12 weighted events in 1m\n" +
		"198.51.100.0/24  manual  never    -      manual\n" +
		"203.0.113.7      manual  in 30m   -      manual — scanner\n"
	if out != alignLike(want) {
		t.Fatalf("bans:\n%s\nwant:\n%s", out, alignLike(want))
	}
	out = mustRun(t, "bans", "--address", "198.51.100.9", sock)
	if strings.Count(out, "\n") != 2 || !strings.Contains(out, "198.51.100.0/24") {
		t.Fatalf("bans --address:\n%s", out)
	}
	if got, want := mustRun(t, "bans", "--json", sock), raw(t, e, "/api/v1/blacklist"); got != want {
		t.Fatalf("bans --json\n got %s\nwant %s", got, want)
	}

	out = mustRun(t, "unban", "203.0.113.7", sock)
	if out != "unbanned 203.0.113.7\n" {
		t.Fatalf("unban: %q", out)
	}
	code, out, errs := run("unban", "203.0.113.7", sock)
	if code != 1 || out != "" || errs != "pbxgate: 203.0.113.7 is not on the blacklist (HTTP 404)\n" {
		t.Fatalf("second unban: exit %d, %q, %q", code, out, errs)
	}
	out = mustRun(t, "unban", "::ffff:198.51.100.0/120", "--json", sock)
	if !strings.HasPrefix(out, `{"list":"blacklist","address":"198.51.100.0/24"`) {
		t.Fatalf("unban --json: %s", out)
	}
}

// alignLike re-aligns a hand-written table the way tabwriter does, so the
// expected tables above can be written loosely: columns are split on two or
// more spaces.
func alignLike(s string) string {
	var buf bytes.Buffer
	tw := newTableWriter(&buf)
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		var cells []string
		for _, c := range strings.Split(line, "  ") {
			if c = strings.TrimSpace(c); c != "" {
				cells = append(cells, c)
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	return buf.String()
}

func TestAdminWhitelistCommands(t *testing.T) {
	e := startAdmin(t)
	sock := "--socket=" + e.Socket
	mustRun(t, "ban", "198.51.100.7", sock)
	out := mustRun(t, "allow", "198.51.100.0/24", "--for", "7d", "--note", "office", sock)
	if want := fmt.Sprintf("whitelisted 198.51.100.0/24 until %s (in 7d)\n", local(adminTestNow.Add(7*24*time.Hour))); out != want {
		t.Fatalf("allow: %q, want %q", out, want)
	}
	if out := mustRun(t, "bans", sock); out != "the blacklist is empty\n" {
		t.Fatalf("allow did not lift the ban inside it: %q", out)
	}
	out = mustRun(t, "whitelist", sock)
	if want := alignLike("ADDRESS  ORIGIN  EXPIRES  LEVEL  REASON/NOTE\n198.51.100.0/24  manual  in 7d  -  manual — office\n"); out != want {
		t.Fatalf("whitelist:\n%s\nwant\n%s", out, want)
	}
	if got, want := mustRun(t, "whitelist", "--json", sock), raw(t, e, "/api/v1/whitelist"); got != want {
		t.Fatalf("whitelist --json\n got %s\nwant %s", got, want)
	}
	if out := mustRun(t, "disallow", "198.51.100.0/24", sock); out != "removed 198.51.100.0/24 from the whitelist\n" {
		t.Fatalf("disallow: %q", out)
	}
	code, _, errs := run("disallow", "198.51.100.0/24", sock)
	if code != 1 || !strings.Contains(errs, "not on the whitelist") {
		t.Fatalf("second disallow: %d %q", code, errs)
	}
	e.Control.SetErr(fmt.Errorf("198.51.100.0/24: %w", fraud.ErrConfigEntry))
	code, _, errs = run("disallow", "198.51.100.0/24", sock)
	e.Control.SetErr(nil)
	if code != 1 || !strings.Contains(errs, "configuration file") {
		t.Fatalf("disallow of a config entry: %d %q", code, errs)
	}
}

func TestAdminInspectAndStats(t *testing.T) {
	e := startAdmin(t)
	sock := "--socket=" + e.Socket
	e.Control.Put(store.Entry{List: store.Blacklist, Prefix: netip.MustParsePrefix("203.0.113.7/32"), Origin: store.Auto,
		Reason: "21 weighted events in 1m", Evidence: []string{"rejected_by_service invalid_credentials user=\x1b[31mroot"},
		Created: adminTestNow, Expires: adminTestNow.Add(29*time.Minute + 30*time.Second), Level: 2})
	e.Control.SetInspect(fraud.SourceInfo{Score: 21, Threshold: 20, KnownUsers: 0, LastSeen: adminTestNow.Add(-90 * time.Second)})
	out := mustRun(t, "inspect", "203.0.113.7", sock)
	want := "" +
		"address      203.0.113.7\n" +
		"allowed      no, refused at connect\n" +
		"blacklisted  203.0.113.7 (auto, expires in 29m, level 2): 21 weighted events in 1m\n" +
		"               rejected_by_service invalid_credentials user=\\x1b[31mroot\n" +
		"whitelisted  no\n" +
		"score        21 of 20 in the last minute\n" +
		"known users  0\n" +
		"last seen    " + local(adminTestNow.Add(-90*time.Second)) + " (1m ago)\n"
	if out != want {
		t.Fatalf("inspect:\n%s\nwant:\n%s", out, want)
	}
	if got, want := mustRun(t, "inspect", "203.0.113.7", "--json", sock), raw(t, e, "/api/v1/sources/203.0.113.7"); got != want {
		t.Fatalf("inspect --json\n got %s\nwant %s", got, want)
	}

	e.Control.SetStats(fraud.Stats{EventsSeen: 1234, AutoBans: 5, ManualBans: 2, Blacklisted: 7, StoreErrors: 1})
	out = mustRun(t, "stats", sock)
	for _, line := range []string{"events seen                    1234\n", "automatic bans                 5\n", "manual bans                    2\n", "store errors                   1\n", "events lost by slow followers  0\n"} {
		if !strings.Contains(out, line) {
			t.Errorf("stats lacks %q:\n%s", line, out)
		}
	}
	if got, want := mustRun(t, "stats", "--json", sock), raw(t, e, "/api/v1/stats"); got != want {
		t.Fatalf("stats --json\n got %s\nwant %s", got, want)
	}
}

func TestAdminEvents(t *testing.T) {
	e := startAdmin(t)
	sock := "--socket=" + e.Socket
	src := netip.MustParseAddr("203.0.113.7")
	e.Events.Emit(event.Event{Time: adminTestNow.Add(-time.Minute), Kind: event.RejectedByService, Source: src, Listener: "web",
		Service: "portal", Proto: "http", Reason: event.ReasonStatus, User: "admin\x1b]0;pwned\x07", Detail: "401"})
	e.Events.Emit(event.Event{Time: adminTestNow, Kind: event.Success, Source: netip.MustParseAddr("192.0.2.1"), Listener: "ldaps", Proto: "ldap", Reason: event.ReasonOK})

	out := mustRun(t, "events", sock)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("events:\n%s", out)
	}
	for i, want := range [][]string{
		{"TIME", "KIND", "REASON", "SRC", "LISTENER", "SERVICE", "USER", "DETAIL"},
		{local(adminTestNow.Add(-time.Minute)), "rejected_by_service", "status", "203.0.113.7", "web", "portal", `admin\x1b]0;pwned\a`, "401"},
		{local(adminTestNow), "success", "ok", "192.0.2.1", "ldaps", "-", "-"},
	} {
		got := strings.Fields(lines[i])
		if i > 0 {
			got = append([]string{got[0] + " " + got[1]}, got[2:]...) // the time has a space
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("line %d: %q, want fields %q", i, lines[i], want)
		}
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Fatal("control characters from an event reach the terminal")
	}
	out = mustRun(t, "events", "--kind", "success", "--json", sock)
	if want := raw(t, e, "/api/v1/events?kind=success"); out != want {
		t.Fatalf("events --json\n got %s\nwant %s", out, want)
	}
	out = mustRun(t, "events", "--suspicious", "--since", "10m", "--source", "203.0.113.0/24", "--limit", "5", sock)
	if strings.Count(out, "\n") != 2 || !strings.Contains(out, "rejected_by_service") {
		t.Fatalf("filtered events:\n%s", out)
	}
}

func TestAdminEventsFollow(t *testing.T) {
	for _, jsonOut := range []bool{false, true} {
		t.Run(fmt.Sprint("json=", jsonOut), func(t *testing.T) {
			e := startAdmin(t)
			e.Events.Emit(event.Event{Time: adminTestNow, Kind: event.RejectedByGateway, Reason: event.ReasonDeniedPath, User: "old"})
			args := []string{"events", "--follow", "--kind", "rejected_by_gateway", "--socket", e.Socket}
			if jsonOut {
				args = append(args, "--json")
			}
			var out, errw syncBuffer
			done := make(chan int, 1)
			go func() { done <- Main(args, &out, &errw) }()
			waitFor(t, &out, "old")
			e.Events.Emit(event.Event{Time: adminTestNow, Kind: event.Success, User: "filtered"})
			e.Events.Emit(event.Event{Time: adminTestNow, Kind: event.RejectedByGateway, Reason: event.ReasonUnknownHost, User: "live"})
			waitFor(t, &out, "live")
			// pbxgate shutting down ends the stream: exit 1 with a message.
			if err := e.Server.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			select {
			case code := <-done:
				if code != 1 || !strings.Contains(errw.String(), "pbxgate ended the event stream") {
					t.Fatalf("exit %d, stderr %q", code, errw.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("events --follow did not end")
			}
			if strings.Contains(out.String(), "filtered") {
				t.Fatalf("filtered event printed:\n%s", out.String())
			}
			if jsonOut {
				lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
				if len(lines) != 2 || !strings.HasPrefix(lines[1], `{"time":"2025-03-01T12:00:00Z","kind":"rejected_by_gateway","reason":"unknown_host","user":"live"}`) {
					t.Fatalf("NDJSON:\n%s", out.String())
				}
			} else if !strings.HasPrefix(out.String(), "TIME ") {
				t.Fatalf("no header:\n%s", out.String())
			}
		})
	}
}

// waitFor waits until w holds s.
func waitFor(t *testing.T, w *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(w.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in output:\n%s", s, w.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAdminTokenRotate(t *testing.T) {
	e := startAdmin(t)
	code, out, errs := run("token", "rotate", "--socket", e.Socket)
	tok := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(tok, "pbxg_") || strings.Count(out, "\n") != 1 || !strings.Contains(errs, "shown only this once") {
		t.Fatalf("token rotate: exit %d, %q, %q", code, out, errs)
	}
	// The old token no longer works, the new one does.
	code, _, errs = run("stats", "--url", e.URL, "--token", e.Token)
	if code != 1 || errs != "pbxgate: unauthorized (HTTP 401)\n" {
		t.Fatalf("old token: %d %q", code, errs)
	}
	t.Setenv("PBXGATE_TOKEN", tok)
	mustRun(t, "stats", "--url", e.URL)
	// Rotation is refused over TCP.
	code, _, errs = run("token", "rotate", "--url", e.URL)
	if code != 1 || !strings.Contains(errs, "only available on the admin unix socket") {
		t.Fatalf("rotate over TCP: %d %q", code, errs)
	}
}

func TestAdminUsageErrors(t *testing.T) {
	e := startAdmin(t)
	sock := "--socket=" + e.Socket
	t.Setenv("PBXGATE_TOKEN", "")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"ban without address", []string{"ban", sock}, "accepts 1 arg(s)"},
		{"ban two addresses", []string{"ban", "192.0.2.1", "192.0.2.2", sock}, "accepts 1 arg(s)"},
		{"bad address", []string{"ban", "192.0.2.300", sock}, `"192.0.2.300" is not a network`},
		{"host bits", []string{"unban", "192.0.2.1/24", sock}, "did you mean 192.0.2.0/24?"},
		{"bad duration", []string{"allow", "192.0.2.1", "--for", "1 week", sock}, `--for: invalid duration "1 week"`},
		{"unknown flag", []string{"bans", "--adress", "x", sock}, "unknown flag: --adress"},
		{"inspect prefix", []string{"inspect", "192.0.2.0/24", sock}, "is not an IP address"},
		{"events since", []string{"events", "--since", "yesterday", sock}, "--since"},
		{"events kind", []string{"events", "--kind", "bad", sock}, "want one of"},
		{"events limit", []string{"events", "--limit", "20000", sock}, "from 1 to 10000"},
		{"url without token", []string{"stats", "--url", e.URL}, "--url needs --token"},
		{"bad url", []string{"stats", "--url", "ftp://x", "--token", "t"}, "want http://host:port"},
		{"token alone", []string{"token"}, "usage: pbxgate token rotate"},
		{"stats with args", []string{"stats", "x", sock}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := run(tt.args...)
			if code != 2 || out != "" || !strings.Contains(errs, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errs, tt.want)
			}
		})
	}
}

func TestAdminUnreachable(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	code, out, errs := run("bans", "--socket", sock)
	if code != 1 || out != "" || errs != "pbxgate: cannot reach pbxgate at "+sock+": is it running?\n" {
		t.Fatalf("exit %d, %q, %q", code, out, errs)
	}
}

func TestAdminConfigFile(t *testing.T) {
	e := startAdmin(t)
	dir := t.TempDir()
	write := func(admin string) string {
		p := filepath.Join(dir, "pbxgate.yaml")
		cfg := "data_dir: " + dir + "\n" +
			"listeners:\n  - name: web\n    address: \":8080\"\n" +
			"services:\n  - name: app\n    protocol: http\n    hosts: [app.example.com]\n    backend:\n      address: 127.0.0.1:3000\n" +
			admin
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mustRun(t, "ban", "192.0.2.1", "--socket", e.Socket)

	file := write("admin:\n  socket: " + e.Socket + "\n")
	if out := mustRun(t, "bans", "-c", file); !strings.Contains(out, "192.0.2.1") {
		t.Fatalf("bans via the config's socket:\n%s", out)
	}

	// Socket off: the TCP address, with the token.
	file = write("admin:\n  socket: \"off\"\n  address: " + strings.TrimPrefix(e.URL, "http://") + "\n")
	t.Setenv("PBXGATE_TOKEN", "")
	code, _, errs := run("bans", "--config", file)
	if code != 1 || !strings.Contains(errs, "the admin socket is off") || !strings.Contains(errs, "PBXGATE_TOKEN") {
		t.Fatalf("socket off without token: %d %q", code, errs)
	}
	if out := mustRun(t, "bans", "--config", file, "--token", e.Token); !strings.Contains(out, "192.0.2.1") {
		t.Fatalf("bans via the config's address:\n%s", out)
	}

	// The default socket under data_dir when the config names none.
	file = write("")
	code, _, errs = run("bans", "-c", file)
	if want := "cannot reach pbxgate at " + filepath.Join(dir, "admin.sock"); code != 1 || !strings.Contains(errs, want) {
		t.Fatalf("default socket: %d %q, want %q", code, errs, want)
	}

	// A configuration that cannot be read says what to do instead.
	code, _, errs = run("bans", "-c", filepath.Join(dir, "missing.yaml"))
	if code != 1 || !strings.Contains(errs, "pass --socket PATH or --url URL") {
		t.Fatalf("missing config: %d %q", code, errs)
	}
}

func TestAdminURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9190": "http://127.0.0.1:9190",
		":9190":          "http://127.0.0.1:9190",
		"0.0.0.0:9190":   "http://127.0.0.1:9190",
		"[::]:9190":      "http://[::1]:9190",
		"10.0.0.5:9190":  "http://10.0.0.5:9190",
		"admin.lan:9190": "http://admin.lan:9190",
	} {
		if got, err := adminURL(in); err != nil || got != want {
			t.Errorf("adminURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := adminURL("9190"); err == nil {
		t.Error("adminURL accepted an address without port")
	}
}

func TestOutputHelpers(t *testing.T) {
	for d, want := range map[time.Duration]string{
		45 * time.Second: "45s", 29*time.Minute + 59*time.Second: "29m", 5*time.Hour + 30*time.Minute: "5h30m",
		2 * time.Hour: "2h", 47 * time.Hour: "47h", 7 * 24 * time.Hour: "7d", 6*24*time.Hour + 23*time.Hour: "6d23h",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
	now := adminTestNow
	for _, tt := range []struct {
		exp  time.Time
		want string
	}{{time.Time{}, "never"}, {now, "expired"}, {now.Add(-time.Hour), "expired"}, {now.Add(90 * time.Second), "in 1m"}} {
		if got := expiresText(tt.exp, now); got != tt.want {
			t.Errorf("expiresText(%v) = %q, want %q", tt.exp, got, tt.want)
		}
	}
	for in, want := range map[string]string{
		"plain": "plain", "tab\there": `tab\there`, "esc\x1b[0m": `esc\x1b[0m`, "bad\xffutf8": `bad\xffutf8`,
		"rtl\u202eoverride": `rtl\u202eoverride`, "üñí": "üñí", strings.Repeat("x", 25): strings.Repeat("x", 20) + "…",
	} {
		if got := safe(in, 20); got != want {
			t.Errorf("safe(%q) = %q, want %q", in, got, want)
		}
	}
}
