package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
	"github.com/pbxgate/pbxgate/internal/store"
	"github.com/pbxgate/pbxgate/internal/turn"
)

// route is one path's handlers by method.
type route struct {
	methods    map[string]http.HandlerFunc
	public     bool // no token needed on TCP
	socketOnly bool // refused on TCP
}

const (
	sourcesPrefix     = "/api/v1/sources/"
	allocationsPath   = "/api/v1/turn/allocations"
	allocationsPrefix = allocationsPath + "/"
)

// handler returns the HTTP handler of one listener.
func (s *Server) handler(socket bool) http.Handler {
	routes := map[string]route{
		"/healthz":             {public: true, methods: map[string]http.HandlerFunc{"GET": s.healthz}},
		"/readyz":              {public: true, methods: map[string]http.HandlerFunc{"GET": s.readyz}},
		"/metrics":             {public: true, methods: map[string]http.HandlerFunc{"GET": s.serveMetrics}},
		"/api/v1/blacklist":    {methods: s.listMethods(store.Blacklist)},
		"/api/v1/whitelist":    {methods: s.listMethods(store.Whitelist)},
		"/api/v1/events":       {methods: map[string]http.HandlerFunc{"GET": s.events}},
		"/api/v1/stats":        {methods: map[string]http.HandlerFunc{"GET": s.stats}},
		"/api/v1/token/rotate": {socketOnly: true, methods: map[string]http.HandlerFunc{"POST": s.rotateToken}},
		"/api/v1/state":        {socketOnly: true, methods: map[string]http.HandlerFunc{"GET": s.state}},
		allocationsPath:        {methods: map[string]http.HandlerFunc{"GET": s.allocations}},
	}
	sources := route{methods: map[string]http.HandlerFunc{"GET": s.source}}
	allocation := route{methods: map[string]http.HandlerFunc{"DELETE": s.endAllocation}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := routes[r.URL.Path]
		switch {
		case ok:
		case strings.HasPrefix(r.URL.Path, sourcesPrefix):
			rt, ok = sources, true
		case strings.HasPrefix(r.URL.Path, allocationsPrefix):
			rt, ok = allocation, true
		}
		if socket {
			if msg := s.checkPeer(r.Context()); msg != "" {
				writeError(w, http.StatusForbidden, msg)
				return
			}
		} else if !rt.public && !s.authorized(w, r) {
			// Unknown paths too: an unauthenticated caller learns nothing.
			return
		}
		if !ok {
			writeError(w, http.StatusNotFound, "no such endpoint: "+event.Clip(r.URL.Path, 128))
			return
		}
		if rt.socketOnly && !socket {
			writeError(w, http.StatusForbidden, "only available on the admin unix socket")
			return
		}
		h, ok := rt.methods[r.Method]
		if !ok {
			allow := make([]string, 0, len(rt.methods))
			for m := range rt.methods {
				allow = append(allow, m)
			}
			sort.Strings(allow)
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; use %s", event.Clip(r.Method, 16), strings.Join(allow, " or ")))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		h(w, r)
	})
}

func (s *Server) listMethods(l store.List) map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET":    func(w http.ResponseWriter, r *http.Request) { s.listEntries(w, r, l) },
		"POST":   func(w http.ResponseWriter, r *http.Request) { s.addEntry(w, r, l) },
		"DELETE": func(w http.ResponseWriter, r *http.Request) { s.removeEntry(w, r, l) },
	}
}

// authorized checks the bearer token; on failure it answers 401 and emits
// an event.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	var why string
	switch {
	case h == "":
		why = "missing token"
	case !strings.EqualFold(scheme, "Bearer") || token == "":
		why = "not a bearer token"
	case !s.cfg.Token.Verify(token):
		why = "wrong token"
	default:
		return true
	}
	s.sink.Emit(event.Event{
		Time:     s.now(),
		Kind:     event.RejectedByGateway,
		Source:   remoteIP(r),
		Listener: "admin",
		Proto:    "http",
		Reason:   event.ReasonAdminAuth,
		Detail:   why,
	})
	w.Header().Set("WWW-Authenticate", `Bearer realm="pbxgate"`)
	writeError(w, http.StatusUnauthorized, "unauthorized")
	return false
}

