package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TURN through the real binary: coturn's turnutils_stunclient and
// turnutils_uclient (Debian coturn) as the clients, turnutils_peer as the
// peer the relay talks to. Summaries of uclient runs against coturn's own
// turnserver, which the parser is checked on, are in testdata/turn.

// turnConfig is a gateway carrying TURN on UDP and TCP sharing one port and
// on TLS with the self-signed certificate generated into the data dir.
const turnConfig = `data_dir: {{.DataDir}}
listeners:
  - {name: turn-udp, address: "{{.Addr}}", transport: udp, protocols: [turn]}
  - {name: turn-tcp, address: "{{.Addr}}", protocols: [turn]}
  - {name: turn-tls, address: "{{.TLS}}", tls: required, protocols: [turn]}
turn:
  realm: {{.Realm}}
  public_addresses: [127.0.0.1]
  relay_ports: {min: {{.RelayMin}}, max: {{.RelayMax}}}
  users:
    - {name: alice, key: "{{.AliceKey}}"}
  rest_secrets: ["{{.Secret}}"]
{{- if .AllowLoopback}}
  allow_peers: [127.0.0.0/8]
{{- end}}
admin:
  address: {{.Admin}}
{{.Fraud}}`

// Credentials of turnConfig.
const (
	turnRealm     = "example.org"
	turnSecret    = "e2e-turn-rest-secret-0123456789"
	turnAlicePass = "alice-pw"
)

// Time limits of TURN clients.
const (
	uclientTimeout = 30 * time.Second // a uclient run that is expected to end
	// silenceTimeout is how long a client that should get no answer is
	// given: pbxgate answers loopback within milliseconds.
	silenceTimeout = 3 * time.Second
)

// turnGateway is a running pbxgate with turnConfig.
type turnGateway struct {
	*gateway
	addr     string // UDP and TCP listeners
	tls      string // TLS listener
	admin    string // admin API
	dataDir  string
	relayMin int
	relayMax int
}

// turnOpts vary turnConfig.
type turnOpts struct {
	allowLoopback bool   // allow_peers: [127.0.0.0/8]
	fraud         string // a fraud: section; empty: render's whitelisted loopback
}

// startTURN starts a gateway with turnConfig.
func startTURN(t testing.TB, o turnOpts) *turnGateway {
	t.Helper()
	g := &turnGateway{addr: freeAddr(t), tls: freeAddr(t), admin: freeAddr(t), dataDir: t.TempDir()}
	g.relayMin, g.relayMax = relayRange()
	conf := render(t, turnConfig, map[string]any{
		"DataDir": g.dataDir, "Addr": g.addr, "TLS": g.tls, "Admin": g.admin,
		"Realm": turnRealm, "Secret": turnSecret, "AliceKey": longTermKey("alice", turnRealm, turnAlicePass),
		"RelayMin": g.relayMin, "RelayMax": g.relayMax,
		"AllowLoopback": o.allowLoopback, "Fraud": o.fraud,
	})
	g.gateway = startGateway(t, conf)
	return g
}

// relayRange returns a relay port range of its own for each gateway, above
// the kernel's ephemeral range (never handed out implicitly, so client
// sockets cannot take them) and below 65536.
func relayRange() (lo, hi int) {
	const width = 100
	relayMu.Lock()
	defer relayMu.Unlock()
	base := max(ephemeralHigh()+1, 61000)
	n := (65535 - base + 1) / width
	lo = base + (relayNext%n)*width
	relayNext++
	return lo, lo + width - 1
}

var (
	relayMu   sync.Mutex
	relayNext int
)

// ephemeralHigh is the last port of the kernel's ephemeral range.
func ephemeralHigh() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 60999
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 60999
	}
	n, err := strconv.Atoi(f[1])
	if err != nil || n > 65000 {
		return 60999
	}
	return n
}

// longTermKey is the hex long-term key of RFC 5389 §15.4: MD5 of
// "user:realm:password", computed here independently of pbxgate.
func longTermKey(user, realm, pass string) string {
	sum := md5.Sum([]byte(user + ":" + realm + ":" + pass))
	return hex.EncodeToString(sum[:])
}

// restCredential is a TURN REST API pair: username "<expiry>:<user>" and
// password base64(HMAC-SHA1(secret, username)).
func restCredential(secret, user string, expiry time.Time) (username, password string) {
	username = strconv.FormatInt(expiry.Unix(), 10) + ":" + user
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// job is an external program running in the background with a time limit.
// The clients are started side by side and waited for one by one: a
// uclient run takes a few seconds of waiting, and `go test` runs only
// GOMAXPROCS parallel tests at once.
type job struct {
	name string
	args []string
	done chan struct{} // closed once the program has ended

	// Set before done is closed.
	out      bytes.Buffer // standard output and error
	code     int          // exit code; -1 when killed
	timedOut bool         // killed at the time limit
	err      error        // it could not run to its end
}

// startJob starts a program that is killed after timeout, or at cleanup.
// Stdin is given when not empty.
func startJob(t testing.TB, timeout time.Duration, stdin, name string, args ...string) *job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = cleanEnv()
	j := &job{name: name, args: args, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &j.out, &j.out
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		defer close(j.done)
		err := cmd.Wait()
		j.timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			j.code = ee.ExitCode()
		default:
			j.err = err
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-j.done
	})
	return j
}

