package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// benchDomain is the company domain of bench/sip/pbxgate*.yaml.in: requests
// from it are routed to the company bench-co, so the tenant policy runs.
const benchDomain = "bench.example.com"

// maxMessage bounds one SIP message read from a stream (pbxgate's own
// sip.max_message is at most 65535).
const maxMessage = 65535

// register returns a REGISTER for user@benchDomain sent from local over
// transport ("UDP" or "TLS"). id makes the Call-ID, tag and branch unique.
func register(transport string, local netip.AddrPort, user string, id int) []byte {
	return fmt.Appendf(nil, "REGISTER sip:%[1]s SIP/2.0\r\n"+
		"Via: SIP/2.0/%[2]s %[3]s;branch=z9hG4bK-bench-%[5]d;rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:%[4]s@%[1]s>;tag=bench-%[5]d\r\n"+
		"To: <sip:%[4]s@%[1]s>\r\n"+
		"Call-ID: bench-%[5]d-%[6]d@%[7]s\r\n"+
		"CSeq: 1 REGISTER\r\n"+
		"Contact: <sip:%[4]s@%[3]s;transport=%[8]s>\r\n"+
		"Expires: 3600\r\n"+
		"User-Agent: pbxgate-bench\r\n"+
		"Content-Length: 0\r\n\r\n",
		benchDomain, transport, local, user, id, local.Port(), local.Addr(), strings.ToLower(transport))
}

// copied are the headers a response repeats from its request (RFC 3261
// 8.2.6.2), by full and compact name, plus Contact for a registrar's answer.
var copied = map[string]bool{
	"via": true, "v": true, "from": true, "f": true, "to": true, "t": true,
	"call-id": true, "i": true, "cseq": true, "contact": true, "m": true,
}

// answer returns a 200 OK to the SIP request msg, or nil when msg is an
// ACK (never answered), a response, or not a request with Via, From, To,
// Call-ID and CSeq. The To header gets a tag when it has none.
func answer(msg []byte) []byte {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	lines := bytes.Split(head, []byte("\r\n"))
	method, _, ok := bytes.Cut(lines[0], []byte(" "))
	if !ok || len(method) == 0 || bytes.HasPrefix(lines[0], []byte("SIP/")) || !bytes.HasSuffix(lines[0], []byte(" SIP/2.0")) {
		return nil
	}
	if string(method) == "ACK" {
		return nil
	}
	out := []byte("SIP/2.0 200 OK\r\n")
	seen := map[string]bool{}
	for _, line := range lines[1:] {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		n := string(bytes.ToLower(bytes.TrimSpace(name)))
		if !copied[n] {
			continue
		}
		switch n {
		case "v":
			n = "via"
		case "f":
			n = "from"
		case "t":
			n = "to"
		case "i":
			n = "call-id"
		case "m":
			n = "contact"
		}
		seen[n] = true
		out = append(out, line...)
		if n == "to" && !bytes.Contains(bytes.ToLower(value), []byte(";tag=")) {
			out = append(out, ";tag=bench-uas"...)
		}
		out = append(out, "\r\n"...)
	}
	for _, h := range []string{"via", "from", "to", "call-id", "cseq"} {
		if !seen[h] {
			return nil
		}
	}
	return append(out, "Server: pbxgate-bench\r\nContent-Length: 0\r\n\r\n"...)
}

// status returns the status code of a SIP response, or 0 when msg is not one.
func status(msg []byte) int {
	rest, ok := bytes.CutPrefix(msg, []byte("SIP/2.0 "))
	if !ok || len(rest) < 3 {
		return 0
	}
	code, err := strconv.Atoi(string(rest[:3]))
	if err != nil {
		return 0
	}
	return code
}

var errTooLarge = errors.New("SIP message larger than 65535 bytes")

// readMessage reads one SIP message from a stream: the head up to the empty
// line, then Content-Length bytes of body (RFC 3261 18.3). Empty lines
// before a message (CRLF keep-alives) are skipped.
func readMessage(r *bufio.Reader) ([]byte, error) {
	var msg []byte
	length := 0
	for {
		line, err := readLine(r, maxMessage-len(msg))
		if err != nil {
			if len(msg) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		blank := len(bytes.TrimRight(line, "\r\n")) == 0
		if blank && len(msg) == 0 {
			continue // keep-alive
		}
		msg = append(msg, line...)
		if blank {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		if n := string(bytes.ToLower(bytes.TrimSpace(name))); n == "content-length" || n == "l" {
			v, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil || v < 0 {
				return nil, fmt.Errorf("bad Content-Length %q", bytes.TrimSpace(value))
			}
			length = v
		}
	}
	if len(msg)+length > maxMessage {
		return nil, errTooLarge
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("SIP body: %w", err)
	}
	return append(msg, body...), nil
}

// readLine reads up to and including the next '\n', at most limit bytes.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > limit {
			return nil, errTooLarge
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			line = append(line, frag...)
			continue
		}
		if err != nil {
			return nil, err
		}
		if line == nil {
			return frag, nil // valid until the next read; the caller copies it
		}
		return append(line, frag...), nil
	}
}
