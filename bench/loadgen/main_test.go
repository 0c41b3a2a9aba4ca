package main

import (
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// TestRunAgainstOrigin drives a real run against a loopback net/http origin:
// every scheduled request is answered, none dropped or failed, and no
// latency is shorter than its send lag allows (latencies count from the
// scheduled slot).
func TestRunAgainstOrigin(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok"))
	})}
	go srv.Serve(ln)
	defer srv.Close()

	for _, quantum := range []time.Duration{0, 50 * time.Microsecond, time.Millisecond} {
		t.Run(quantum.String(), func(t *testing.T) {
			o := options{
				target:   &url.URL{Scheme: "http", Host: ln.Addr().String(), Path: "/"},
				rate:     2000,
				duration: 300 * time.Millisecond,
				warmup:   50 * time.Millisecond,
				conns:    4,
				timeout:  5 * time.Second,
				quantum:  quantum,
			}
			res, err := run(o)
			if err != nil {
				t.Fatal(err)
			}
			if res.scheduled != 600 {
				t.Errorf("scheduled %d requests in the measured window, want 600", res.scheduled)
			}
			if res.lat.total != res.scheduled || res.ok != res.scheduled {
				t.Errorf("%d responses, %d ok for %d scheduled", res.lat.total, res.ok, res.scheduled)
			}
			if res.errs != 0 || res.bad != 0 || res.dropped != 0 {
				t.Errorf("errors %d, non-2xx %d, dropped %d (first error %v)", res.errs, res.bad, res.dropped, res.firstErr)
			}
			if res.lat.quantile(.5) < res.lag.quantile(.5) {
				t.Errorf("median latency %d ns below median send lag %d ns", res.lat.quantile(.5), res.lag.quantile(.5))
			}
		})
	}
}