// wait waits for the program's end and returns its output, its exit code
// (-1 when killed) and whether the time limit ended it.
func (j *job) wait(t testing.TB) (out string, code int, timedOut bool) {
	t.Helper()
	<-j.done
	if j.err != nil {
		t.Fatalf("%s: %v", j.name, j.err)
	}
	return j.out.String(), j.code, j.timedOut
}

// runBounded runs a program for at most timeout; see job.wait.
func runBounded(t testing.TB, timeout time.Duration, stdin, name string, args ...string) (out string, code int, timedOut bool) {
	t.Helper()
	return startJob(t, timeout, stdin, name, args...).wait(t)
}

// uclient is one turnutils_uclient run.
type uclient struct {
	transport string // "udp" (default), "tcp" or "tls"
	server    string // host:port of the TURN listener
	local     string // source address (-L); empty: any
	user      string // -u
	password  string // -w; empty with secret set
	secret    string // -W: uclient makes its own REST credential
	peer      string // host:port of the peer; empty with pairs or tcpRelay
	packets   int    // per client (-n)
	clients   int    // -m
	send      bool   // -s: send indications instead of channels
	pairs     bool   // -y: clients relay to each other's relayed address
	tcpRelay  bool   // -T: TCP allocations (RFC 6062) between client pairs
	hang      bool   // -h: keep the allocations after the last packet
}

func (u uclient) args() []string {
	host, port, _ := net.SplitHostPort(u.server)
	a := []string{"-c", "-p", port,
		"-n", strconv.Itoa(max(u.packets, 1)), "-m", strconv.Itoa(max(u.clients, 1)),
		"-l", "120", "-z", "5", "-u", u.user}
	if u.peer != "" {
		peerHost, peerPort, _ := net.SplitHostPort(u.peer)
		a = append(a, "-e", peerHost, "-r", peerPort)
	}
	switch u.transport {
	case "tcp":
		a = append(a, "-t")
	case "tls":
		a = append(a, "-t", "-S")
	}
	if u.secret != "" {
		a = append(a, "-W", u.secret)
	} else {
		a = append(a, "-w", u.password)
	}
	for _, f := range []struct {
		on   bool
		flag string
	}{{u.local != "", "-L"}, {u.send, "-s"}, {u.pairs, "-y"}, {u.tcpRelay, "-T"}, {u.hang, "-h"}} {
		if f.on {
			a = append(a, f.flag)
			if f.flag == "-L" {
				a = append(a, u.local)
			}
		}
	}
	return append(a, host)
}

// uclientResult is what a uclient run printed.
type uclientResult struct {
	out      string
	exit     int
	timedOut bool
	summary  uclientSummary
}

// run runs uclient to its end, or to timeout.
func (u uclient) run(t testing.TB, timeout time.Duration) uclientResult {
	t.Helper()
	return u.start(t, timeout).wait(t)
}

// uclientJob is a uclient running in the background.
type uclientJob struct {
	u uclient
	j *job
}

// start starts uclient in the background, killed after timeout or at
// cleanup (with hang set it never ends by itself).
func (u uclient) start(t testing.TB, timeout time.Duration) uclientJob {
	t.Helper()
	bin := needBinary(t, "turnutils_uclient", "coturn")
	return uclientJob{u: u, j: startJob(t, timeout, "", bin, u.args()...)}
}

// wait waits for uclient's end.
func (r uclientJob) wait(t testing.TB) uclientResult {
	t.Helper()
	out, code, timedOut := r.j.wait(t)
	return uclientResult{out: out, exit: code, timedOut: timedOut, summary: parseUclient(out)}
}

// relayed asserts that uclient ended well and that every packet it sent
// came back from the peer through the relay.
func (r uclientJob) relayed(t testing.TB) uclientResult {
	t.Helper()
	res := r.wait(t)
	want := max(r.u.packets, 1) * max(r.u.clients, 1)
	s := res.summary
	if res.timedOut || res.exit != 0 || !s.ok || s.sent != want || s.received != s.sent || s.lost != 0 {
		t.Fatalf("uclient %s: exit %d (timed out: %v), summary %+v; want %d sent, all received:\n%s",
			strings.Join(r.u.args(), " "), res.exit, res.timedOut, s, want, clipTail(res.out, 3000))
	}
	return res
}

// uclientSummary is the end of a uclient run's output.
type uclientSummary struct {
	ok       bool // the totals were printed
	sent     int  // packets sent by all clients
	received int  // packets that came back
	lost     int
}

var (
	uclientTotals = regexp.MustCompile(`(?m)start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$`)
	uclientLost   = regexp.MustCompile(`(?m)Total lost packets (\d+) `)
)

// parseUclient reads the totals uclient prints at its end:
//
//	5: : start_mclient: tot_send_msgs=40, tot_recv_msgs=40
//	5: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
//
// (The periodic "msz=..." progress lines are not totals.)
func parseUclient(out string) uclientSummary {
	var s uclientSummary
	m := uclientTotals.FindAllStringSubmatch(out, -1)
	l := uclientLost.FindAllStringSubmatch(out, -1)
	if len(m) == 0 || len(l) == 0 {
		return s
	}
	last := m[len(m)-1]
	s.sent, _ = strconv.Atoi(last[1])
	s.received, _ = strconv.Atoi(last[2])
	s.lost, _ = strconv.Atoi(l[len(l)-1][1])
	s.ok = true
	return s
}

