package httpproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/testpki"
)

// needPeer fails the test when an external program is missing.
func needPeer(t testing.TB, bin, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("needs %s (apt-get install -y %s)", bin, pkg)
	}
	return p
}

// echo is what the test backends answer.
type echo struct {
	Service string
	Method  string
	URI     string
	Host    string
	Proto   string
	TLS     bool
	Header  http.Header
}

// newBackend starts a test backend named name. It answers:
//   - /status/NNN with that status;
//   - /slow after the request is canceled (for response timeouts);
//   - /ws as a WebSocket echo server prefixing messages with name
//     (/ws?close closes right after the upgrade);
//   - anything else with an echo JSON document.
func newBackend(t testing.TB, name string, start func(*httptest.Server)) *httptest.Server {
	t.Helper()
	up := websocket.Upgrader{}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/status/"):
			code, _ := strconv.Atoi(r.URL.Path[len("/status/"):])
			w.WriteHeader(code)
			return
		case r.URL.Path == "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		case r.URL.Path == "/ws":
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			if r.URL.Query().Has("close") {
				return
			}
			for range 100 {
				mt, msg, err := c.ReadMessage()
				if err != nil {
					return
				}
				if err := c.WriteMessage(mt, append([]byte(name+":"), msg...)); err != nil {
					return
				}
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{
			Service: name, Method: r.Method, URI: r.RequestURI, Host: r.Host,
			Proto: r.Proto, TLS: r.TLS != nil, Header: r.Header,
		})
	}))
	if start == nil {
		ts.Start()
	} else {
		start(ts)
	}
	t.Cleanup(ts.Close)
	return ts
}

func backendAddr(ts *httptest.Server) string { return ts.Listener.Addr().String() }

// connMode says how the test listener hands connections to the Server,
// mimicking the three forms the listener package produces.
type connMode int

const (
	modePlain   connMode = iota // a wrapper without ConnectionState
	modeTLSConn                 // a *tls.Conn after the handshake (ALPN h2 or http/1.1)
	modeStater                  // a wrapper exposing ConnectionState (TLS terminated, HTTP/1.1)
)

// replayConn stands for the listener's sniffing wrapper (listen.Conn):
// it exposes the socket with Raw and half-closes with CloseWrite.
type replayConn struct{ net.Conn }

func (c *replayConn) Raw() *net.TCPConn {
	tc, _ := c.Conn.(*net.TCPConn)
	return tc
}

func (c *replayConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// statedConn stands for the listener's wrapper of a terminated TLS conn.
type statedConn struct {
	net.Conn
	st tls.ConnectionState
}

func (c *statedConn) ConnectionState() tls.ConnectionState { return c.st }

type proxyEnv struct {
	addr   string // 127.0.0.1:port
	port   string
	events *event.Recorder
	sw     *Swappable
	srv    *Server
	mu     sync.Mutex
	serve  []error // ServeConn results
}

// startProxy runs a Server with a Handler built from o on a loopback
// listener. o.Events is replaced by the env's recorder.
func startProxy(t testing.TB, mode connMode, o Options, so ServerOptions) *proxyEnv {
	t.Helper()
	env := &proxyEnv{events: &event.Recorder{}, sw: &Swappable{}}
	o.Events = env.events
	so.Events = env.events
	if o.Listener == "" {
		o.Listener = "web"
	}
	so.Listener = o.Listener
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	env.sw.Swap(h)
	env.srv = NewServer(so, env.sw)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	env.addr = ln.Addr().String()
	_, env.port, _ = net.SplitHostPort(env.addr)
	cert := testpki.New(t, "httpproxy test CA").Leaf(t, "pbxgate test", "prov.example.com", "*.example.com", "example.com", "127.0.0.1")
	protos := []string{"h2", "http/1.1", "http/1.0"}
	if mode == modeStater {
		protos = []string{"http/1.1", "http/1.0"}
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: protos}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			switch mode {
			case modePlain:
				c = &replayConn{c}
			case modeTLSConn, modeStater:
				tc := tls.Server(c, tlsConf)
				_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
				if err := tc.Handshake(); err != nil {
					_ = tc.Close()
					continue
				}
				_ = tc.SetDeadline(time.Time{})
				c = tc
				if mode == modeStater {
					c = &statedConn{tc, tc.ConnectionState()}
				}
			}
			err = env.srv.ServeConn(c)
			env.mu.Lock()
			env.serve = append(env.serve, err)
			env.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := env.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if old := env.sw.Swap(nil); old != nil {
			old.Close()
		}
		env.mu.Lock()
		defer env.mu.Unlock()
		for _, err := range env.serve {
			if err != nil {
				t.Errorf("ServeConn: %v", err)
			}
		}
	})
	return env
}

// swap installs a new Handler built from o (events to the env recorder).
func (env *proxyEnv) swap(t testing.TB, o Options) {
	t.Helper()
	o.Events = env.events
	if o.Listener == "" {
		o.Listener = "web"
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if old := env.sw.Swap(h); old != nil {
		old.Close()
	}
}

type curlResult struct {
	status  int
	version string
	body    string
}

// curl runs curl with args plus output formatting and returns the status,
// HTTP version and body.
func curl(t *testing.T, args ...string) curlResult {
	t.Helper()
	bin := needPeer(t, "curl", "curl")
	const marker = "\n--curl-status--"
	all := append([]string{"-sS", "--max-time", "10", "-w", marker + "%{http_code} %{http_version}"}, args...)
	cmd := exec.Command(bin, all...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("curl %q: %v", args, err)
		}
		t.Fatalf("curl %q: %v: %s", args, err, errb.String())
	}
	s := out.String()
	i := strings.LastIndex(s, marker)
	if i < 0 {
		t.Fatalf("curl %q: no status in %q", args, s)
	}
	var r curlResult
	r.body = s[:i]
	fields := strings.Fields(s[i+len(marker):])
	if len(fields) != 2 {
		t.Fatalf("curl %q: bad trailer %q", args, s[i:])
	}
	r.status, _ = strconv.Atoi(fields[0])
	r.version = fields[1]
	return r
}

// decodeEcho parses a backend echo body.
func decodeEcho(t *testing.T, body string) echo {
	t.Helper()
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("backend answer %q: %v", body, err)
	}
	return e
}

// findEvent returns the events of kind and reason.
func findEvents(evs []event.Event, kind event.Kind, reason string) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if e.Kind == kind && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// eventsSince returns the events recorded after the first n.
func eventsSince(r *event.Recorder, n int) []event.Event {
	evs := r.Events()
	if n > len(evs) {
		return nil
	}
	return evs[n:]
}
