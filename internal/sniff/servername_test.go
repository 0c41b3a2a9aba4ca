package sniff

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// goClientHello runs a crypto/tls client over a net.Pipe and returns the
// TLS records that carry its ClientHello, exactly as sent.
func goClientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c, s := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(c, cfg).Handshake() // fails when s closes
	}()
	defer func() {
		s.Close()
		c.Close()
		<-done
	}()
	if err := s.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var out []byte
	need := -1 // handshake bytes still expected, once the length is known
	var hs []byte
	for range 16 { // records; a hello never needs more than a few
		var hdr [recordHeaderLen]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			t.Fatalf("reading record header: %v", err)
		}
		frag := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		if _, err := io.ReadFull(s, frag); err != nil {
			t.Fatalf("reading record: %v", err)
		}
		out = append(append(out, hdr[:]...), frag...)
		hs = append(hs, frag...)
		if need < 0 && len(hs) >= 4 {
			need = 4 + (int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]))
		}
		if need >= 0 && len(hs) >= need {
			return out
		}
	}
	t.Fatal("ClientHello spans more than 16 records")
	return nil
}

// Builders for hand-made ClientHellos.

func u16b(n int) []byte { return []byte{byte(n >> 8), byte(n)} }

func vec16(parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	return append(u16b(len(body)), body...)
}

func vec8(b []byte) []byte { return append([]byte{byte(len(b))}, b...) }

func ext(typ int, data []byte) []byte { return append(u16b(typ), vec16(data)...) }

func hostEntry(name string) []byte { return append([]byte{0}, vec16([]byte(name))...) }

func sniExt(entries ...[]byte) []byte { return ext(0, vec16(entries...)) }

// helloBody returns a ClientHello body; exts == nil means no extensions
// block at all.
func helloBody(exts []byte) []byte {
	b := []byte{3, 3}
	b = append(b, bytes.Repeat([]byte{0xaa}, 32)...)
	b = append(b, vec8(bytes.Repeat([]byte{0xbb}, 32))...)
	b = append(b, vec16([]byte{0x13, 0x01, 0xc0, 0x2f})...)
	b = append(b, vec8([]byte{0})...)
	if exts != nil {
		b = append(b, vec16(exts)...)
	}
	return b
}