func TestTURNUclientSummary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file string
		want uclientSummary
	}{
		{"uclient-relayed.txt", uclientSummary{ok: true, sent: 40, received: 40}},
		{"uclient-relayed-tcp.txt", uclientSummary{ok: true, sent: 10, received: 10}},
		{"uclient-no-peer.txt", uclientSummary{ok: true, sent: 10, received: 0, lost: 10}},
		{"uclient-peer-denied.txt", uclientSummary{}},
		{"uclient-unauthorized.txt", uclientSummary{}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "turn", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if got := parseUclient(string(b)); got != tc.want {
				t.Errorf("parseUclient = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// stunclient runs turnutils_stunclient from local (any address when empty)
// against the UDP listener at server and returns its output, and whether
// it got no answer within silenceTimeout.
func stunclient(t testing.TB, server, local string) (out string, silent bool) {
	t.Helper()
	return startStunclient(t, server, local).wait(t)
}

// stunJob is a turnutils_stunclient running in the background.
type stunJob struct{ j *job }

// startStunclient starts stunclient in the background; see stunclient.
func startStunclient(t testing.TB, server, local string) stunJob {
	t.Helper()
	bin := needBinary(t, "turnutils_stunclient", "coturn")
	host, port, _ := net.SplitHostPort(server)
	args := []string{"-p", port}
	if local != "" {
		args = append(args, "-L", local)
	}
	return stunJob{startJob(t, silenceTimeout, "", bin, append(args, host)...)}
}

// wait waits for stunclient's end: an answer, or silenceTimeout.
func (s stunJob) wait(t testing.TB) (out string, silent bool) {
	t.Helper()
	out, code, timedOut := s.j.wait(t)
	if !timedOut && code != 0 {
		t.Fatalf("turnutils_stunclient %s: exit %d:\n%s", strings.Join(s.j.args, " "), code, out)
	}
	return out, timedOut
}

var stunReflexive = regexp.MustCompile(`UDP reflexive addr: (\S+)`)

// startTurnPeer starts turnutils_peer, a UDP echo server, on ip and a free
// port, waits until it echoes, and returns its address. It is stopped at
// cleanup.
func startTurnPeer(t testing.TB, ip string) string {
	t.Helper()
	bin := needBinary(t, "turnutils_peer", "coturn")
	addr := net.JoinHostPort(ip, portOf(freeAddr(t)))
	cmd := exec.Command(bin, "-L", ip, "-p", portOf(addr))
	cmd.Env = cleanEnv()
	out := newLogBuffer()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting turnutils_peer: %v", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("turnutils_peer on %s:\n%s", addr, clipTail(out.String(), 2000))
		}
	})
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("turnutils_peer on %s exited:\n%s", addr, out.String())
		default:
		}
		_, _ = c.Write([]byte("ping"))
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == "ping" {
			return addr
		}
	}
	t.Fatalf("turnutils_peer on %s does not echo within %v", addr, startTimeout)
	return ""
}

// stunBinding sends a STUN Binding request over the stream c and returns
// the XOR-MAPPED-ADDRESS of the answer.
func stunBinding(t testing.TB, c net.Conn) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := c.Write(req.Raw); err != nil {
		t.Fatalf("binding request: %v", err)
	}
	head := make([]byte, 20)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatalf("binding answer: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(head[2:4]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("binding answer: %v", err)
	}
	res := &stun.Message{Raw: append(head, body...)}
	if err := res.Decode(); err != nil {
		t.Fatalf("binding answer: %v", err)
	}
	if res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
		t.Fatalf("binding answer is %v, want a success to our transaction", res.Type)
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(res); err != nil {
		t.Fatalf("binding answer without XOR-MAPPED-ADDRESS: %v", err)
	}
	return xor.String()
}

// metricSum returns the sum of every series of the metric name (all label
// sets) on the gateway's /metrics, and whether the metric is there.
func metricSum(t testing.TB, admin, name string) (float64, bool) {
	t.Helper()
	r := curl(t, "http://"+admin+"/metrics")
	if r.Status != 200 {
		t.Fatalf("GET /metrics: status %d %s", r.Status, r.Stderr)
	}
	var sum float64
	found := false
	for _, l := range strings.Split(r.Body, "\n") {
		if !strings.HasPrefix(l, name+" ") && !strings.HasPrefix(l, name+"{") {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", l, err)
		}
		sum += v
		found = true
	}
	return sum, found
}

// turnEvents returns the events GET /api/v1/events answers for query,
// with the admin token.
func (g *turnGateway) turnEvents(t testing.TB, token string, query url.Values) []eventJSON {
	t.Helper()
	query.Set("limit", "1000")
	r := curl(t, "-H", "Authorization: Bearer "+token, "http://"+g.admin+"/api/v1/events?"+query.Encode())
	if r.Status != 200 {
		t.Fatalf("GET /api/v1/events?%s: %d %s %s", query.Encode(), r.Status, r.Body, r.Stderr)
	}
	var doc struct {
		Events []eventJSON `json:"events"`
	}
	if err := json.Unmarshal([]byte(r.Body), &doc); err != nil {
		t.Fatalf("GET /api/v1/events: %v\n%s", err, r.Body)
	}
	return doc.Events
}

