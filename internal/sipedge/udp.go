package sipedge

import (
	"net/netip"
	"strconv"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sip"
	"github.com/pbxgate/pbxgate/internal/udprelay"
)

// maxKeepAlive is the largest datagram passed through a flow without being
// SIP: CRLF keep-alives (RFC 5626), STUN binding keep-alives on the SIP
// port, and the few bytes some phones send instead.
const maxKeepAlive = 64

// UDP returns the hooks of one UDP listener's relay: Route parses the
// first datagram of a client and picks its service by domain, Inspect
// applies the policy to every datagram both ways. The caller adds the
// guard and the table limits.
func (p *Policy) UDP(listener string) udprelay.Config {
	lm := p.met.listener(listener, "udp")
	return udprelay.Config{
		Route: func(src netip.AddrPort, first []byte) (netip.AddrPort, bool) {
			return p.routeUDP(listener, lm, src, first)
		},
		Inspect: func(f *udprelay.Flow, b []byte, fromClient bool, scratch []byte) udprelay.Verdict {
			return p.inspectUDP(listener, lm, f, b, fromClient, scratch)
		},
	}
}

func (p *Policy) routeUDP(listener string, lm *listenerMetrics, src netip.AddrPort, first []byte) (netip.AddrPort, bool) {
	var m sip.Message
	s := session{listener: listener, transport: "udp", client: src}
	if err := sip.Parse(first, &m); err != nil {
		if len(first) > maxKeepAlive {
			p.emit(&s, event.RejectedByGateway, event.ReasonBadRequest, "", "not a SIP message: "+err.Error())
			lm.refuse(event.ReasonBadRequest)
		}
		return netip.AddrPort{}, false
	}
	if !m.Request {
		lm.refuse("stray_response")
		return netip.AddrPort{}, false
	}
	svc := p.route(&s, &m)
	if svc == nil {
		lm.refuse(event.ReasonUnknownDomain)
		return netip.AddrPort{}, false
	}
	if !svc.UDP.IsValid() {
		s.svc = svc
		p.emit(&s, event.RejectedByGateway, event.ReasonProtocolRefused, string(m.From.User),
			"sip service "+strconv.Quote(svc.Name)+" has no UDP backend")
		return netip.AddrPort{}, false
	}
	return svc.UDP, true
}

func (p *Policy) inspectUDP(listener string, lm *listenerMetrics, f *udprelay.Flow, b []byte, fromClient bool, scratch []byte) udprelay.Verdict {
	if fromClient {
		lm.in.Inc()
	} else {
		lm.out.Inc()
	}
	var m sip.Message
	if err := sip.Parse(b, &m); err != nil {
		if len(b) <= maxKeepAlive {
			return udprelay.Pass(b)
		}
		if fromClient {
			s := session{listener: listener, transport: "udp", client: f.Client}
			p.emit(&s, event.RejectedByGateway, event.ReasonBadRequest, "", "not a SIP message: "+err.Error())
		} else {
			p.log.Debug("unparsable datagram from the PBX dropped", "backend", f.Backend, "err", err)
		}
		lm.refuse(event.ReasonBadRequest)
		return udprelay.Verdict{}
	}
	s := session{listener: listener, transport: "udp", client: f.Client, svc: p.tab.Load().udpService(f.Backend)}
	var v verdict
	if fromClient {
		v = p.fromClient(&s, &m)
	} else {
		v = p.fromBackend(&s, &m)
	}
	half := len(scratch) / 2
	var out udprelay.Verdict
	if v.status > 0 {
		out.Reply = p.appendAnswer(scratch[half:half], b, &m, v.status)
		if len(out.Reply) == 0 {
			out.Reply = nil
		}
	}
	if !v.forward {
		lm.refuse(v.reason)
		return out
	}
	out.Forward = b
	if fromClient && m.Request && s.svc != nil && s.svc.ClientHeader != "" {
		out.Forward = appendWithClientHeader(scratch[:0:half], b, m.HeaderLen, s.svc.ClientHeader, f.Client.Addr())
	}
	return out
}

// udpService returns the service whose UDP backend is addr.
func (t *table) udpService(addr netip.AddrPort) *Service {
	return t.byUDP[addr]
}
