// Package httpproxy is the HTTP(S) side of the gateway: it routes requests by
// Host to a configured service, applies the service's path rules, sets the
// forwarding headers, reverse-proxies to the service's backend with
// [httputil.ReverseProxy], and turns what happens into security events
// (unknown host, denied or malformed path, backend unreachable, the service's
// 401/403 answers, authenticated successes). WebSocket upgrades pass through;
// clients may speak HTTP/1.x or HTTP/2 (TLS with ALPN "h2", or prior
// knowledge on plain connections).
//
// A [Handler] is immutable and built from [Options] by [New]; a reload builds
// a new Handler and installs it with [Swappable.Swap], then calls Close on the
// old one. A [Server] is one http.Server per listener fed with connections
// that the listener package has already accepted, sniffed and (maybe)
// TLS-terminated; it also reports the requests net/http rejects by itself
// (oversized headers, missing Host, malformed request lines) as events.
//
// The package does not accept connections, sniff protocols, terminate TLS,
// count events or ban anyone; it never serves anything of the gateway's own
// (no admin pages, no pprof, no health endpoint): every request either
// reaches a configured service or is refused.
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
//     path), ReasonBadRequest (400 from the handler, or 4xx/5xx that net/http
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