// eventJSON is one event of the admin API.
type eventJSON struct {
	Kind     string `json:"kind"`
	Source   string `json:"source"`
	Listener string `json:"listener"`
	Proto    string `json:"proto"`
	Reason   string `json:"reason"`
	User     string `json:"user"`
	Detail   string `json:"detail"`
}

// TestTURNBinding: STUN Binding requests answered with the client's own
// address: coturn's stunclient over UDP from two loopback addresses, and
// a pion/stun request over TCP and over TLS (stunclient speaks only UDP),
// the TLS one verifying the generated self-signed certificate.
func TestTURNBinding(t *testing.T) {
	t.Parallel()
	g := startTURN(t, turnOpts{})

	t.Run("udp", func(t *testing.T) {
		for _, src := range []string{"127.0.30.1", "127.0.30.2"} {
			out, silent := stunclient(t, g.addr, src)
			if silent {
				t.Fatalf("no binding answer from %s", src)
			}
			m := stunReflexive.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("stunclient from %s printed no reflexive address:\n%s", src, out)
			}
			ap, err := net.ResolveUDPAddr("udp", m[1])
			if err != nil || ap.IP.String() != src || ap.Port == 0 {
				t.Errorf("reflexive address %s from %s, want %s:<its port>", m[1], src, src)
			}
		}
	})
	t.Run("tcp", func(t *testing.T) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.30.3")}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got, want := stunBinding(t, c), c.LocalAddr().String(); got != want {
			t.Errorf("mapped address %s, want %s", got, want)
		}
	})
	t.Run("tls", func(t *testing.T) {
		pemCert, err := os.ReadFile(filepath.Join(g.dataDir, "selfsigned.crt"))
		if err != nil {
			t.Fatalf("self-signed certificate: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemCert) {
			t.Fatal("selfsigned.crt holds no certificate")
		}
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.30.4")}, Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", g.tls, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("TLS to the turn-tls listener: %v", err)
		}
		defer c.Close()
		if got, want := stunBinding(t, c), c.LocalAddr().String(); got != want {
			t.Errorf("mapped address %s, want %s", got, want)
		}
	})
}

