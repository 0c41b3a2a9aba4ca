// Package sippolicy holds the SIP edge policies the gateway applies before a
// request reaches a backend.
//
// Today it holds only the anti-flood limiter (Flood): it counts initial
// requests (requests without a To tag) per source address over a sliding
// window and, when a source goes over the limit, blocks it for a fixed time
// and tells the caller to emit one suspicious event. Trusted peers (the
// platform's own servers, carriers) and company networks are exempt.
//
// The package is pure: it parses no SIP, opens no sockets, emits no events
// and does not log; the SIP handler decides what counts as an initial
// request, drops blocked sources and emits the event. Time is passed in.
//
// Not here yet (they come later, see DESIGN.md): tenants, per-company
// allowed networks, roadwarriors, call limits and dialog tracking.
package sippolicy
