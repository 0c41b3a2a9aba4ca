package sip_test

import (
	"fmt"
	"io"
	"strings"

	"github.com/pbxgate/pbxgate/internal/sip"
)

// A connection reader: append what arrives, cut complete frames off the
// front, route on the first request.
func ExampleFramer() {
	conn := strings.NewReader("\r\n\r\n" +
		"REGISTER sip:pbx.example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 192.0.2.7:50123;branch=z9hG4bK1\r\n" +
		"From: <sip:1001@Tenant-A.example>;tag=1\r\n" +
		"To: <sip:1001@tenant-a.example>\r\n" +
		"Call-ID: a1\r\n" +
		"CSeq: 1 REGISTER\r\n" +
		"Content-Length: 0\r\n\r\n")
	var (
		f   sip.Framer
		m   sip.Message
		buf []byte
		tmp = make([]byte, 16) // tiny reads, to show reassembly
	)
	for range 1000 { // bounded for the example
		n, err := conn.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for len(buf) > 0 {
			size, keepalive, ferr := f.Next(buf, &m)
			if ferr != nil {
				fmt.Println("drop connection:", ferr)
				return
			}
			if size == 0 {
				break
			}
			if keepalive {
				fmt.Printf("keep-alive %q\n", buf[:size])
			} else {
				fmt.Printf("%s from %s@%s, route by %s\n", m.Method, m.From.User, m.From.Host, strings.ToLower(string(m.RoutingDomain())))
			}
			buf = buf[size:]
		}
		if err == io.EOF {
			return
		}
	}
	// Output:
	// keep-alive "\r\n\r\n"
	// REGISTER from 1001@Tenant-A.example, route by tenant-a.example
}