// TestTURNRelay: allocations with every kind of credential over UDP, TCP
// and TLS, relaying to turnutils_peer (or between uclient's own clients),
// every packet echoed back; the relayed-traffic metrics move; allocations
// are listed and ended by the operator; bad credentials are refused with an
// event each; special-purpose peers stay refused with loopback opened.
func TestTURNRelay(t *testing.T) {
	t.Parallel()
	g := startTURN(t, turnOpts{allowLoopback: true})
	token := g.adminToken()
	peer := startTurnPeer(t, "127.0.31.100")

	// A REST pair from the CLI, checked against one computed here.
	user, pass := g.restPair(t, "bob")
	exp, name, _ := strings.Cut(user, ":")
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || name != "bob" {
		t.Fatalf("pbxgate turn credentials bob: username %q, want <expiry>:bob", user)
	}
	if left := time.Until(time.Unix(sec, 0)); left < 23*time.Hour || left > 25*time.Hour {
		t.Errorf("REST username %q expires in %v, want the default 24h", user, left)
	}
	if _, want := restCredential(turnSecret, "bob", time.Unix(sec, 0)); pass != want {
		t.Errorf("REST password %q, want %q", pass, want)
	}

	// The key of a static user from the CLI, checked the same way.
	out, code, _ := runBounded(t, cmdTimeout, turnAlicePass+"\n", pbxgateBin, "turn", "key", "alice", "-c", g.config)
	if want := longTermKey("alice", turnRealm, turnAlicePass); code != 0 || !strings.Contains(out, want) {
		t.Errorf("pbxgate turn key alice: exit %d, want the key %s:\n%s", code, want, out)
	}

	const packets = 20
	// Over all the runs; every packet also came back. A TCP relay is a
	// byte stream: its packets are not counted one by one.
	sent, datagrams := 0, 0
	cases := []struct {
		name string
		u    uclient
	}{
		{"udp channels, REST secret", uclient{transport: "udp", user: "carol", secret: turnSecret, clients: 2}},
		{"udp send indications, CLI credentials", uclient{transport: "udp", user: user, password: pass, send: true}},
		{"udp static user", uclient{transport: "udp", user: "alice", password: turnAlicePass}},
		{"udp client to client", uclient{transport: "udp", user: "carol", secret: turnSecret, clients: 2, pairs: true}},
		{"tcp channels, REST secret", uclient{transport: "tcp", user: "dave", secret: turnSecret}},
		{"tcp send indications, static user", uclient{transport: "tcp", user: "alice", password: turnAlicePass, send: true}},
		{"tcp relay (RFC 6062)", uclient{transport: "tcp", user: "dave", secret: turnSecret, clients: 2, tcpRelay: true}},
		{"tls REST secret", uclient{transport: "tls", user: "erin", secret: turnSecret, clients: 2}},
		{"tls static user", uclient{transport: "tls", user: "alice", password: turnAlicePass, send: true}},
	}
	jobs := make([]uclientJob, len(cases))
	for i, tc := range cases {
		tc.u.server, tc.u.packets = g.addr, packets
		if tc.u.transport == "tls" {
			tc.u.server = g.tls
		}
		if !tc.u.pairs && !tc.u.tcpRelay {
			tc.u.peer = peer
		}
		sent += packets * max(tc.u.clients, 1)
		if !tc.u.tcpRelay {
			datagrams += packets * max(tc.u.clients, 1)
		}
		jobs[i] = tc.u.start(t, uclientTimeout)
	}
	t.Run("allocations listed and ended", func(t *testing.T) { listAndEnd(t, g, token, peer) })
	t.Run("relay", func(t *testing.T) {
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { jobs[i].relayed(t) })
		}
	})
	if t.Failed() {
		return
	}
	// The TLS runs went through the TLS listener.
	g.waitLog(map[string]string{"msg": "connection", "listener": "turn-tls", "proto": "turn"})

	t.Run("metrics", func(t *testing.T) {
		// Each packet crosses the relay twice (to the peer and back), with
		// at least its 120 bytes of payload each time.
		for name, least := range map[string]int{
			"pbxgate_turn_relayed_packets_total": 2 * datagrams,
			"pbxgate_turn_relayed_bytes_total":   2 * sent * 120,
			"pbxgate_turn_allocations_total":     sent / packets,
		} {
			if n, ok := metricSum(t, g.admin, name); !ok || n < float64(least) {
				t.Errorf("%s = %v (present: %v), want >= %d", name, n, ok, least)
			}
		}
		if _, ok := metricSum(t, g.admin, "pbxgate_turn_allocations"); !ok {
			t.Error("pbxgate_turn_allocations missing from /metrics")
		}
		if n := len(g.turnEvents(t, token, url.Values{"proto": {"turn"}, "kind": {"success"}})); n < sent/packets {
			t.Errorf("%d success events for at least %d allocations", n, sent/packets)
		}
	})

	t.Run("bad credentials", func(t *testing.T) {
		expired, expiredPass := restCredential(turnSecret, "frank", time.Now().Add(-time.Hour))
		forged, forgedPass := restCredential("not-the-secret-not-the-secret", "grace", time.Now().Add(time.Hour))
		farOff, farOffPass := restCredential(turnSecret, "ivy", time.Now().Add(30*24*time.Hour))
		for i, tc := range []struct {
			name, user, password, wantUser, wantDetail string
		}{
			{"wrong static password", "alice", "not-alices", "alice", "MESSAGE-INTEGRITY"},
			{"unknown user", "mallory", "whatever", "mallory", "unknown user"},
			{"expired REST credential", expired, expiredPass, "frank", "expired"},
			{"REST signed by another secret", forged, forgedPass, "grace", "MESSAGE-INTEGRITY"},
			{"REST expiring a month ahead", farOff, farOffPass, "ivy", "REST credential"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				src := "127.0.31." + strconv.Itoa(10+i) // one source per case
				u := uclient{server: g.addr, local: src, user: tc.user, password: tc.password, peer: peer}
				r := u.run(t, uclientTimeout)
				if r.exit == 0 || r.summary.received > 0 {
					t.Errorf("uclient with %s: exit %d, summary %+v, want a refused allocation:\n%s",
						tc.name, r.exit, r.summary, clipTail(r.out, 2000))
				}
				l := g.waitEvent(map[string]string{"kind": "rejected_by_service", "reason": "invalid_credentials",
					"proto": "turn", "src": src, "user": tc.wantUser})
				if !strings.Contains(l["detail"], tc.wantDetail) {
					t.Errorf("event detail %q, want it to mention %q", l["detail"], tc.wantDetail)
				}
				// RFC 8489 §9.2.4: a wrong MESSAGE-INTEGRITY or an unknown
				// username is answered 401, with a fresh nonce.
				if code := allocateCode(t, g.addr, src, tc.user, tc.password); code != int(stun.CodeUnauthorized) {
					t.Errorf("authenticated Allocate with %s answered %d, want 401", tc.name, code)
				}
			})
		}
		if n, ok := metricSum(t, g.admin, "pbxgate_turn_auth_failures_total"); !ok || n < 5 {
			t.Errorf("pbxgate_turn_auth_failures_total = %v (present: %v), want >= 5", n, ok)
		}
		// The right password through the same probe succeeds: the probe
		// can tell the two apart.
		if code := allocateCode(t, g.addr, "127.0.31.19", "alice", turnAlicePass); code != 0 {
			t.Errorf("Allocate with alice's password answered %d, want success", code)
		}
	})

	t.Run("special peers stay denied", func(t *testing.T) {
		for i, p := range []string{"10.1.2.3:5000", "169.254.169.254:80", "192.168.1.1:5060", "100.64.0.1:4000"} {
			src := "127.0.31." + strconv.Itoa(50+i)
			send := i%2 == 1 // CreatePermission for every other, ChannelBind for the rest
			u := uclient{server: g.addr, local: src, user: "heidi", secret: turnSecret, peer: p, send: send}
			r := u.run(t, uclientTimeout)
			want := "channel bind: error 403"
			if send {
				want = "create permission error 403"
			}
			if r.exit == 0 || !strings.Contains(r.out, want) {
				t.Errorf("peer %s: exit %d, want %q:\n%s", p, r.exit, want, clipTail(r.out, 2000))
			}
			l := g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "peer_denied", "proto": "turn", "src": src})
			if host := hostOf(p); !strings.Contains(l["detail"], host) {
				t.Errorf("peer_denied event detail %q does not name %s", l["detail"], host)
			}
		}
	})
}