func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// who names the caller in audit log lines.
func who(r *http.Request) string {
	if pi, ok := r.Context().Value(peerKey{}).(peerInfo); ok {
		return fmt.Sprintf("socket uid %d", pi.uid)
	}
	return "tcp " + remoteIP(r).String()
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, StatusJSON{Status: "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, StatusJSON{Status: "not ready", Reason: err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, StatusJSON{Status: "ok"})
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if s.metrics == nil {
		writeError(w, http.StatusNotFound, "metrics are not enabled")
		return
	}
	s.metrics.ServeHTTP(w, r)
}

func (s *Server) listEntries(w http.ResponseWriter, r *http.Request, l store.List) {
	var filter netip.Prefix
	if a := r.URL.Query().Get("address"); a != "" {
		p, err := ParseAddress(a)
		if err != nil {
			writeError(w, http.StatusBadRequest, "query parameter address: "+err.Error())
			return
		}
		filter = p
	}
	entries, err := s.cfg.Control.Entries(r.Context(), l)
	if err != nil {
		s.controlError(w, "list "+l.String(), err)
		return
	}
	out := EntriesJSON{Entries: make([]EntryJSON, 0, len(entries))}
	for _, e := range entries {
		if filter.IsValid() && !e.Prefix.Overlaps(filter) {
			continue
		}
		out.Entries = append(out.Entries, NewEntryJSON(e))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) addEntry(w http.ResponseWriter, r *http.Request, l store.List) {
	var req EntryRequest
	if status, err := decodeBody(r, &req); err != nil {
		writeError(w, status, err.Error())
		return
	}
	p, err := ParseAddress(req.Address)
	if err != nil {
		writeError(w, http.StatusBadRequest, `field "address": `+err.Error())
		return
	}
	var d time.Duration
	if req.For != "" {
		if d, err = ParseDuration(req.For); err != nil {
			writeError(w, http.StatusBadRequest, `field "for": `+err.Error())
			return
		}
	}
	switch {
	case len(req.Note) > MaxNote:
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`field "note": longer than %d bytes`, MaxNote))
		return
	case !utf8.ValidString(req.Note):
		writeError(w, http.StatusBadRequest, `field "note": not valid UTF-8`)
		return
	}
	var e store.Entry
	if l == store.Blacklist {
		e, err = s.cfg.Control.Ban(r.Context(), p, d, req.Note)
	} else {
		e, err = s.cfg.Control.Allow(r.Context(), p, d, req.Note)
	}
	if err != nil {
		s.controlError(w, "add to "+l.String(), err)
		return
	}
	s.log.Info("entry added", "list", l.String(), "address", FormatPrefix(e.Prefix), "for", d.String(), "note", event.Clip(req.Note, 128), "by", who(r))
	writeJSON(w, http.StatusCreated, NewEntryJSON(e))
}

func (s *Server) removeEntry(w http.ResponseWriter, r *http.Request, l store.List) {
	a := r.URL.Query().Get("address")
	if a == "" {
		writeError(w, http.StatusBadRequest, "query parameter address is required")
		return
	}
	p, err := ParseAddress(a)
	if err != nil {
		writeError(w, http.StatusBadRequest, "query parameter address: "+err.Error())
		return
	}
	var (
		e     store.Entry
		found bool
	)
	if l == store.Blacklist {
		e, found, err = s.cfg.Control.Unban(r.Context(), p)
	} else {
		e, found, err = s.cfg.Control.Disallow(r.Context(), p)
	}
	if err != nil {
		s.controlError(w, "remove from "+l.String(), err)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s is not on the %s", FormatPrefix(p), l))
		return
	}
	s.log.Info("entry removed", "list", l.String(), "address", FormatPrefix(e.Prefix), "by", who(r))
	writeJSON(w, http.StatusOK, NewEntryJSON(e))
}

