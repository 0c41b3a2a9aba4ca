package e2e

import (
	"net"
	"strings"
	"testing"
	"time"
)

// SIP through the real binary: sipp as the phones and as the PBX stand-in,
// over UDP, TCP and TLS. The policy tests are in sip_policy_test.go, the
// sipp and socat helpers in sipp_test.go.

// sipServicesConfig is a gateway with the three SIP transports (UDP and
// TCP sharing a port) in front of SIP services, each of one domain and one
// backend (the backend's UDP and TCP port).
const sipServicesConfig = `data_dir: {{.DataDir}}
listeners:
  - {name: sip-udp, address: "{{.SIP}}", transport: udp}
  - {name: sip-tcp, address: "{{.SIP}}", protocols: [sip]}
  - {name: sip-tls, address: "{{.TLS}}", tls: required, protocols: [sip]}
services:
{{- range .Services}}
  - name: {{.Name}}
    protocol: sip
    domains: ["{{.Domain}}"]
    backend: {address: "{{.Backend}}"}
{{- end}}
`

// sipService is one entry of sipServicesConfig.
type sipService struct{ Name, Domain, Backend string }

// pbxAddr returns a backend address for a sipp PBX stand-in: the loopback
// address ip (one per test, so that UDP and TCP stand-ins never collide)
// and a free port.
func pbxAddr(t testing.TB, ip string) string {
	return net.JoinHostPort(ip, portOf(freeAddr(t)))
}

func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// TestSIPTransports places calls with sipp's built-in uac scenario against
// its built-in uas, and registers with register.xml against pbx.xml,
// through the gateway over UDP, TCP and TLS. Each transport has services
// of its own, routed by the From domain: the client's address for the
// built-in uac (From: sip:sipp@<its address>), a DNS name for REGISTER.
func TestSIPTransports(t *testing.T) {
	t.Parallel()
	type transport struct {
		name     string
		ip       string // the client's address, and the domain of its calls
		tcp      bool   // sipp speaks TCP (to the gateway or to socat)
		listener string
	}
	transports := []transport{
		{"udp", "127.0.10.1", false, "sip-udp"},
		{"tcp", "127.0.10.2", true, "sip-tcp"},
		{"tls", "127.0.10.3", true, "sip-tls"},
	}
	// Backends: a built-in uas for calls and a pbx.xml for REGISTER per
	// transport, on their own addresses.
	calls, regs := map[string]string{}, map[string]string{}
	var services []sipService
	for _, tr := range transports {
		calls[tr.name] = pbxAddr(t, "127.0.10.101")
		regs[tr.name] = pbxAddr(t, "127.0.10.102")
		services = append(services,
			sipService{"calls-" + tr.name, tr.ip, calls[tr.name]},
			sipService{"reg-" + tr.name, tr.name + ".example.com", regs[tr.name]})
	}
	sipAddr, tlsAddr := freeAddr(t), freeAddr(t)
	g := startGateway(t, render(t, sipServicesConfig, map[string]any{
		"SIP": sipAddr, "TLS": tlsAddr, "Services": services,
	}))

	const nCalls, nRegs = 5, 3
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			remote := sipAddr
			if tr.name == "tls" {
				remote = tlsBridge(t, tlsAddr)
			}
			uas := startSippServer(t, sippArgs{scenario: "uas", ip: hostOf(calls[tr.name]),
				port: portOf(calls[tr.name]), tcp: tr.tcp, calls: nCalls})
			pbx := startSippServer(t, sippArgs{scenario: "pbx.xml", ip: hostOf(regs[tr.name]),
				port: portOf(regs[tr.name]), tcp: tr.tcp, calls: nRegs})

			r := runSipp(t, sippArgs{scenario: "uac", remote: remote, ip: tr.ip, tcp: tr.tcp,
				calls: nCalls, rate: 50, limit: nCalls})
			expectCalls(t, r, nCalls, 0)
			// The UAS got every request of every call, as the client sent
			// it: the gateway adds no Via.
			uas.waitReceived("BYE ", nCalls)
			for _, m := range []string{"INVITE ", "ACK ", "BYE "} {
				if n := uas.received(m); n != nCalls {
					t.Errorf("the uas received %d %q, want %d", n, m, nCalls)
				}
			}
			via := "Via: SIP/2.0/UDP " + tr.ip + ":"
			if tr.tcp {
				via = "Via: SIP/2.0/TCP " + tr.ip + ":"
			}
			if !strings.Contains(uas.trace(), via) {
				t.Errorf("the uas did not get the client's own Via %q:\n%s", via, clipTail(uas.trace(), 2000))
			}

			r = runSipp(t, sippArgs{scenario: "register.xml", remote: remote, ip: tr.ip, tcp: tr.tcp,
				calls: nRegs, rate: 50,
				keys: map[string]string{"user": "alice", "domain": tr.name + ".example.com", "ua": "pbxgate-e2e"}})
			expectCalls(t, r, nRegs, 0)
			if n := pbx.received("REGISTER "); n != nRegs {
				t.Errorf("the PBX received %d REGISTERs, want %d", n, nRegs)
			}
			if tr.name != "udp" {
				// The connections went through the listener of the
				// transport: for tls, socat's TLS connections.
				g.waitLog(map[string]string{"msg": "connection", "listener": tr.listener, "proto": "sip"})
			}
		})
	}
}

// TestSIPIncomingCall: a phone registers through the gateway, and the PBX
// calls it back on the way the REGISTER came (over UDP the gateway's flow
// for the phone, over TCP the same connection): the phone answers, the
// PBX hangs up.
func TestSIPIncomingCall(t *testing.T) {
	t.Parallel()
	pbxUDP, pbxTCP := pbxAddr(t, "127.0.11.100"), pbxAddr(t, "127.0.11.100")
	sipAddr := freeAddr(t)
	startGateway(t, render(t, sipServicesConfig, map[string]any{
		"SIP": sipAddr, "TLS": freeAddr(t), "Services": []sipService{
			{"home-udp", "udp.home.example.com", pbxUDP},
			{"home-tcp", "tcp.home.example.com", pbxTCP},
		},
	}))
	for _, tc := range []struct {
		name, phoneIP, pbx string
		tcp                bool
	}{
		{"udp", "127.0.11.1", pbxUDP, false},
		{"tcp", "127.0.11.2", pbxTCP, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			domain := tc.name + ".home.example.com"
			pbx := startSippServer(t, sippArgs{scenario: "pbx_incoming.xml", ip: hostOf(tc.pbx), port: portOf(tc.pbx),
				tcp: tc.tcp, calls: 1, timeout: 20 * time.Second,
				keys: map[string]string{"phone": "alice", "caller": "0612345678", "domain": domain}})
			phone := runSipp(t, sippArgs{scenario: "phone_incoming.xml", remote: sipAddr, ip: tc.phoneIP, tcp: tc.tcp,
				calls: 1, timeout: 20 * time.Second,
				keys: map[string]string{"user": "alice", "domain": domain}})
			expectCalls(t, phone, 1, 0)
			pr := pbx.wait()
			expectCalls(t, pr, 1, 0)
			if phone.received("INVITE sip:alice@"+domain) != 1 || phone.received("BYE ") != 1 {
				t.Errorf("the phone did not get the PBX's INVITE and BYE:\n%s", clipTail(phone.trace, 3000))
			}
			if pr.received("SIP/2.0 200 OK") != 2 { // to the INVITE and the BYE
				t.Errorf("the PBX got %d 200 OK from the phone, want 2:\n%s", pr.received("SIP/2.0 200 OK"), clipTail(pr.trace, 3000))
			}
		})
	}
}