// listAndEnd keeps an allocation open with uclient -h, finds it in
// `pbxgate turn allocations` and the admin API with its traffic, ends it
// with `pbxgate turn end` and checks that its relay port is released.
func listAndEnd(t *testing.T, g *turnGateway, token, peer string) {
	const src = "127.0.31.20"
	uclient{server: g.addr, local: src, user: "judy", secret: turnSecret, peer: peer, packets: 10, hang: true}.start(t, time.Minute)
	var live allocationJSON
	g.waitAllocations(t, func(as []allocationJSON) bool {
		for _, a := range as {
			if a.User == "judy" && a.PacketsToPeer >= 10 && a.PacketsFromPeer >= 10 {
				live = a
				return true
			}
		}
		return false
	})
	relay, err := netip.ParseAddrPort(live.Relay)
	switch {
	case err != nil || relay.Addr() != netip.MustParseAddr("127.0.0.1") ||
		int(relay.Port()) < g.relayMin || int(relay.Port()) > g.relayMax:
		t.Errorf("relay address %q, want 127.0.0.1 and a port in %d-%d", live.Relay, g.relayMin, g.relayMax)
	case live.Listener != "turn-udp" || live.Protocol != "udp" || hostOf(live.Client) != src:
		t.Errorf("allocation %+v, want udp on turn-udp from %s", live, src)
	case live.BytesToPeer < 10*120 || live.BytesFromPeer < 10*120:
		t.Errorf("allocation %+v, want >= %d bytes each way", live, 10*120)
	}
	// The admin API over TCP lists the same allocation.
	r := curl(t, "-H", "Authorization: Bearer "+token, "http://"+g.admin+"/api/v1/turn/allocations")
	if r.Status != 200 || !strings.Contains(r.Body, `"relay":"`+live.Relay+`"`) {
		t.Errorf("GET /api/v1/turn/allocations: %d, want the allocation on %s:\n%s", r.Status, live.Relay, r.Body)
	}
	if !relayPortHeld(relay.Port()) {
		t.Errorf("relay port %d is not held by pbxgate", relay.Port())
	}
	g.cli("turn", "end", strconv.FormatUint(live.ID, 10))
	g.waitAllocations(t, func(as []allocationJSON) bool {
		for _, a := range as {
			if a.ID == live.ID {
				return false
			}
		}
		return true
	})
	if relayPortHeld(relay.Port()) {
		t.Errorf("relay port %d still held after the allocation ended", relay.Port())
	}
	if out, _, code := run(t, cleanEnv(), pbxgateBin, "turn", "end", strconv.FormatUint(live.ID, 10), "-c", g.config); code == 0 {
		t.Errorf("ending an ended allocation: exit 0, want a failure:\n%s", out)
	}
}

// allocationJSON is one allocation of `pbxgate turn allocations --json`.
type allocationJSON struct {
	ID              uint64 `json:"id"`
	Listener        string `json:"listener"`
	User            string `json:"user"`
	Client          string `json:"client"`
	Relay           string `json:"relay"`
	Protocol        string `json:"protocol"`
	BytesToPeer     uint64 `json:"bytes_to_peer"`
	BytesFromPeer   uint64 `json:"bytes_from_peer"`
	PacketsToPeer   uint64 `json:"packets_to_peer"`
	PacketsFromPeer uint64 `json:"packets_from_peer"`
}

// waitAllocations polls `pbxgate turn allocations --json` until ok holds
// for the list; the test fails when it does not within logTimeout.
func (g *turnGateway) waitAllocations(t testing.TB, ok func([]allocationJSON) bool) []allocationJSON {
	t.Helper()
	deadline := time.Now().Add(logTimeout)
	for {
		var doc struct {
			Allocations []allocationJSON `json:"allocations"`
		}
		out := g.cli("turn", "allocations", "--json")
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("pbxgate turn allocations --json: %v\n%s", err, out)
		}
		if ok(doc.Allocations) {
			return doc.Allocations
		}
		if time.Now().After(deadline) {
			t.Fatalf("allocations not as expected within %v:\n%s", logTimeout, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// relayPortHeld reports whether a UDP socket holds port on 127.0.0.1 (or
// the unspecified address): binding it here fails.
func relayPortHeld(port uint16) bool {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	c.Close()
	return false
}

// allocateCode sends an Allocate over UDP from src, takes the 401 challenge
// (realm and nonce), sends the Allocate again with long-term credentials
// for user and password, and returns the error code of the answer (0 for a
// success, whose allocation is then released).
func allocateCode(t testing.TB, server, src, user, password string) int {
	t.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(server)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	transport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}} // UDP
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	challenge := stunRoundTrip(t, c, stun.MustBuild(stun.TransactionID, allocate, transport, stun.Fingerprint))
	var code stun.ErrorCodeAttribute
	var realm stun.Realm
	var nonce stun.Nonce
	if code.GetFrom(challenge) != nil || code.Code != stun.CodeUnauthorized || realm.GetFrom(challenge) != nil || nonce.GetFrom(challenge) != nil {
		t.Fatalf("Allocate without credentials: answer %v (code %d), want a 401 with realm and nonce", challenge.Type, code.Code)
	}
	if realm.String() != turnRealm {
		t.Errorf("challenge realm %q, want %q", realm, turnRealm)
	}
	integrity := stun.NewLongTermIntegrity(user, realm.String(), password)
	res := stunRoundTrip(t, c, stun.MustBuild(stun.TransactionID, allocate, transport,
		stun.NewUsername(user), realm, nonce, integrity, stun.Fingerprint))
	if res.Type.Class == stun.ClassSuccessResponse {
		if err := integrity.Check(res); err != nil {
			t.Errorf("Allocate success without a valid MESSAGE-INTEGRITY: %v", err)
		}
		refresh := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
			stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}},
			stun.NewUsername(user), realm, nonce, integrity, stun.Fingerprint)
		stunRoundTrip(t, c, refresh)
		return 0
	}
	if err := code.GetFrom(res); err != nil {
		t.Fatalf("Allocate answer %v without an error code: %v", res.Type, err)
	}
	return int(code.Code)
}

