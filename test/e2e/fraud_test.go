package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fraudConfig is a gateway in front of one login service, with a low
// threshold so tests ban quickly.
const fraudConfig = `data_dir: {{.DataDir}}
listeners:
  - name: web
    address: {{.Web}}
    protocols: [http]
services:
  - name: portal
    protocol: http
    hosts: [portal.test]
    backend: {address: {{.Backend}}}
fraud:
  suspicious_per_minute: {{.Threshold}}
  blacklist_for: 10m
  refused_hold: 1s
  whitelist: [127.0.0.99]
admin:
  address: {{.Admin}}
`

// loginBackend answers /login with 200 for a user and password it knows
// (HTTP basic authentication) and 401 otherwise, like a PBX portal.
func loginBackend(t testing.TB, users map[string]string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || users[u] != p || p == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="pbx"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "welcome %s\n", u)
	}))
	t.Cleanup(srv.Close)
	return addrOf(srv)
}

// login runs curl from the loopback address src against the gateway at addr.
func login(t testing.TB, src, addr, user, pass string) curlResult {
	t.Helper()
	flag, url := resolve("http", "portal.test", addr, "/login")
	args := []string{"--interface", src, "--resolve", flag}
	if user != "" {
		args = append(args, "-u", user+":"+pass)
	}
	return curl(t, append(args, url)...)
}

// refusedAtAccept asserts that a connection from src is closed by the
// gateway before it answers anything: held unanswered for
// fraud.refused_hold (the configs here use 1s) and reset, or closed at once.
func refusedAtAccept(t testing.TB, src, addr string) {
	t.Helper()
	if r := tryRefused(src, addr); len(r.got) > 0 {
		t.Fatalf("connection from %s got %q, want it closed unanswered", src, r.got)
	} else if r.timedOut() {
		t.Fatalf("connection from %s stayed open, want it refused at accept", src)
	}
}

// refusal is how a connection from a banned source ended.
type refusal struct {
	got  []byte        // what it read
	err  error         // what ended the read (or the dial)
	open time.Duration // from the dial to the end
}

func (r refusal) timedOut() bool {
	var ne net.Error
	return errors.As(r.err, &ne) && ne.Timeout()
}

// tryRefused sends a request from src to addr and reads until the
// connection ends, for at most 5s.
func tryRefused(src, addr string) refusal {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	start := time.Now()
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return refusal{err: err} // refused outright is fine too
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("GET /login HTTP/1.1\r\nHost: portal.test\r\n\r\n"))
	b, err := io.ReadAll(c)
	return refusal{got: b, err: err, open: time.Since(start)}
}

// kill ends the process with SIGKILL: no drain, no clean close of the store.
func (p *proc) kill() {
	p.t.Helper()
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	_ = p.cmd.Process.Kill()
	<-p.done
}

// adminToken returns the token a first start printed.
func (g *gateway) adminToken() string {
	g.t.Helper()
	l := g.waitLogContains("admin API token created")
	i := strings.Index(l["msg"], "pbxg_")
	if i < 0 {
		g.t.Fatalf("no token in %q", l["msg"])
	}
	return strings.Fields(l["msg"][i:])[0]
}

