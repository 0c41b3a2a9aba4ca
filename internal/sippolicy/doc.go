// Package sippolicy holds the SIP edge policies the gateway applies before a
// request reaches a backend: it answers the SIP handler's questions about a
// message it has already parsed.
//
//   - Flood, the anti-flood limiter: it counts initial requests (requests
//     without a To tag) per source address over a sliding window and, when
//     a source goes over the limit, blocks it for a fixed time and tells the
//     caller to emit one suspicious event. Trusted peers (the platform's own
//     servers, carriers) and company networks are exempt.
//   - Tenants, the brands and companies (IvozProvider's model): which
//     company a SIP domain belongs to, the company's allowed networks, its
//     roadwarrior users (allowed 1-3 concurrent calls from other networks),
//     which dialled numbers are external and which are blocked, and the
//     brand and company limits of concurrent external calls.
//   - Calls, dialog tracking by Call-ID for those limits, counting through
//     a Counter: MemoryCounter for one gateway, a shared backend (Redis)
//     for a cluster later. Bare INVITEs only check the limits; slots are
//     taken by INVITEs with credentials, from the PBX, or when answered, so
//     that forged INVITEs cannot use other users' slots.
//   - Challenges, which counts the PBX's 401/407 answers per (source, user)
//     so that the handler can report password guessing without reporting
//     the first challenge of every normal registration.
//
// The package is pure: it parses no SIP, opens no sockets, emits no events
// and does not log; the SIP handler extracts domains, users and Call-IDs,
// decides what counts as an initial request, refuses calls, drops blocked
// sources and emits the events. Time is passed in. Every table is bounded
// and every type is safe for concurrent use; the lookups made per message
// do not allocate.
//
// Not here: SIP parsing (package sip), the handler that applies these
// answers and emits events, a Redis Counter, scanner detection by
// User-Agent (sip.UAMatcher), banning (package fraud) and the YAML form of
// the configuration.
package sippolicy