// stunRoundTrip sends req on the connected UDP socket c and returns the
// answer to it, retransmitting a few times.
func stunRoundTrip(t testing.TB, c *net.UDPConn, req *stun.Message) *stun.Message {
	t.Helper()
	buf := make([]byte, 1500)
	for range 5 {
		if _, err := c.Write(req.Raw); err != nil {
			t.Fatalf("STUN request: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break // timeout: retransmit
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() == nil && res.TransactionID == req.TransactionID {
				return res
			}
		}
	}
	t.Fatalf("no answer to %v from %s", req.Type, c.RemoteAddr())
	return nil
}

// restPair runs `pbxgate turn credentials USER` and returns the username
// and password it prints.
func (g *turnGateway) restPair(t testing.TB, user string) (username, password string) {
	t.Helper()
	out := g.cli("turn", "credentials", user)
	for _, l := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		switch strings.TrimSuffix(k, ":") {
		case "username":
			username = strings.TrimSpace(v)
		case "password":
			password = strings.TrimSpace(v)
		}
	}
	if username == "" || password == "" {
		t.Fatalf("pbxgate turn credentials %s printed no username and password lines:\n%s", user, out)
	}
	return username, password
}

// TestTURNPeerDenied: without allow_peers a peer on loopback is refused
// (403), over channels and send indications alike, with a peer_denied
// event and the counter.
func TestTURNPeerDenied(t *testing.T) {
	t.Parallel()
	g := startTURN(t, turnOpts{})
	peer := startTurnPeer(t, "127.0.32.100")
	for _, tc := range []struct {
		name string
		send bool
		src  string
		want string
	}{
		{"channel bind", false, "127.0.32.1", "channel bind: error 403"},
		{"create permission", true, "127.0.32.2", "create permission error 403"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := uclient{server: g.addr, local: tc.src, user: "ivan", secret: turnSecret, peer: peer, send: tc.send}
			r := u.run(t, uclientTimeout)
			if r.exit == 0 || !strings.Contains(r.out, tc.want) || r.summary.received > 0 {
				t.Errorf("uclient to loopback peer %s: exit %d, want %q:\n%s", peer, r.exit, tc.want, clipTail(r.out, 2000))
			}
			l := g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "peer_denied", "proto": "turn", "src": tc.src})
			if !strings.Contains(l["detail"], hostOf(peer)) {
				t.Errorf("peer_denied event detail %q does not name %s", l["detail"], hostOf(peer))
			}
		})
	}
	if n, ok := metricSum(t, g.admin, "pbxgate_turn_peer_denied_total"); !ok || n < 2 {
		t.Errorf("pbxgate_turn_peer_denied_total = %v (present: %v), want >= 2", n, ok)
	}
	if n, _ := metricSum(t, g.admin, "pbxgate_turn_relayed_packets_total"); n != 0 {
		t.Errorf("pbxgate_turn_relayed_packets_total = %v after denied peers only, want 0", n)
	}
}

// turnFraud keeps the default threshold (a ban after more than ten
// weighted events a minute) and whitelists only 127.0.0.1, from which the
// test reads the admin API.
const turnFraud = `fraud:
  whitelist: [127.0.0.1]
  refused_hold: 1s
`

