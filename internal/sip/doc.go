// Package sip scans SIP messages (RFC 3261) for the few values the gateway
// needs to route and police them, and frames SIP messages on stream
// transports (TCP, TLS).
//
// Parse reads one message head – the start line and the header fields up to
// the empty line – from a caller's buffer into a Message whose fields are
// sub-slices of that buffer: request or response, method, Request-URI and
// its user and host, status code, From and To user, host and tag, Call-ID,
// CSeq, the top Via value, User-Agent, Content-Length and the Digest
// username of Authorization or Proxy-Authorization. Message.RoutingDomain
// returns the routing key: the From-URI host of a request, else its
// Request-URI host. Framer.Next finds where the first message (head plus
// Content-Length body) or CRLF keep-alive ends in a stream buffer.
//
// Parse and Framer.Next are pure, bounded by their input, never panic and do
// not allocate; only the *ParseError returned for bad input is allocated.
//
// The scanner is strict where leniency would let the gateway and the service
// behind it read one message differently: obsolete line folding, bare CR or
// LF, raw control characters other than HTAB, duplicated From, To, Call-ID or
// CSeq, Content-Length values that disagree or reach 2^31, a start line with
// extra whitespace or a version other than SIP/2.0, a CSeq method that
// differs from the request method, headers in a SIP Request-URI, a malformed
// top Via or Digest credentials, and a message without From, To, Call-ID,
// CSeq or Via are errors. RFC 4475 calls a few such messages valid (wsinv,
// esc01, semiuri fold lines; intmeth has raw control characters); they are
// refused on purpose. Nothing is unescaped, lower-cased or otherwise
// normalised: methods are case-sensitive (RFC 3261 7.1), hosts are compared
// with bytes.EqualFold by the caller, users keep their percent escapes.
// Header and parameter names are matched case-insensitively and the compact
// forms f, t, i, l and v are understood.
//
// Two helpers serve the gateway's own answers and policy: AppendResponse
// builds the bodiless response the gateway itself sends to a request (Via,
// From, To with tag, Call-ID and CSeq copied), and UAMatcher recognises
// scanner User-Agents such as DefaultScannerAgents.
//
// The package does not parse bodies (SDP), Contact, Route or any header not
// listed above, checks no more of Via than the top value's syntax, modifies
// no message and builds none but those responses, and does no I/O, logging
// or event emission. Where a full parse is needed, use
// github.com/emiago/sipgo/sip.
package sip