func (s *Server) source(w http.ResponseWriter, r *http.Request) {
	in := strings.TrimPrefix(r.URL.Path, sourcesPrefix)
	a, err := netip.ParseAddr(in)
	if err != nil || a.Zone() != "" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not an IP address", event.Clip(in, 64)))
		return
	}
	si, err := s.cfg.Control.Inspect(r.Context(), a.Unmap())
	if err != nil {
		s.controlError(w, "inspect", err)
		return
	}
	writeJSON(w, http.StatusOK, NewSourceJSON(si))
}

// AllocationsJSON is the answer of GET /api/v1/turn/allocations.
type AllocationsJSON struct {
	Allocations []turn.Allocation `json:"allocations"`
}

func (s *Server) allocations(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.TURN == nil {
		writeError(w, http.StatusNotFound, "TURN is not configured: no listener carries turn")
		return
	}
	list := s.cfg.TURN.Allocations()
	if list == nil {
		list = []turn.Allocation{}
	}
	writeJSON(w, http.StatusOK, AllocationsJSON{Allocations: list})
}

func (s *Server) endAllocation(w http.ResponseWriter, r *http.Request) {
	if s.cfg.TURN == nil {
		writeError(w, http.StatusNotFound, "TURN is not configured: no listener carries turn")
		return
	}
	in := strings.TrimPrefix(r.URL.Path, allocationsPrefix)
	id, err := strconv.ParseUint(in, 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not an allocation id", event.Clip(in, 32)))
		return
	}
	a, ok := s.cfg.TURN.End(id)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no allocation %d", id))
		return
	}
	s.log.Info("TURN allocation ended", "id", id, "user", event.Clip(a.User, 128), "client", a.Client, "relay", a.Relay, "by", who(r))
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, NewStatsJSON(s.cfg.Control.Stats(), s.cfg.Events.Dropped()))
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q, err := parseEventQuery(r.URL.Query(), s.now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if q.follow {
		s.follow(w, r, q)
		return
	}
	evs := s.cfg.Events.Recent(q.filter, q.limit)
	out := EventsJSON{Events: make([]EventJSON, len(evs))}
	for i, e := range evs {
		out.Events[i] = NewEventJSON(e)
	}
	writeJSON(w, http.StatusOK, out)
}

// followBuffer is how many events a follower may lag behind before the
// ring drops events for it.
const followBuffer = 512

// follow streams matching events as NDJSON: the recent ones, then live ones
// until the client leaves, the ring is closed or the server stops.
func (s *Server) follow(w http.ResponseWriter, r *http.Request, q eventQuery) {
	// Subscribe before reading the recent ones so nothing falls in between.
	// Events emitted between the two calls are both recent and queued on
	// live; Emit delivers under the ring's lock, so they are all queued by
	// the time Recent returns. Only that many queued events are checked
	// against the recent ones and skipped as repeats.
	live, stop := s.cfg.Events.Follow(q.filter, followBuffer)
	defer stop()
	recent := s.cfg.Events.Recent(q.filter, q.limit)
	queued := len(live)

	sw := newStreamWriter(w, s.t.streamWrite)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(sw)
	seen := make(map[event.Event]int, len(recent))
	for _, e := range recent {
		seen[e]++
		if enc.Encode(NewEventJSON(e)) != nil {
			return
		}
	}
	if sw.flush() != nil {
		return
	}
	tick := time.NewTicker(s.t.heartbeat)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-live:
			if !ok {
				return
			}
			if queued > 0 {
				queued--
				if seen[e] > 0 {
					seen[e]--
					continue
				}
			}
			if enc.Encode(NewEventJSON(e)) != nil || sw.flush() != nil {
				return
			}
		case <-tick.C:
			if _, err := sw.Write([]byte{'\n'}); err != nil || sw.flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}

