package sniff

import (
	"crypto/tls"
	"testing"
)

func BenchmarkClassify(b *testing.B) {
	inputs := []struct{ name, in string }{
		{"tls", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
		{"http-get", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"http-options", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"h2", h2PrefaceString},
		{"sip-register", "REGISTER sip:example.com SIP/2.0\r\n\r\n"},
		{"sip-options", "OPTIONS sip:100@pbx.example.com;transport=tcp SIP/2.0\r\n\r\n"},
		{"ldap", "\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x80\x00"},
		{"garbage", "BREW /pot HTTP/1.1\r\n"},
	}
	for _, in := range inputs {
		buf := []byte(in.in)
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Classify(buf)
			}
		})
	}
}

func BenchmarkServerName(b *testing.B) {
	pq := goClientHello(b, &tls.Config{ServerName: "pbx.example.com"})
	inputs := []struct {
		name string
		in   []byte
	}{
		{"go-pq", pq},
		{"go-x25519", goClientHello(b, &tls.Config{ServerName: "pbx.example.com", CurvePreferences: []tls.CurveID{tls.X25519}})},
		{"go-no-sni", goClientHello(b, &tls.Config{InsecureSkipVerify: true})},
		{"go-pq-64-byte-records", records(pq[recordHeaderLen:], 64)},
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.in)))
			for b.Loop() {
				if _, _, more, err := ServerName(in.in); more || err != nil {
					b.Fatal(more, err)
				}
			}
		})
	}
}
