package sipedge

import (
	"bytes"
	"encoding/binary"
	"net/netip"
)

// appendWithClientHeader appends msg (a message Parse accepted, head of
// headLen bytes) to dst with every header named name removed and
// "name: addr" added as the last header. name is a valid header token.
// It returns the extended buffer; nothing else of the message changes, the
// body and Content-Length included.
func appendWithClientHeader(dst, msg []byte, headLen int, name string, addr netip.Addr) []byte {
	head, body := msg[:headLen], msg[headLen:]
	// The start line.
	i := bytes.Index(head, crlf)
	if i < 0 {
		return append(dst, msg...)
	}
	dst = append(dst, head[:i+2]...)
	rest := head[i+2:]
	for len(rest) > 2 { // the final CRLF is the empty line
		j := bytes.Index(rest, crlf)
		if j < 0 {
			break
		}
		line := rest[:j+2]
		rest = rest[j+2:]
		if !isHeader(line, name) {
			dst = append(dst, line...)
		}
	}
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = addr.AppendTo(dst)
	dst = append(dst, crlf...)
	dst = append(dst, crlf...)
	return append(dst, body...)
}

var crlf = []byte("\r\n")

// isHeader reports whether line is a header field named name
// (case-insensitive, whitespace allowed before the colon).
func isHeader(line []byte, name string) bool {
	if len(line) < len(name)+1 || !bytes.EqualFold(line[:len(name)], []byte(name)) {
		return false
	}
	rest := bytes.TrimLeft(line[len(name):], " \t")
	return len(rest) > 0 && rest[0] == ':'
}

// proxyV2Sig is the PROXY protocol version 2 signature.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// appendProxyV2 appends a PROXY protocol v2 header (command PROXY, stream
// over IPv4 or IPv6) saying the connection comes from src to dst. Mixed
// families are sent as IPv6 with the IPv4 address mapped.
func appendProxyV2(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, proxyV2Sig...)
	b = append(b, 0x21) // version 2, PROXY
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() && d.Is4() {
		b = append(b, 0x11) // TCP over IPv4
		b = binary.BigEndian.AppendUint16(b, 12)
		b = append(b, s.AsSlice()...)
		b = append(b, d.AsSlice()...)
	} else {
		b = append(b, 0x21) // TCP over IPv6
		b = binary.BigEndian.AppendUint16(b, 36)
		s16, d16 := s.As16(), d.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}
