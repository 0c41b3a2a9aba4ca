// Package sipedge is the gateway's SIP handler: it routes SIP over UDP,
// TCP, TLS and WebSocket to the service owning the first request's domain
// and applies the SIP edge policy to every message in both directions.
//
// A Policy holds what outlives a configuration reload (the anti-flood
// limiter, the calls being tracked, the challenge counters) and the current
// routing and tenant tables, swapped atomically by Reconfigure. The
// transports share it:
//
//   - UDP: UDPConfig turns it into an udprelay.Config (Route and Inspect
//     hooks); the relay keeps one flow per client address.
//   - TCP and TLS: Stream is a listen.Handler that frames messages with
//     sip.Framer in both directions.
//   - WebSocket (RFC 7118): WebSocket is an http.Handler for upgrades
//     offering the "sip" subprotocol, relayed to the service's backend
//     WebSocket one SIP message per WebSocket message.
//
// Policy, in order, for a request from a client: scanner User-Agents are
// dropped silently; initial requests (no To tag) count toward the source's
// flood limit and a blocked source gets no answer at all; a company's IP
// filter answers REGISTER and INVITE from outside its networks with 403
// unless the user is a roadwarrior; INVITEs to blocked destinations get
// 403; initial INVITEs are checked against the brand, company and
// roadwarrior call limits (403). Requests from the PBX: incoming INVITEs
// over a limit get 486. Answers from the PBX feed fraud detection: 2xx to
// REGISTER is a success, 403/404 to REGISTER or INVITE and repeated 401/407
// to one (source, user) are rejections by the service, with the user.
//
// The gateway's own answers are proper SIP responses (Via, From, To with a
// tag, Call-ID and CSeq copied); ACKs to them are absorbed. Parsing is
// internal/sip's allocation-free scanner; nothing else is parsed.
//
// What it does not do: it is no SIP proxy. It adds no Via or Record-Route
// and rewrites nothing but the optional client address header, so the PBX
// must handle NAT (rport, received) itself; see docs/operations.md.
package sipedge