func (s *Server) rotateToken(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Store == nil {
		writeError(w, http.StatusNotImplemented, "token rotation is not configured")
		return
	}
	token, err := RotateToken(r.Context(), s.cfg.Store)
	if err != nil {
		s.log.Error("token rotation failed", "err", err, "by", who(r))
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if hv, ok := s.cfg.Token.(*HashVerifier); ok {
		if err := hv.Set(HashToken(token)); err != nil { // cannot fail: HashToken's output
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
	}
	s.log.Info("admin token rotated", "by", who(r))
	writeJSON(w, http.StatusOK, TokenJSON{Token: token})
}

func (s *Server) state(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Snapshot == nil {
		writeError(w, http.StatusNotImplemented, "state snapshots are not configured")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="pbxgate-state.db"`)
	w.Header().Set("Cache-Control", "no-store")
	sw := newStreamWriter(w, s.t.streamWrite)
	err := s.cfg.Snapshot(r.Context(), sw)
	if err == nil {
		err = sw.flush()
	}
	if err == nil {
		s.log.Info("state snapshot sent", "bytes", sw.n, "by", who(r))
		return
	}
	s.log.Error("state snapshot failed", "err", err, "bytes", sw.n, "by", who(r))
	if sw.n == 0 {
		w.Header().Del("Content-Disposition")
		writeError(w, http.StatusInternalServerError, "snapshot: "+err.Error())
		return
	}
	// Part of the snapshot is out: break the response so the client sees
	// an incomplete body instead of a short, valid-looking one.
	panic(http.ErrAbortHandler)
}

// streamWriter writes a long response: each write gets its own deadline
// instead of the server's WriteTimeout for the whole response, so a stream
// lasts as long as the client keeps reading. (The read deadline needs no
// care: net/http lifts it once the request is read.)
type streamWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
	n  int64
}

func newStreamWriter(w http.ResponseWriter, d time.Duration) *streamWriter {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(d))
	return &streamWriter{w: w, rc: rc, d: d}
}

func (sw *streamWriter) Write(p []byte) (int, error) {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.d))
	n, err := sw.w.Write(p)
	sw.n += int64(n)
	return n, err
}

func (sw *streamWriter) flush() error {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.d))
	return sw.rc.Flush()
}

// controlError answers an error of the fraud engine.
func (s *Server) controlError(w http.ResponseWriter, op string, err error) {
	switch {
	case errors.Is(err, fraud.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, fraud.ErrConfigEntry):
		writeError(w, http.StatusConflict, err.Error()+"; change it in the configuration file")
	case errors.Is(err, fraud.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, op+": "+err.Error())
	default:
		s.log.Error("fraud engine failed", "op", op, "err", err)
		writeError(w, http.StatusInternalServerError, op+": "+err.Error())
	}
}

// decodeBody reads one JSON object into v, refusing unknown fields and
// trailing data. It returns the status to answer with on error.
func decodeBody(r *http.Request, v any) (int, error) {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err = dec.Token(); errors.Is(err, io.EOF) {
			return 0, nil
		}
		var maxErr *http.MaxBytesError
		if !errors.As(err, &maxErr) {
			return http.StatusBadRequest, errors.New("body: data after the JSON object")
		}
	}
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		return http.StatusRequestEntityTooLarge, fmt.Errorf("body: larger than %d bytes", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return http.StatusBadRequest, errors.New("body: empty; want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadRequest, errors.New("body: JSON ends early")
	case errors.As(err, &syntaxErr):
		return http.StatusBadRequest, fmt.Errorf("body: invalid JSON at byte %d: %s", syntaxErr.Offset, syntaxErr.Error())
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return http.StatusBadRequest, fmt.Errorf("body: want a JSON object, not %s", typeErr.Value)
		}
		return http.StatusBadRequest, fmt.Errorf("body: field %q must be a %s, not %s", typeErr.Field, typeErr.Type, typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return http.StatusBadRequest, fmt.Errorf("body: unknown field %s", event.Clip(strings.TrimPrefix(err.Error(), "json: unknown field "), 64))
	}
	return http.StatusBadRequest, fmt.Errorf("body: %s", event.Clip(err.Error(), 200))
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ErrorJSON{Error: msg})
}
