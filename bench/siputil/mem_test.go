package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/siptest"
	"go.uber.org/goleak"
)

func TestSource(t *testing.T) {
	first := netip.MustParseAddr("127.16.0.1")
	tests := []struct {
		first    netip.Addr
		i, perIP int
		want     string // "" for an error
	}{
		{first, 0, 10, "127.16.0.1"},
		{first, 9, 10, "127.16.0.1"},
		{first, 10, 10, "127.16.0.2"},
		{first, 2550, 10, "127.16.1.0"},
		{first, 99999, 10, "127.16.39.16"},
		{netip.MustParseAddr("127.255.255.255"), 1, 1, ""},
		{netip.MustParseAddr("10.0.0.1"), 0, 1, ""},
		{netip.MustParseAddr("::1"), 0, 1, ""},
	}
	for _, tc := range tests {
		got, err := source(tc.first, tc.i, tc.perIP)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("source(%v, %d, %d) = %v, want an error", tc.first, tc.i, tc.perIP, got)
		case tc.want != "" && (err != nil || got.String() != tc.want):
			t.Errorf("source(%v, %d, %d) = %v, %v; want %s", tc.first, tc.i, tc.perIP, got, err, tc.want)
		}
	}
}

// startBackend runs the stub PBX on a free loopback port until the test ends.
func startBackend(t *testing.T) *backend {
	t.Helper()
	b, err := listenBackend("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return b
}

// TestMeasureUDP: flows straight to the stub PBX (standing in for pbxgate)
// all register, and the memory of a live process is read.
func TestMeasureUDP(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the backend's cleanup
	b := startBackend(t)
	cfg := memConfig{kind: "udp", target: b.pc.LocalAddr().(*net.UDPAddr).AddrPort(), want: 300, pid: os.Getpid(),
		src: netip.MustParseAddr("127.16.0.1"), perIP: 7, srcPort: 20000, workers: 8, timeout: 2 * time.Second,
		tries: 3, settle: time.Millisecond, maxTime: time.Minute}
	res, err := measure(context.Background(), cfg, udpOpener(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if res.N != 300 || res.Open != 300 || res.OK != 300 || res.Failed != 0 {
		t.Errorf("measure = %+v, want 300 flows open and registered", res)
	}
	if res.Before.RSSKB <= 0 || res.After.RSSKB <= 0 || res.After.FDs < 300 {
		t.Errorf("memory not read: before %+v, after %+v", res.Before, res.After)
	}
}

// TestMeasureUDPNoAnswer: a target that never answers makes every flow fail
// after its tries, and the result says why.
func TestMeasureUDPNoAnswer(t *testing.T) {
	defer goleak.VerifyNone(t)
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	cfg := memConfig{kind: "udp", target: silent.LocalAddr().(*net.UDPAddr).AddrPort(), want: 4, pid: os.Getpid(),
		src: netip.MustParseAddr("127.16.1.1"), perIP: 2, srcPort: 20000, workers: 4, timeout: 20 * time.Millisecond,
		tries: 2, settle: time.Millisecond, maxTime: time.Minute}
	res, err := measure(context.Background(), cfg, udpOpener(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 0 || res.Failed != 4 || res.Statuses["no-answer"] != 4 {
		t.Errorf("measure = %+v, want 4 flows without an answer", res)
	}
}

// TestMeasureTLS: SIP-over-TLS connections through a TLS terminator in
// front of the stub PBX's stream handler all register and stay open.
func TestMeasureTLS(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{testCert(t)}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				siptest.ServeStream(c, c, siptest.OK)
			}()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	cfg := memConfig{kind: "tls", target: ln.Addr().(*net.TCPAddr).AddrPort(), want: 40, pid: os.Getpid(),
		src: netip.MustParseAddr("127.16.2.1"), perIP: 10, workers: 8, timeout: 5 * time.Second,
		tries: 1, settle: time.Millisecond, maxTime: time.Minute}
	res, err := measure(context.Background(), cfg, tlsOpener(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if res.Open != 40 || res.OK != 40 || res.Failed != 0 {
		t.Errorf("measure = %+v, want 40 connections open and registered", res)
	}
	if res.After.FDs < res.Before.FDs+80 {
		t.Errorf("descriptors %d -> %d: want both ends of 40 connections open at the measurement", res.Before.FDs, res.After.FDs)
	}
}

func TestMeasureCanceled(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	b := startBackend(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := memConfig{kind: "udp", target: b.pc.LocalAddr().(*net.UDPAddr).AddrPort(), want: 10, pid: os.Getpid(),
		src: netip.MustParseAddr("127.16.3.1"), perIP: 10, srcPort: 20000, workers: 2, timeout: time.Second,
		tries: 1, settle: time.Hour, maxTime: time.Minute}
	if _, err := measure(ctx, cfg, udpOpener(cfg)); !errors.Is(err, context.Canceled) {
		t.Errorf("measure after cancel: %v, want context.Canceled", err)
	}
}

func TestRunMemRejects(t *testing.T) {
	for name, args := range map[string][]string{
		"no target":     {"-pid", "1", "-n", "1"},
		"no pid":        {"-target", "127.0.0.1:5060", "-n", "1"},
		"no n":          {"-target", "127.0.0.1:5060", "-pid", "1"},
		"src not 127/8": {"-target", "127.0.0.1:5060", "-pid", "1", "-n", "1", "-src", "10.0.0.1"},
		"too many":      {"-target", "127.0.0.1:5060", "-pid", "1", "-n", "200000000", "-per-ip", "1"},
		"bad src port":  {"-target", "127.0.0.1:5060", "-pid", "1", "-n", "1", "-src-port", "65535", "-per-ip", "10"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := runMem(context.Background(), os.Stdout, "udp", args); err == nil {
				t.Error("runMem accepted bad arguments")
			}
		})
	}
}

func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