func handshakeMsg(body []byte) []byte {
	n := len(body)
	return append([]byte{1, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

// records splits hs into handshake records of at most size bytes.
func records(hs []byte, size int) []byte {
	var out []byte
	for len(hs) > 0 {
		n := min(size, len(hs))
		out = append(out, 22, 3, 1)
		out = append(out, u16b(n)...)
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	return out
}

// recordsAt splits hs into two handshake records at offset cut.
func recordsAt(hs []byte, cut int) []byte {
	out := append([]byte{22, 3, 1}, u16b(cut)...)
	out = append(out, hs[:cut]...)
	out = append(out, 22, 3, 3)
	out = append(out, u16b(len(hs)-cut)...)
	return append(out, hs[cut:]...)
}

func singleRecord(hs []byte) []byte { return records(hs, maxPlaintext) }

// otherExts are extensions a real client sends around server_name.
var otherExts = bytes.Join([][]byte{
	ext(0x000a, vec16([]byte{0x00, 0x1d, 0x00, 0x17})), // supported_groups
	ext(0x002b, vec8([]byte{0x03, 0x04, 0x03, 0x03})),  // supported_versions
	ext(0xff01, []byte{0}),                             // renegotiation_info
}, nil)

type snResult struct {
	name string
	ok   bool
	more bool
	err  error
}

func serverName(b []byte) snResult {
	name, ok, more, err := ServerName(b)
	return snResult{string(name), ok, more, err}
}

// checkPrefixes asserts that every proper prefix of b needs more or already
// gives want (the answer can come early: the name is returned once read),
// and that b itself gives want.
func checkPrefixes(t *testing.T, b []byte, want snResult) {
	t.Helper()
	for i := 0; i < len(b); i++ {
		got := serverName(b[:i])
		if got.more && !got.ok && got.err == nil && got.name == "" {
			continue
		}
		if !sameResult(got, want) {
			t.Fatalf("ServerName(b[:%d]) = %+v; want needMore or %+v", i, got, want)
		}
	}
	if got := serverName(b); !sameResult(got, want) {
		t.Fatalf("ServerName(all %d bytes) = %+v; want %+v", len(b), got, want)
	}
}

func sameResult(a, b snResult) bool {
	if a.name != b.name || a.ok != b.ok || a.more != b.more || (a.err == nil) != (b.err == nil) {
		return false
	}
	return a.err == nil || a.err.Error() == b.err.Error()
}

func TestServerNameGoClient(t *testing.T) {
	tests := []struct {
		name string
		cfg  *tls.Config
		want snResult
	}{
		{"sni", &tls.Config{ServerName: "pbx.example.com"}, snResult{name: "pbx.example.com", ok: true}},
		{"sni tls1.2 only", &tls.Config{ServerName: "prov.example.net", MaxVersion: tls.VersionTLS12}, snResult{name: "prov.example.net", ok: true}},
		{"sni upper-case kept", &tls.Config{ServerName: "PBX.Example.COM"}, snResult{name: "PBX.Example.COM", ok: true}},
		{"no sni", &tls.Config{InsecureSkipVerify: true}, snResult{}},
		{"ip address sends no sni", &tls.Config{ServerName: "192.0.2.7"}, snResult{}},
		{"classic curves only", &tls.Config{ServerName: "a.example", CurvePreferences: []tls.CurveID{tls.X25519}}, snResult{name: "a.example", ok: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := goClientHello(t, tt.cfg)
			if p, more := Classify(b); p != TLS || more {
				t.Fatalf("Classify(hello) = %v, %v", p, more)
			}
			checkPrefixes(t, b, tt.want)
			if n := testing.AllocsPerRun(100, func() { ServerName(b) }); n != 0 {
				t.Errorf("ServerName allocates %v times", n)
			}
		})
	}
}

// The default Go 1.24+ client offers X25519MLKEM768: a ~1.8 KB hello.
func TestServerNamePostQuantumHello(t *testing.T) {
	b := goClientHello(t, &tls.Config{ServerName: "pq.example.org"})
	if len(b) < 1500 {
		t.Fatalf("hello is %d bytes; expected a post-quantum key share (>1500)", len(b))
	}
	checkPrefixes(t, b, snResult{name: "pq.example.org", ok: true})
}

// TestServerNameFragmented splits real and hand-made hellos into records at
// every offset and into tiny records.
func TestServerNameFragmented(t *testing.T) {
	const host = "sip.example.com"
	goHello := goClientHello(t, &tls.Config{ServerName: host})
	goHS := goHello[recordHeaderLen:] // the Go client sends one record
	madeHS := handshakeMsg(helloBody(append(append([]byte{}, otherExts...), sniExt(hostEntry(host))...)))
	for _, hs := range [][]byte{goHS, madeHS} {
		nameAt := bytes.Index(hs, []byte(host))
		if nameAt < 0 {
			t.Fatal("name not in hello")
		}
		for cut := 1; cut < len(hs); cut++ {
			b := recordsAt(hs, cut)
			want := snResult{name: host, ok: true}
			if cut > nameAt && cut < nameAt+len(host) {
				_, _, _, err := ServerName(b)
				if !errors.Is(err, ErrNameSplit) {
					t.Fatalf("cut %d inside the name: err = %v, want ErrNameSplit", cut, err)
				}
				continue
			}
			if got := serverName(b); !sameResult(got, want) {
				t.Fatalf("cut at %d: %+v, want %+v", cut, got, want)
			}
		}
		// Records of 16 bytes, with all prefixes.
		b := records(hs, 16)
		nameRec := nameAt / 16
		if (nameAt+len(host)-1)/16 == nameRec {
			checkPrefixes(t, b, snResult{name: host, ok: true})
		} else if _, _, _, err := ServerName(b); !errors.Is(err, ErrNameSplit) {
			t.Fatalf("16-byte records: err = %v, want ErrNameSplit", err)
		}
	}
	// Without SNI, one-byte records reassemble to "no name".
	noSNI := goClientHello(t, &tls.Config{InsecureSkipVerify: true})
	checkPrefixes(t, records(noSNI[recordHeaderLen:], 1), snResult{})
}

func TestServerNameHandMade(t *testing.T) {
	valid := func(exts []byte) []byte { return singleRecord(handshakeMsg(helloBody(exts))) }
	tests := []struct {
		name string
		in   []byte
		want snResult
	}{
		{"sni only", valid(sniExt(hostEntry("a.example"))), snResult{name: "a.example", ok: true}},
		{"sni after others", valid(append(append([]byte{}, otherExts...), sniExt(hostEntry("b.example"))...)), snResult{name: "b.example", ok: true}},
		{"no extensions block", valid(nil), snResult{}},
		{"empty extensions block", valid([]byte{}), snResult{}},
		{"extensions without sni", valid(otherExts), snResult{}},
		{"only non-host name types", valid(sniExt([]byte{7, 0, 2, 'x', 'y'})), snResult{}},
		{"unknown name type then host", valid(sniExt([]byte{7, 0, 2, 'x', 'y'}, hostEntry("c.example"))), snResult{name: "c.example", ok: true}},
		{"first host name wins", valid(sniExt(hostEntry("d.example"), hostEntry("e.example"))), snResult{name: "d.example", ok: true}},
		{"name returned before hello ends", func() []byte {
			b := valid(append(sniExt(hostEntry("f.example")), otherExts...))
			return b[:bytes.Index(b, []byte("f.example"))+len("f.example")]
		}(), snResult{name: "f.example", ok: true}},
		{"empty", nil, snResult{more: true}},
		{"record header only", []byte{22, 3, 1, 0, 200}, snResult{more: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkPrefixes(t, tt.in, tt.want)
		})
	}
}

func TestServerNameMalformed(t *testing.T) {
	good := handshakeMsg(helloBody(append(append([]byte{}, otherExts...), sniExt(hostEntry("a.example"))...)))
	rec := singleRecord(good)
	patch := func(b []byte, at int, v ...byte) []byte {
		b = bytes.Clone(b)
		copy(b[at:], v)
		return b
	}
	// Offsets in rec: record header 0..4, handshake header 5..8, version
	// 9..10, random 11..42, session id length 43, session id 44..75,
	// cipher suites length 76..77.
	const hsAt, sidAt, csAt = 5, 43, 76
	compAt := csAt + 2 + 4
	extAt := compAt + 2
	withBody := func(body []byte) []byte { return singleRecord(handshakeMsg(body)) }
	bodyWith := func(exts []byte) []byte { return helloBody(exts) }
	tests := []struct {
		name  string
		in    []byte
		place string
	}{
		{"application data record", patch(rec, 0, 23), "record type"},
		{"alert record prefix", []byte{21}, "record type"},
		{"bad record version", patch(rec, 1, 3, 5), "record version"},
		{"bad record major prefix", []byte{22, 2}, "record version"},
		{"empty record", []byte{22, 3, 1, 0, 0}, "record length"},
		{"record too long", []byte{22, 3, 1, 0x40, 0x01}, "record length"},
		{"server hello", patch(rec, hsAt, 2), "handshake type"},
		{"hello too long", patch(rec, hsAt+1, 0x01, 0x00, 0x01), "handshake length"},
		{"hello too short for random", patch(rec, hsAt+1, 0, 0, 10), "random"},
		{"session id too long", patch(rec, sidAt, 33), "session_id"},
		{"cipher suites odd", patch(rec, csAt, 0, 3), "cipher_suites"},
		{"cipher suites empty", patch(rec, csAt, 0, 0), "cipher_suites"},
		{"cipher suites overrun", patch(rec, csAt, 0xff, 0xfe), "cipher_suites"},
		{"no compression methods", patch(rec, compAt, 0), "compression_methods"},
		{"extensions short of hello end", patch(rec, extAt, 0, 4), "extensions"},
		{"extensions past hello end", patch(rec, extAt, 0x7f, 0xff), "extensions"},
		{"extension overruns", withBody(bodyWith([]byte{0, 10, 0, 9, 0})), "extension"},
		{"extension type cut", withBody(bodyWith([]byte{0})), "extension type"},
		{"extension length cut", withBody(bodyWith([]byte{0, 10, 0})), "extension"},
		{"server_name list too short", withBody(bodyWith(ext(0, []byte{0, 1, 0, 0, 1, 'a'}))), "server_name"},
		{"server_name list empty", withBody(bodyWith(ext(0, []byte{0, 0}))), "server_name"},
		{"server_name without list", withBody(bodyWith(ext(0, []byte{0}))), "server_name"},
		{"host_name empty", withBody(bodyWith(sniExt([]byte{0, 0, 0}))), "host_name"},
		{"host_name overruns", withBody(bodyWith(ext(0, vec16([]byte{0, 0, 9, 'a'})))), "host_name"},
		{"second record not handshake", func() []byte {
			b := recordsAt(good, 20)
			b[20+recordHeaderLen] = 23
			return b
		}(), "record type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, ok, more, err := ServerName(tt.in)
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("ServerName = %q, %v, %v, %v; want *DecodeError wrapping ErrMalformed", name, ok, more, err)
			}
			if name != nil || ok || more {
				t.Errorf("error result also has name %q, ok %v, needMore %v", name, ok, more)
			}
			if de.Place != tt.place {
				t.Errorf("Place = %q, want %q (%v)", de.Place, tt.place, err)
			}
			if de.Offset < 0 || de.Offset > len(tt.in) {
				t.Errorf("Offset %d outside input of %d bytes", de.Offset, len(tt.in))
			}
			// Errors are final: more bytes do not change them.
			longer := append(bytes.Clone(tt.in), bytes.Repeat([]byte{0x42}, 64)...)
			if _, _, _, err2 := ServerName(longer); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("with more bytes: %v, want %v", err2, err)
			}
		})
	}
}

// TestServerNameAgainstCryptoTLS compares ServerName with what a crypto/tls
// server reports in ClientHelloInfo.ServerName for the same bytes.
func TestServerNameAgainstCryptoTLS(t *testing.T) {
	inputs := map[string][]byte{
		"go sni":    goClientHello(t, &tls.Config{ServerName: "x.example.com"}),
		"go no sni": goClientHello(t, &tls.Config{InsecureSkipVerify: true}),
		"go tls1.2": goClientHello(t, &tls.Config{ServerName: "y.example.com", MaxVersion: tls.VersionTLS12}),
		"hand-made": singleRecord(handshakeMsg(helloBody(append(sniExt(hostEntry("z.example")), ext(0x002b, vec8([]byte{3, 4, 3, 3}))...)))),
	}
	hs := goClientHello(t, &tls.Config{ServerName: "f.example.com"})[recordHeaderLen:]
	nameAt := bytes.Index(hs, []byte("f.example.com"))
	inputs["fragmented before name"] = recordsAt(hs, nameAt)
	inputs["fragmented early"] = recordsAt(hs, 3)
	inputs["fragmented in name"] = recordsAt(hs, nameAt+2)
	inputs["one-byte records no sni"] = records(goClientHello(t, &tls.Config{InsecureSkipVerify: true})[recordHeaderLen:], 1)
	for name, b := range inputs {
		t.Run(name, func(t *testing.T) {
			goName, parsed := cryptoTLSServerName(b)
			if !parsed {
				t.Fatal("crypto/tls did not parse the hello")
			}
			got := serverName(b)
			if errors.Is(got.err, ErrNameSplit) && goName != "" {
				return // crypto/tls joins the pieces; we report the split
			}
			if got.err != nil || got.more || got.ok != (goName != "") || got.name != goName {
				t.Fatalf("ServerName = %+v; crypto/tls says %q", got, goName)
			}
		})
	}
}

var errStop = errors.New("stop after ClientHello")

// cryptoTLSServerName feeds b to a crypto/tls server and returns the
// ServerName it saw, and whether it parsed the ClientHello at all.
func cryptoTLSServerName(b []byte) (name string, parsed bool) {
	cfg := &tls.Config{
		GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			name, parsed = hi.ServerName, true
			return nil, errStop
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = tls.Server(&bytesConn{r: bytes.NewReader(b)}, cfg).HandshakeContext(ctx)
	return name, parsed
}

// bytesConn is a net.Conn that reads from r and discards writes.
type bytesConn struct {
	net.Conn // nil; methods below are the ones crypto/tls uses
	r        *bytes.Reader
}

func (c *bytesConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *bytesConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *bytesConn) Close() error                     { return nil }
func (c *bytesConn) SetDeadline(time.Time) error      { return nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }
func (c *bytesConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *bytesConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
