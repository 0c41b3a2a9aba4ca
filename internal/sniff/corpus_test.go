package sniff

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpora in testdata/fuzz from real clients")

// TestUpdateCorpus writes the committed seed corpora when run with
// -update-corpus (go test -run TestUpdateCorpus -update-corpus). Without
// the flag it only checks the corpora are present; go test then runs every
// file through FuzzClassify and FuzzServerName.
func TestUpdateCorpus(t *testing.T) {
	if !*updateCorpus {
		for _, dir := range []string{"FuzzClassify", "FuzzServerName"} {
			files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
			if len(files) < 5 {
				t.Errorf("testdata/fuzz/%s has %d seeds; regenerate with -update-corpus", dir, len(files))
			}
		}
		return
	}
	hellos := map[string][]byte{
		"go-sni":              goClientHello(t, &tls.Config{ServerName: "pbx.example.com"}),
		"go-no-sni":           goClientHello(t, &tls.Config{InsecureSkipVerify: true}),
		"go-tls12":            goClientHello(t, &tls.Config{ServerName: "prov.example.com", MaxVersion: tls.VersionTLS12}),
		"go-x25519-only":      goClientHello(t, &tls.Config{ServerName: "a.example", CurvePreferences: []tls.CurveID{tls.X25519}}),
		"curl-openssl-sni":    curlClientHello(t),
		"made-sni-then-other": singleRecord(handshakeMsg(helloBody(append(sniExt(hostEntry("m.example")), otherExts...)))),
		"made-no-extensions":  singleRecord(handshakeMsg(helloBody(nil))),
		"made-two-names":      singleRecord(handshakeMsg(helloBody(sniExt([]byte{7, 0, 1, 'x'}, hostEntry("n.example"))))),
	}
	goHS := hellos["go-sni"][recordHeaderLen:]
	hellos["go-sni-16-byte-records"] = records(goHS, 16)
	hellos["go-sni-split-before-name"] = recordsAt(goHS, indexOf(goHS, "pbx.example.com"))
	hellos["go-sni-split-in-name"] = recordsAt(goHS, indexOf(goHS, "pbx.example.com")+3)
	for name, b := range hellos {
		writeSeed(t, "FuzzServerName", name, b)
		writeSeed(t, "FuzzClassify", "tls-"+name, b[:min(len(b), 64)])
	}
	for i, in := range []string{
		"\r\n\r\n", "\r\n\r", "OPTIONS  HTTP/1.1", "OPTIONS * HTTP/2.0\r\n", "OPTIONS sip:a sip/2.0",
		"\x00\x01\x00\x00\x21\x12\xa4\x42", "SSH-2.0-OpenSSH_9.2\r\n", "\x30\x84\x00\x00\x00\x04\x02",
		"\x30\x80\x02\x01\x01", "PRI * HTTP/2.0\r\n\r\nXM", "\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"MKCALENDARS /", "HTTP/1.1 200 OK\r\n", "\x16\x03\x05",
	} {
		writeSeed(t, "FuzzClassify", "edge-"+strconv.Itoa(i), []byte(in))
	}
}

func indexOf(b []byte, s string) int { return bytes.Index(b, []byte(s)) }

func writeSeed(t *testing.T, fuzzer, name string, b []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", fuzzer)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// curlClientHello captures the ClientHello curl (OpenSSL) sends.
func curlClientHello(t *testing.T) []byte {
	curl := needBinary(t, "curl", "curl")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-sk", "--resolve", "sip.example.test:"+port+":127.0.0.1", "https://sip.example.test:"+port+"/")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 8192)
	n := 0
	for n < len(buf) {
		m, err := conn.Read(buf[n:])
		n += m
		if _, _, more, _ := ServerName(buf[:n]); !more {
			// ServerName returns at the name; keep the whole record.
			if n >= recordHeaderLen {
				want := recordHeaderLen + (int(buf[3])<<8 | int(buf[4]))
				for n < want && err == nil {
					m, err = conn.Read(buf[n:want])
					n += m
				}
			}
			return buf[:n]
		}
		if err != nil {
			t.Fatalf("reading curl's hello: %v", err)
		}
	}
	t.Fatal("curl's hello does not fit 8 KiB")
	return nil
}
