//go:build !race

// The race detector randomises the scheduler, and the test below depends
// on the order in which goroutines run on one P.

package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
)

// TestBanLetsItsAnswerFinish: the request whose refusal tips an automatic
// ban gets its whole answer before the ban closes its connection, and the
// backend connection that answer came on is kept for the next request
// (closing under the handler cost a new backend connection per ban in a
// wave of bans). GOMAXPROCS 1, as pbxgate runs in bench/fraud.sh, makes
// the order deterministic.
func TestBanLetsItsAnswerFinish(t *testing.T) {
	defer goruntime.GOMAXPROCS(goruntime.GOMAXPROCS(1))
	var backendConns atomic.Int32
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, "wrong password")
	}))
	be.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			backendConns.Add(1)
		}
	}
	be.Start()
	t.Cleanup(be.Close)
	g := start(t, parse(t, webConfig(t.TempDir(), "127.0.0.1:0", be.Listener.Addr().String(),
		"fraud:\n  suspicious_per_minute: 3\n")), &event.Recorder{})
	addr := g.Addr("web").String()

	// attempt sends one request on a connection of its own and returns
	// what came back before the connection ended.
	attempt := func(src string) string {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: app.test\r\nAuthorization: Basic YWRtaW46eA==\r\nConnection: close\r\n\r\n")
		b, err := io.ReadAll(c)
		if err != nil {
			t.Logf("read: %v", err)
		}
		return string(b)
	}
	tipped := false
	for i := 0; i < 10 && !tipped; i++ {
		got := attempt("127.0.0.9")
		tipped = !g.sec.allowed(mustAddr("127.0.0.9"))
		if !strings.HasPrefix(got, "HTTP/1.1 401") || !strings.HasSuffix(got, "wrong password") {
			t.Errorf("attempt %d (tipped the ban: %v): %q, want all of the answer", i+1, tipped, got)
		}
	}
	if !tipped {
		t.Fatal("not banned after 10 refusals")
	}
	if got := attempt("127.0.0.10"); !strings.Contains(got, "wrong password") {
		t.Fatalf("another source after the ban: %q", got)
	}
	if n := backendConns.Load(); n != 1 {
		t.Errorf("%d backend connections for requests one after another, want 1", n)
	}
}
