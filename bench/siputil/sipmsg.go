package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// benchDomain is the company domain of bench/sip/pbxgate*.yaml.in: requests
// from it are routed to the company bench-co, so the tenant policy runs.
const benchDomain = "bench.example.com"

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