// cli runs a pbxgate admin command against the gateway's configuration and
// fails the test when it does not exit 0.
func (g *gateway) cli(args ...string) string {
	g.t.Helper()
	out, errOut, code := run(g.t, cleanEnv(), pbxgateBin, append(args, "-c", g.config)...)
	if code != 0 {
		g.t.Fatalf("pbxgate %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

type entryJSON struct {
	Address  string    `json:"address"`
	Origin   string    `json:"origin"`
	Reason   string    `json:"reason"`
	Evidence []string  `json:"evidence"`
	Note     string    `json:"note"`
	Count    int       `json:"count"`
	Level    int       `json:"level"`
	Expires  time.Time `json:"expires"`
}

func (g *gateway) entries(list string) map[string]entryJSON {
	g.t.Helper()
	var doc struct {
		Entries []entryJSON `json:"entries"`
	}
	out := g.cli(list, "--json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		g.t.Fatalf("pbxgate %s --json: %v\n%s", list, err, out)
	}
	m := make(map[string]entryJSON)
	for _, e := range doc.Entries {
		m[e.Address] = e
	}
	return m
}

func TestFraudBanLifecycle(t *testing.T) {
	t.Parallel()
	web, adminAddr := freeAddr(t), freeAddr(t)
	conf := render(t, fraudConfig, map[string]any{
		"Web": web, "Admin": adminAddr, "Threshold": 5,
		"Backend": loginBackend(t, map[string]string{"alice": "secret"}),
	})
	g := startGateway(t, conf)
	token := g.adminToken()

	// Brute force from .77: five wrong passwords are tolerated, the sixth
	// bans. The answers are 401 until then.
	for i := range 5 {
		if r := login(t, "127.0.0.77", web, "alice", fmt.Sprint("guess", i)); r.Status != 401 {
			t.Fatalf("attempt %d: status %d, want 401", i, r.Status)
		}
	}
	login(t, "127.0.0.77", web, "alice", "guess5")
	g.waitLog(map[string]string{"msg": "source banned", "src": "127.0.0.77"})
	if r := login(t, "127.0.0.77", web, "alice", "secret"); r.Status != 0 {
		t.Errorf("banned source got status %d, want no answer", r.Status)
	}

	// Refused, a connection is held open, unanswered, for
	// fraud.refused_hold (1s), counted in the metrics, and then reset.
	t.Run("refused connections are held, then reset", func(t *testing.T) {
		ended := make(chan refusal, 1)
		go func() { ended <- tryRefused("127.0.0.77", web) }()
		seen := false
		for deadline := time.Now().Add(time.Second); !seen && time.Now().Before(deadline); {
			r := curl(t, "http://"+adminAddr+"/metrics")
			seen = strings.Contains(r.Body, "\npbxgate_refused_connections_held 1\n")
		}
		r := <-ended
		if !seen {
			t.Error("pbxgate_refused_connections_held never showed the held connection")
		}
		if len(r.got) > 0 || !errors.Is(r.err, syscall.ECONNRESET) || r.open < 900*time.Millisecond {
			t.Errorf("refused connection read %q, ended with %v after %v; want nothing, then a reset after the 1s hold", r.got, r.err, r.open)
		}
	})

	t.Run("listed with its reason", func(t *testing.T) {
		out := g.cli("bans")
		if !strings.Contains(out, "127.0.0.77") || !strings.Contains(out, "auto") {
			t.Errorf("bans table lacks the automatic ban:\n%s", out)
		}
		e, ok := g.entries("bans")["127.0.0.77"]
		switch {
		case !ok:
			t.Fatal("127.0.0.77 not in bans --json")
		case e.Origin != "auto" || e.Level != 1 || e.Count < 6:
			t.Errorf("entry %+v, want origin auto, level 1, count >= 6", e)
		case !strings.Contains(e.Reason, "rejected_by_service"):
			t.Errorf("reason %q does not name the events", e.Reason)
		case len(e.Evidence) == 0 || !strings.Contains(e.Evidence[len(e.Evidence)-1], "alice"):
			t.Errorf("evidence %q does not quote the events", e.Evidence)
		case time.Until(e.Expires) < 9*time.Minute || time.Until(e.Expires) > 11*time.Minute:
			t.Errorf("expires %v, want in about 10m", e.Expires)
		}
		out = g.cli("events", "--source", "127.0.0.77", "--json")
		if strings.Count(out, `"rejected_by_service"`) < 5 {
			t.Errorf("events for 127.0.0.77 lack the refusals:\n%s", out)
		}
	})

	t.Run("admin API over TCP", func(t *testing.T) {
		base := "http://" + adminAddr
		r := curl(t, "-H", "Authorization: Bearer "+token, base+"/api/v1/blacklist")
		if r.Status != 200 || !strings.Contains(r.Body, `"127.0.0.77"`) {
			t.Errorf("blacklist with token: %d %s", r.Status, r.Body)
		}
		if r := curl(t, "-H", "Authorization: Bearer pbxg_wrong", base+"/api/v1/blacklist"); r.Status != 401 {
			t.Errorf("wrong token: %d, want 401", r.Status)
		}
		g.waitEvent(map[string]string{"reason": "admin_auth", "src": "127.0.0.1"})
		for path, want := range map[string]string{
			"/healthz": `"ok"`,
			"/readyz":  `"ok"`,
			"/metrics": `pbxgate_fraud_bans_total{origin="auto"} 1`,
		} {
			if r := curl(t, base+path); r.Status != 200 || !strings.Contains(r.Body, want) {
				t.Errorf("%s: %d, want 200 with %q:\n%.2000s", path, r.Status, want, r.Body)
			}
		}
	})

	t.Run("ban closes open connections", func(t *testing.T) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.81")}}
		c, err := d.Dial("tcp", web)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("GET /login HTTP/1.1\r\nHost: portal.test\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		if n, err := c.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "401") {
			t.Fatalf("keep-alive request: %q %v", buf[:n], err)
		}
		g.cli("ban", "127.0.0.81", "--note", "e2e")
		if n, err := c.Read(buf); err == nil || n > 0 {
			t.Errorf("open connection still served after the ban: %q", buf[:n])
		}
	})

	t.Run("manual CIDR ban", func(t *testing.T) {
		g.cli("ban", "127.0.1.0/24", "--for", "1h", "--note", "office network under attack")
		refusedAtAccept(t, "127.0.1.5", web)
		e := g.entries("bans")["127.0.1.0/24"]
		if e.Origin != "manual" || e.Note != "office network under attack" || time.Until(e.Expires) < 59*time.Minute {
			t.Errorf("entry %+v", e)
		}
		g.cli("unban", "127.0.1.0/24")
		if r := login(t, "127.0.1.5", web, "alice", "secret"); r.Status != 200 {
			t.Errorf("after unban: %d, want 200", r.Status)
		}
	})

	t.Run("whitelist is never banned", func(t *testing.T) {
		for range 12 {
			if r := login(t, "127.0.0.99", web, "alice", "wrong"); r.Status != 401 {
				t.Fatalf("whitelisted source: %d, want 401", r.Status)
			}
		}
		if _, banned := g.entries("bans")["127.0.0.99"]; banned {
			t.Error("whitelisted source was banned")
		}
	})

	t.Run("allow turns a ban into a whitelist entry", func(t *testing.T) {
		for range 6 {
			login(t, "127.0.0.80", web, "alice", "stale")
		}
		g.waitLog(map[string]string{"msg": "source banned", "src": "127.0.0.80"})
		g.cli("allow", "127.0.0.80", "--note", "phone with a stale password")
		if r := login(t, "127.0.0.80", web, "alice", "secret"); r.Status != 200 {
			t.Errorf("allowed source: %d, want 200", r.Status)
		}
		if _, banned := g.entries("bans")["127.0.0.80"]; banned {
			t.Error("ban still listed after allow")
		}
		if e := g.entries("whitelist")["127.0.0.80"]; e.Note != "phone with a stale password" {
			t.Errorf("whitelist entry %+v", e)
		}
		g.cli("disallow", "127.0.0.80")
	})

	t.Run("bans survive kill -9", func(t *testing.T) {
		g.kill()
		g2 := startGateway(t, conf)
		refusedAtAccept(t, "127.0.0.77", web)
		refusedAtAccept(t, "127.0.0.81", web)
		bans := g2.entries("bans")
		if _, ok := bans["127.0.0.77"]; !ok {
			t.Errorf("automatic ban lost by kill -9: %v", bans)
		}
		if strings.Contains(g2.stderr.String(), "token created") {
			t.Error("a second start made a new admin token")
		}
		g2.cli("unban", "127.0.0.77")
		if r := login(t, "127.0.0.77", web, "alice", "secret"); r.Status != 200 {
			t.Errorf("after unban: %d, want 200", r.Status)
		}
	})
}

// TestFraudNATOffice is the acceptance scenario of NAT-aware scoring: an
// office of 60 phones behind one address logs in again after an outage,
// with a few mistyped passwords, and is not banned; a scanner behind the
// same address trying users that never logged in from there is.
func TestFraudNATOffice(t *testing.T) {
	t.Parallel()
	users := make(map[string]string)
	for i := 1; i <= 63; i++ {
		users[fmt.Sprintf("ext%d", 100+i)] = fmt.Sprintf("pw-%d", i)
	}
	web := freeAddr(t)
	conf := render(t, fraudConfig, map[string]any{
		"Web": web, "Admin": freeAddr(t), "Threshold": 10, "Backend": loginBackend(t, users),
	})
	g := startGateway(t, conf)
	const office = "127.0.0.90"

	// One curl run, many requests (--next), like phones sharing a NAT.
	type req struct{ user, pass string }
	many := func(reqs []req) []string {
		t.Helper()
		bin := needBinary(t, "curl", "curl")
		flag, url := resolve("http", "portal.test", web, "/login")
		var args []string
		for i, r := range reqs {
			if i > 0 {
				args = append(args, "--next")
			}
			args = append(args, "-s", "-o", os.DevNull, "-w", "%{http_code}\n", "--noproxy", "*", "--max-time", "10",
				"--interface", office, "--resolve", flag)
			if r.user != "" {
				args = append(args, "-u", r.user+":"+r.pass)
			}
			args = append(args, url)
		}
		out, errOut, _ := run(t, cleanEnv(), bin, args...)
		codes := strings.Fields(out)
		if len(codes) != len(reqs) {
			t.Fatalf("curl printed %d codes for %d requests: %s %s", len(codes), len(reqs), out, errOut)
		}
		return codes
	}
	count := func(codes []string, code string) int {
		n := 0
		for _, c := range codes {
			if c == code {
				n++
			}
		}
		return n
	}

	// After the outage: every phone is asked to log in (a 401 without
	// credentials is a prompt, not a failure), then logs in.
	var reqs []req
	for i := 1; i <= 60; i++ {
		u := fmt.Sprintf("ext%d", 100+i)
		reqs = append(reqs, req{}, req{u, users[u]})
	}
	if codes := many(reqs); count(codes, "200") != 60 || count(codes, "401") != 60 {
		t.Fatalf("re-registration: %d × 200 and %d × 401, want 60 each", count(codes, "200"), count(codes, "401"))
	}
	// A few mistyped passwords: five from phones that logged in, three from
	// users that have not logged in from here yet.
	reqs = nil
	for i := 1; i <= 5; i++ {
		reqs = append(reqs, req{fmt.Sprintf("ext%d", 100+i), "typo"})
	}
	for i := 61; i <= 63; i++ {
		reqs = append(reqs, req{fmt.Sprintf("ext%d", 100+i), "typo"})
	}
	if codes := many(reqs); count(codes, "401") != len(reqs) {
		t.Fatalf("mistyped passwords: %v, want all 401", codes)
	}
	if r := login(t, office, web, "ext101", "pw-1"); r.Status != 200 {
		t.Fatalf("the office was locked out: status %d", r.Status)
	}
	if strings.Contains(g.stderr.String(), "source banned") {
		t.Fatalf("the office was banned:\n%s", g.stderr.String())
	}

	// A scanner behind the same address tries users that never logged in
	// from there: those count in full.
	reqs = nil
	for _, u := range []string{"admin", "root", "100", "1000", "test", "guest", "sip", "asterisk", "operator", "support", "info"} {
		reqs = append(reqs, req{u, "123456"})
	}
	codes := many(reqs)
	if count(codes, "401") >= len(reqs) {
		t.Errorf("scanner got %v: never cut off", codes)
	}
	g.waitLog(map[string]string{"msg": "source banned", "src": office})
	refusedAtAccept(t, office, web)
}

func TestBackupRestore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	web := freeAddr(t)
	conf := render(t, fraudConfig, map[string]any{
		"Web": web, "Admin": freeAddr(t), "Threshold": 10,
		"Backend": loginBackend(t, map[string]string{"alice": "secret"}),
	})
	g := startGateway(t, conf)
	g.cli("ban", "127.0.2.7", "--note", "kept by the backup")
	g.cli("allow", "127.0.2.8")

	live := dir + "/live.tar.gz"
	if out, errOut, code := pbxgate(t, "backup", "-c", g.config, "-o", live); code != 0 {
		t.Fatalf("backup of a running pbxgate: exit %d\n%s%s", code, out, errOut)
	}
	restoreWhileRunning := func() {
		t.Helper()
		_, errOut, code := pbxgate(t, "restore", "-c", g.config, live)
		if code == 0 || !strings.Contains(errOut, "stop pbxgate first") {
			t.Errorf("restore while running: exit %d, want a refusal:\n%s", code, errOut)
		}
	}
	restoreWhileRunning()

	// Change the state after the backup, then stop.
	g.cli("unban", "127.0.2.7")
	g.stop()
	stopped := dir + "/stopped.tar.gz"
	if out, errOut, code := pbxgate(t, "backup", "-c", g.config, "-o", stopped); code != 0 {
		t.Fatalf("backup of a stopped pbxgate: exit %d\n%s%s", code, out, errOut)
	}

	// A damaged archive is refused and changes nothing.
	raw, err := os.ReadFile(live)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), raw...)
	bad[len(bad)/2] ^= 0xff
	badPath := writeFile(t, dir, "bad.tar.gz", string(bad))
	before, _ := os.ReadFile(g.config)
	if _, errOut, code := pbxgate(t, "restore", "-c", g.config, badPath); code == 0 || !strings.Contains(errOut, "restore:") {
		t.Errorf("damaged archive: exit %d:\n%s", code, errOut)
	}
	if _, errOut, code := pbxgate(t, "restore", "-c", g.config, writeFile(t, dir, "garbage.tar.gz", "not an archive")); code == 0 {
		t.Errorf("garbage archive accepted:\n%s", errOut)
	}
	if after, _ := os.ReadFile(g.config); !bytes.Equal(before, after) {
		t.Error("a refused restore changed the configuration")
	}

	// The live backup brings the ban back.
	if out, errOut, code := pbxgate(t, "restore", "-c", g.config, live); code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", code, out, errOut)
	}
	g2 := startGateway(t, conf)
	if e, ok := g2.entries("bans")["127.0.2.7"]; !ok || e.Note != "kept by the backup" {
		t.Errorf("restored bans lack 127.0.2.7: %+v", g2.entries("bans"))
	}
	if _, ok := g2.entries("whitelist")["127.0.2.8"]; !ok {
		t.Error("restored whitelist lacks 127.0.2.8")
	}
	refusedAtAccept(t, "127.0.2.7", web)
}
