// Package httpproxy is the HTTP(S) side of the gateway: it routes requests by
// Host to a configured service, applies the service's path rules, sets the
// forwarding headers, reverse-proxies to the service's backend, and turns
// what happens into security events (unknown host, denied or malformed
// path, backend unreachable, the service's 401/403 answers, authenticated
// successes). WebSocket upgrades pass through; clients may speak HTTP/1.x
// or HTTP/2 (TLS with ALPN "h2", or prior knowledge on plain connections).
//
// A [Handler] is immutable and built from [Options] by [New]; a reload builds
// a new Handler and installs it with [Swappable.Swap], then calls Close on the
// old one. A [Server] serves the connections of one listener, which the
// listener package has already accepted, sniffed and (maybe) TLS-terminated
// and hands over with [Server.ServeConn].
//
// The package does not accept connections, sniff protocols, terminate TLS,
// count events or ban anyone; it never serves anything of the gateway's own
// (no admin pages, no pprof, no health endpoint): every request either
// reaches a configured service or is refused.
//
// # Two paths
//
// The lean path serves HTTP/1.1 on plain connections and on TLS-terminated
// ones that did not negotiate h2, when the Server's handler is a
// [Swappable] or [Handler] (and [ServerOptions].NetHTTPOnly is off). It is a
// loop of its own, one goroutine per connection:
//
//   - it waits for a request without holding a buffer (plain TCP: until the
//     socket is readable; TLS: a one-byte read), then reads the head into a
//     pooled buffer, at most MaxHeaderBytes+4096 (431 beyond), within
//     ReadHeaderTimeout; idle connections close after IdleTimeout;
//   - it parses the head strictly (h1parse.go): obsolete line folding, bare
//     CR or LF, whitespace before a colon, invalid name or value bytes,
//     conflicting Content-Length fields, Content-Length together with
//     Transfer-Encoding, or any Transfer-Encoding but a single "chunked" are
//     answered 400 with a ReasonBadRequest event, so that no request can be
//     framed one way by the gateway and another by the backend;
//   - it decides with the same code as the net/http path (routing, target
//     and path rule checks, client address, events);
//   - it rewrites the head (hop-by-hop fields dropped, forwarding fields
//     set as described below), keeps the request target as sent, and
//     streams the body, re-framing chunked bodies, over a keep-alive
//     connection from a per-service pool (at most MaxIdleConnsPerHost idle,
//     closed after IdleConnTimeout, dialed within DialTimeout); an
//     idempotent request without body that fails on a reused connection
//     before any answer is retried once on a new one;
//   - it relays 1xx answers, then the response with hop-by-hop fields
//     dropped and its body streamed (no body for HEAD, 204, 304; chunked
//     bodies re-framed; a body delimited by the backend closing ends with
//     the client connection closed too). It does not add Date or
//     Content-Type fields the backend did not send;
//   - on Linux it reads and writes plaintext sockets (client and backend)
//     with raw non-blocking system calls, waiting in the netpoller, rather
//     than through net.Conn, which keeps the scheduler from handing the P
//     between threads and waking sysmon on every call (sockio.go).
//
// Everything else goes to net/http at a request boundary, with the bytes
// already read replayed: the HTTP/2 preface, protocol upgrades (WebSocket),
// HTTP/1.0, an Expect other than 100-continue, absolute-form and CONNECT
// targets, a Connection field naming more than 16 fields, services with a
// TLS backend, and an empty Swappable. The net/http path is one
// http.Server per listener with [httputil.ReverseProxy]; it serves HTTP/2
// and h2 TLS connections from the start, and reports the requests net/http
// rejects by itself (oversized headers, missing Host, malformed request
// lines) as events. Both paths answer and report alike; the tests run
// against both.
//
// # Forwarding fields
//
// Forwarded, X-Real-Ip and every X-Forwarded-* field from a peer that is
// not a trusted proxy are dropped; a trusted proxy's are kept. Then
// X-Forwarded-For becomes one field: the kept values and the peer address;
// X-Forwarded-Proto ("http" or "https") and X-Forwarded-Host (the Host as
// received, or the TLS server name) are set unless kept; and a Forwarded
// element (for, proto, host) is appended.
//
// # Path rules
//
// Path rules are compiled by [CompileRules] and evaluated by [Rules.Decide]:
//
//  1. A deny rule whose pattern, method and network all match denies.
//  2. An allow rule whose pattern, method and network all match allows. If some
//     allow rule matches the path but none matches the method and network, the
//     request is denied: the path is reserved to those methods and sources.
//  3. Otherwise the default decides; an empty default is "deny" when there are
//     allow rules and "allow" when there are none.
//
// Patterns: "= /index.php" matches exactly that path; a pattern containing
// '*', '?' or '[' is a glob ('*' matches within one path segment, '**'
// across segments, "/**/" also matches a single "/"); anything else is a
// prefix ("/app/provision/"). A method list containing GET also covers
// HEAD. Matching is case-sensitive, like URLs.
//
// Matching uses the normalized path ([NormalizePath]): percent-decoded,
// dot segments removed, repeated slashes collapsed. Requests whose path holds
// an encoded slash, a backslash, control bytes or a bad escape, or whose
// target is not origin-form ("/...", or "*" for OPTIONS), are answered 400.
// The request sent to the backend keeps its original target; see
// [NormalizePath] for why that is safe.
//
// # Events
//
// All with Proto "http"; Source is the client (behind a trusted proxy, the
// right-most untrusted X-Forwarded-For address):
//   - RejectedByGateway: ReasonUnknownHost / ReasonMissingHost (404, Detail
//     the host), ReasonDeniedPath (403, Detail the deciding rule and the
//     path), ReasonBadRequest (400 from the handler, a malformed head or
//     chunked body refused by the lean path, or 4xx/5xx that net/http
//     answered by itself: Detail the status line);
//   - BackendUnreachable, ReasonDial: connect, TLS or connection failure
//     (502) and response header timeout (504), Detail the error;
//   - RejectedByService, ReasonStatus: the backend answered a status in the
//     service's RejectStatuses, Detail the code;
//   - Success, ReasonOK: a request carrying Authorization was answered 2xx,
//     3xx or 101 (WebSocket accepted).
//
// User is the name the Authorization header claims (Basic user, Digest
// username), unverified and clipped.
package httpproxy