// TestTURNBruteForceBan: wrong passwords from one source get 401s until the
// source is banned; then even correct clients from it get no answer over
// UDP and are closed at accept over TCP, while another source is served;
// the ban is listed with its events; an unban lets the source back in.
func TestTURNBruteForceBan(t *testing.T) {
	t.Parallel()
	g := startTURN(t, turnOpts{allowLoopback: true, fraud: turnFraud})
	token := g.adminToken()
	peer := startTurnPeer(t, "127.0.33.100")
	const attacker, other, victim = "127.0.33.1", "127.0.33.2", "127.0.33.3"
	// An allocation that a manual ban ends at the end.
	uclient{server: g.addr, local: victim, user: "alice", password: turnAlicePass, peer: peer, packets: 10, hang: true}.start(t, time.Minute)

	banned := func() bool {
		for _, l := range parseLog(g.stderr.String()) {
			if l.matches(map[string]string{"msg": "source banned", "src": attacker}) {
				return true
			}
		}
		return false
	}
	runs := 0
	for ; runs < 10 && !banned(); runs++ {
		u := uclient{server: g.addr, local: attacker, user: "alice", password: fmt.Sprint("guess", runs), peer: peer}
		r := u.run(t, silenceTimeout) // banned midway: the rest of the run gets no answer
		if r.summary.sent > 0 || (!r.timedOut && r.exit == 0) {
			t.Fatalf("guess %d: exit %d, %+v, want a refused allocation:\n%s", runs, r.exit, r.summary, clipTail(r.out, 2000))
		}
	}
	g.waitLog(map[string]string{"msg": "source banned", "src": attacker})
	t.Logf("banned after %d uclient runs", runs)

	t.Run("after the ban", func(t *testing.T) {
		// Side by side: each UDP probe waits silenceTimeout, a relay takes
		// uclient's few seconds.
		otherBinding := startStunclient(t, g.addr, other)
		otherRelay := uclient{server: g.addr, local: other, user: "alice", password: turnAlicePass, peer: peer, packets: 5}.start(t, uclientTimeout)
		binding := startStunclient(t, g.addr, attacker)
		udp := uclient{server: g.addr, local: attacker, user: "alice", password: turnAlicePass, peer: peer, packets: 5}.start(t, silenceTimeout)
		tcp := uclient{transport: "tcp", server: g.addr, local: attacker, user: "alice", password: turnAlicePass, peer: peer, packets: 5}.start(t, uclientTimeout)

		t.Run("banned: closed at accept", func(t *testing.T) {
			refusedAtAccept(t, attacker, g.addr)
			refusedAtAccept(t, attacker, g.tls)
		})
		t.Run("banned: tcp allocation with the right password", func(t *testing.T) {
			if r := tcp.wait(t); r.exit == 0 || r.summary.received > 0 {
				t.Errorf("exit %d, want a failure:\n%s", r.exit, clipTail(r.out, 2000))
			}
		})
		t.Run("banned: stun binding", func(t *testing.T) {
			if out, silent := binding.wait(t); !silent {
				t.Errorf("banned source got a binding answer:\n%s", out)
			}
		})
		t.Run("banned: udp allocation with the right password", func(t *testing.T) {
			// uclient prints the connect time once its allocations are
			// made, at once on loopback.
			if r := udp.wait(t); !r.timedOut || strings.Contains(r.out, "connect time") || r.summary.received > 0 {
				t.Errorf("exit %d, want no answer:\n%s", r.exit, clipTail(r.out, 2000))
			}
		})
		t.Run("another source is served", func(t *testing.T) {
			if out, silent := otherBinding.wait(t); silent || !strings.Contains(out, other+":") {
				t.Errorf("binding from %s: silent %v:\n%s", other, silent, out)
			}
			otherRelay.relayed(t)
		})
	})

	t.Run("listed with its events", func(t *testing.T) {
		e, ok := g.entries("bans")[attacker]
		if !ok {
			t.Fatalf("%s not in bans --json", attacker)
		}
		if e.Origin != "auto" || !strings.Contains(e.Reason, "rejected_by_service") {
			t.Errorf("ban entry %+v, want origin auto for rejected_by_service events", e)
		}
		events := g.turnEvents(t, token, url.Values{"source": {attacker}, "proto": {"turn"}, "reason": {"invalid_credentials"}})
		if len(events) <= 10 {
			t.Fatalf("%d invalid_credentials events from %s, want more than 10: %+v", len(events), attacker, events)
		}
		for _, e := range events {
			if e.Kind != "rejected_by_service" || e.User != "alice" || e.Listener != "turn-udp" {
				t.Errorf("event %+v, want rejected_by_service for alice on turn-udp", e)
			}
		}
		if n, _ := metricSum(t, g.admin, "pbxgate_turn_auth_failures_total"); n < float64(len(events)) {
			t.Errorf("pbxgate_turn_auth_failures_total = %v, want >= %d", n, len(events))
		}
	})

	t.Run("a ban ends the source's allocations", func(t *testing.T) {
		var relay netip.AddrPort
		g.waitAllocations(t, func(as []allocationJSON) bool {
			for _, a := range as {
				if hostOf(a.Client) == victim && a.PacketsFromPeer >= 10 {
					relay, _ = netip.ParseAddrPort(a.Relay)
					return true
				}
			}
			return false
		})
		g.cli("ban", victim, "--note", "e2e")
		g.waitAllocations(t, func(as []allocationJSON) bool {
			for _, a := range as {
				if hostOf(a.Client) == victim {
					return false
				}
			}
			return true
		})
		if relayPortHeld(relay.Port()) {
			t.Errorf("relay port %d still held after the ban", relay.Port())
		}
	})

	t.Run("unban lets it back in", func(t *testing.T) {
		g.cli("unban", attacker)
		if out, silent := stunclient(t, g.addr, attacker); silent || !strings.Contains(out, attacker+":") {
			t.Errorf("after unban: silent %v:\n%s", silent, out)
		}
	})
}
