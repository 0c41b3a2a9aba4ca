// Package admin is pbxgate's operator interface: a small JSON API over HTTP
// on its own listeners (a TCP address that needs the admin token, and a unix
// socket whose callers are trusted by the file's permission and their uid),
// the Prometheus metrics of the gateway, and the admin token itself (made
// once, kept only as a hash in the state store, rotated on demand).
//
// The API lists, adds and removes blacklist and whitelist entries, explains
// why an address is or is not refused, lists and follows the recent event
// stream, and reports the fraud engine's counters. It also serves /healthz,
// /readyz and /metrics without authentication; the metrics carry no address
// or user name in any label.
//
// The package decides nothing about sources: bans, escalation and the
// whitelist are the fraud engine's (reached through Control), durable state
// is package store's. It does not serve the proxy listeners and is never
// reachable through them. The wire types (EntryJSON, EventJSON, ...) are
// defined here once and shared with package adminclient.
package admin
