package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
)

// Backend is where a service's requests go.
type Backend struct {
	// Address is the backend's "host:port". Required.
	Address string
	// TLS makes the gateway speak HTTPS to the backend (HTTP/2 when the
	// backend offers it via ALPN). Without TLS the gateway speaks HTTP/1.1;
	// it never uses cleartext HTTP/2 toward backends.
	TLS bool
	// TLSConfig is used toward TLS backends. Nil verifies the backend's
	// certificate against the system roots for the host part of Address.
	TLSConfig *tls.Config
}

// Service is one routed HTTP service.
type Service struct {
	// Name identifies the service in events and logs. Required, unique.
	Name string
	// Hosts are the lower-case host names routed here, without port:
	// "prov.example.com", or "*.example.com" for any one-label subdomain
	// (not example.com itself, not a.b.example.com). A name may appear in
	// one service only. May be empty for a service reached only as the
	// default.
	Hosts []string
	// Backend is where requests are proxied.
	Backend Backend
	// Rules are the path rules. Nil allows every path.
	Rules *Rules
	// RejectStatuses are the backend answers reported as RejectedByService
	// events. Nil means {401, 403}; an empty non-nil slice reports none.
	RejectStatuses []int
}

// Options configures a Handler.
type Options struct {
	// Listener names the listener in events and logs.
	Listener string
	// Services are the routed services.
	Services []Service
	// DefaultService names the service that gets requests whose Host
	// matches no service. Empty: such requests are answered 404.
	DefaultService string
	// TrustedProxies are the peers whose X-Forwarded-For, Forwarded and
	// X-Forwarded-* headers are believed and extended. Empty: none; those
	// headers are dropped and replaced.
	TrustedProxies []netip.Prefix
	// MaxIdleConnsPerHost bounds the idle connections kept per backend.
	// Zero means 256.
	MaxIdleConnsPerHost int
	// DialTimeout bounds connecting (and the TLS handshake) to a backend.
	// Zero means 5s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a backend's response
	// headers after the request was sent; on expiry the client gets 504.
	// Zero means 60s.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes idle backend connections. Zero means 90s.
	IdleConnTimeout time.Duration
	// AccessLog writes one info line per request to Log.
	AccessLog bool
	// Events receives the security events. Nil discards them.
	Events event.Sink
	// Allowed is the guard, asked about clients behind a trusted proxy (the
	// address from X-Forwarded-For): the listener already asked about the
	// peer at accept. A refused client gets 403 and no event. Nil allows
	// everyone.
	Allowed func(netip.Addr) bool
	// Log receives the access log and debug messages. Nil discards.
	Log *slog.Logger
}

// Defaults for zero Options fields.
const (
	DefaultMaxIdleConnsPerHost   = 256
	DefaultDialTimeout           = 5 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultIdleConnTimeout       = 90 * time.Second
)

// Handler routes, filters and proxies HTTP requests. It is immutable after
// New and safe for concurrent use.
type Handler struct {
	listener   string
	exact      map[string]*service
	wild       map[string]*service // key: the domain after "*."
	def        *service
	trusted    trustedSet
	allowed    func(netip.Addr) bool
	transports []*http.Transport
	pools      []*backendPool // lean path, one per plain-HTTP service
	accessLog  bool

	responseHeaderTimeout time.Duration
	events                event.Sink
	log                   *slog.Logger
	now                   func() time.Time
	closeOnce             sync.Once
}

type service struct {
	name   string
	rules  *Rules
	reject []int
	proxy  *httputil.ReverseProxy
	pool   *backendPool // lean path; nil for TLS backends (net/http only)
	scheme string
	addr   string
}

// New checks o and builds a Handler. Every problem is reported at once,
// each wrapping ErrConfig. New has no side effects: connections to backends
// are made on demand.
func New(o Options) (*Handler, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	if o.MaxIdleConnsPerHost < 0 {
		bad("MaxIdleConnsPerHost %d is negative", o.MaxIdleConnsPerHost)
	}
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"DialTimeout", &o.DialTimeout, DefaultDialTimeout},
		{"ResponseHeaderTimeout", &o.ResponseHeaderTimeout, DefaultResponseHeaderTimeout},
		{"IdleConnTimeout", &o.IdleConnTimeout, DefaultIdleConnTimeout},
	} {
		if *d.v < 0 {
			bad("%s %v is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Events == nil {
		o.Events = event.Discard
	}
	h := &Handler{
		listener:  o.Listener,
		exact:     make(map[string]*service),
		wild:      make(map[string]*service),
		accessLog: o.AccessLog,
		events:    o.Events,
		log:       o.Log.With("component", "httpproxy", "listener", o.Listener),
		now:       time.Now,

		responseHeaderTimeout: o.ResponseHeaderTimeout,
		allowed:               o.Allowed,
	}
	for i, p := range o.TrustedProxies {
		if !p.IsValid() {
			bad("TrustedProxies[%d] %v is not a valid prefix", i, p)
			continue
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		h.trusted = append(h.trusted, p.Masked())
	}

	shared := newTransport(o, nil)
	h.transports = append(h.transports, shared)
	errorLog := slog.NewLogLogger(h.log.Handler(), slog.LevelDebug)
	byName := make(map[string]*service)
	owner := make(map[string]string) // host → service name
	for i, sc := range o.Services {
		where := fmt.Sprintf("Services[%d] %q", i, sc.Name)
		if sc.Name == "" {
			bad("Services[%d]: empty Name", i)
		} else if byName[sc.Name] != nil {
			bad("%s: duplicate service name", where)
		}
		if err := checkBackendAddress(sc.Backend.Address); err != nil {
			bad("%s: Backend.Address: %v", where, err)
		}
		reject := sc.RejectStatuses
		if reject == nil {
			reject = []int{http.StatusUnauthorized, http.StatusForbidden}
		}
		for _, code := range reject {
			if code < 100 || code > 599 {
				bad("%s: RejectStatuses: %d is not an HTTP status", where, code)
			}
		}
		s := &service{
			name:   sc.Name,
			rules:  sc.Rules,
			reject: slices.Clone(reject),
			scheme: "http",
			addr:   sc.Backend.Address,
		}
		tr := shared
		if sc.Backend.TLS {
			s.scheme = "https"
			if sc.Backend.TLSConfig != nil {
				tr = newTransport(o, sc.Backend.TLSConfig.Clone())
				h.transports = append(h.transports, tr)
			}
		} else if sc.Backend.TLSConfig != nil {
			bad("%s: Backend.TLSConfig set but Backend.TLS is false", where)
		} else {
			s.pool = newBackendPool(sc.Backend.Address, o)
			h.pools = append(h.pools, s.pool)
		}
		s.proxy = &httputil.ReverseProxy{
			Rewrite:      h.rewrite(s),
			Transport:    markTransport{tr},
			ErrorLog:     errorLog,
			BufferPool:   proxyBuffers,
			ErrorHandler: h.proxyError(s),
		}
		for _, host := range sc.Hosts {
			if err := checkHost(host); err != nil {
				bad("%s: host %q: %v", where, host, err)
				continue
			}
			if prev, dup := owner[host]; dup {
				bad("%s: host %q already belongs to service %q", where, host, prev)
				continue
			}
			owner[host] = sc.Name
			if strings.HasPrefix(host, "*.") {
				h.wild[host[2:]] = s
			} else {
				h.exact[host] = s
			}
		}
		if sc.Name != "" && byName[sc.Name] == nil {
			byName[sc.Name] = s
		}
	}
	if o.DefaultService != "" {
		h.def = byName[o.DefaultService]
		if h.def == nil {
			bad("DefaultService %q is not a service", o.DefaultService)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return h, nil
}

func newTransport(o Options, tlsConf *tls.Config) *http.Transport {
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  nil, // never an environment proxy
		DialContext:            d.DialContext,
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    o.DialTimeout,
		MaxIdleConnsPerHost:    o.MaxIdleConnsPerHost,
		IdleConnTimeout:        o.IdleConnTimeout,
		ResponseHeaderTimeout:  o.ResponseHeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		// Pass Accept-Encoding and bodies through untouched.
		DisableCompression: true,
		// HTTP/2 only ever applies to TLS backends (ALPN); plain backends
		// get HTTP/1.1 since cleartext HTTP/2 is not enabled.
		ForceAttemptHTTP2: true,
	}
}

func checkBackendAddress(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("missing host")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

func checkHost(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if name == "" {
		return errors.New("empty")
	}
	if a, err := netip.ParseAddr(name); err == nil {
		if name != h {
			return errors.New("a wildcard needs a domain name")
		}
		if a.String() != name {
			return fmt.Errorf("write the address as %q", a.String())
		}
		return nil
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.':
			if i == 0 || i == len(name)-1 || name[i-1] == '.' {
				return errors.New("empty label")
			}
		case c >= 'A' && c <= 'Z':
			return errors.New("must be lower-case")
		default:
			return fmt.Errorf("invalid character %q (no port, no scheme)", c)
		}
	}
	return nil
}

// Close closes the idle backend connections. Requests in flight continue.
// It is idempotent; the Handler still works afterwards (a reload calls it
// on the Handler it replaced).
func (h *Handler) Close() {
	h.closeOnce.Do(func() {
		for _, t := range h.transports {
			t.CloseIdleConnections()
		}
		for _, p := range h.pools {
			p.close()
		}
	})
}

func (h *Handler) route(host string) *service {
	if host != "" {
		if s := h.exact[host]; s != nil {
			return s
		}
		if i := strings.IndexByte(host, '.'); i > 0 {
			if s := h.wild[host[i+1:]]; s != nil {
				return s
			}
		}
	}
	return h.def
}

// reqInfo is what routing, path rules, events and the access log need of
// a request. The net/http path fills it from an *http.Request, the lean
// path from its own parser; every string in it must stay valid after the
// request (events and log lines may keep them).
type reqInfo struct {
	method  string
	uri     string // request target as sent
	proto   string // "HTTP/1.1"
	host    string // Host header value as sent, "" if none
	tls     bool   // received over TLS
	sni     string // TLS server name, if any
	peer    netip.Addr
	xff     []string // X-Forwarded-For values, in order
	upgrade string   // Upgrade header value
}

// verdict is the gateway's decision about a request.
type verdict struct {
	svc    *service   // routed service, nil if none
	src    netip.Addr // the client (behind a trusted proxy, from X-Forwarded-For)
	host   string     // routing key: lower-case host without port
	path   string     // target path without query; "" if not origin-form
	status int        // 0: proxy to svc; else the gateway answers this status itself
}

// judge routes a request, checks its target and the service's path rules,
// and emits the RejectedByGateway event when the gateway refuses it. Both
// the net/http Handler and the lean path decide through it.
func (h *Handler) judge(ri *reqInfo) verdict {
	v := verdict{src: h.trusted.clientAddr(ri.peer, ri.xff)}
	if v.src != ri.peer && h.allowed != nil && !h.allowed(v.src) {
		// A banned client behind a trusted proxy: the proxy's connection
		// carries others too, so refuse the request, not the connection.
		v.status = http.StatusForbidden
		return v
	}
	host := ri.host
	if host == "" && ri.tls {
		host = ri.sni
	}
	v.host = hostKey(host)
	v.svc = h.route(v.host)
	path, pathOK := targetPathOf(ri.method, ri.uri)
	v.path = path
	if v.svc == nil {
		reason := event.ReasonUnknownHost
		if v.host == "" {
			reason = event.ReasonMissingHost
		}
		h.emit(event.RejectedByGateway, v.src, "", reason, "", event.Clip(v.host, 128))
		v.status = http.StatusNotFound
		return v
	}
	norm := path
	var err error
	switch {
	case !pathOK:
		err = errNotOriginForm
	case path != "*":
		norm, err = NormalizePath(path)
	}
	if err == nil && ri.upgrade != "" && !printableASCII(ri.upgrade) {
		err = errors.New("bad Upgrade header")
	}
	if err != nil {
		h.emit(event.RejectedByGateway, v.src, v.svc.name, event.ReasonBadRequest, "",
			err.Error()+" "+event.Clip(ri.uri, 200))
		v.status = http.StatusBadRequest
		return v
	}
	if allow, why := v.svc.rules.decide(ri.method, norm, v.src); !allow {
		h.emit(event.RejectedByGateway, v.src, v.svc.name, event.ReasonDeniedPath, "",
			why+" "+event.Clip(path, 200))
		v.status = http.StatusForbidden
	}
	return v
}

// ServeHTTP routes, checks and proxies one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	ri := reqInfo{
		method:  r.Method,
		uri:     r.RequestURI,
		proto:   r.Proto,
		host:    r.Host,
		tls:     r.TLS != nil,
		peer:    peerAddr(r.RemoteAddr),
		xff:     r.Header["X-Forwarded-For"],
		upgrade: r.Header.Get("Upgrade"),
	}
	if r.TLS != nil {
		ri.sni = r.TLS.ServerName
	}
	v := h.judge(&ri)
	rec := &recorder{ResponseWriter: w, h: h, svc: v.svc, src: v.src, req: r}
	if h.accessLog {
		defer func() {
			h.logAccess(&ri, &v, rec.status, rec.bytes, h.now().Sub(start))
		}()
	}
	if v.status != 0 {
		rec.reply(v.status)
		return
	}
	v.svc.proxy.ServeHTTP(rec, r)
}

// targetPathOf returns the path of the request target u as sent (without
// the query), "*" for "OPTIONS *", and false for any other form.
func targetPathOf(method, u string) (string, bool) {
	if u == "*" {
		return u, method == http.MethodOptions
	}
	if u == "" || u[0] != '/' {
		return "", false
	}
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u = u[:i]
	}
	return u, true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func (h *Handler) emit(k event.Kind, src netip.Addr, svc, reason, user, detail string) {
	h.events.Emit(event.Event{
		Time:     h.now(),
		Kind:     k,
		Source:   src,
		Listener: h.listener,
		Service:  svc,
		Proto:    "http",
		Reason:   reason,
		User:     user,
		Detail:   detail,
	})
}

// statusEvent reports the backend's answer code to a request carrying
// the Authorization header auth: a status in the service's reject list, or
// an accepted request that carried credentials. A 401 to a request without
// credentials is a login prompt (ReasonAuthChallenge), not a failed login;
// the fraud engine weighs it 0 by default.
func (h *Handler) statusEvent(svc *service, src netip.Addr, code int, auth string) {
	if slices.Contains(svc.reject, code) {
		reason := event.ReasonStatus
		if code == http.StatusUnauthorized && auth == "" {
			reason = event.ReasonAuthChallenge
		}
		h.emit(event.RejectedByService, src, svc.name, reason, authUser(auth), strconv.Itoa(code))
		return
	}
	if auth != "" && (code == http.StatusSwitchingProtocols || code >= 200 && code < 400) {
		h.emit(event.Success, src, svc.name, event.ReasonOK, authUser(auth), strconv.Itoa(code))
	}
}

// logAccess writes the access log line of one request.
func (h *Handler) logAccess(ri *reqInfo, v *verdict, status int, bytes int64, d time.Duration) {
	if !h.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	svc := ""
	if v.svc != nil {
		svc = v.svc.name
	}
	path := v.path
	if path == "" {
		path = ri.uri
	}
	h.log.LogAttrs(context.Background(), slog.LevelInfo, "http request",
		slog.String("src", v.src.String()),
		slog.String("host", event.Clip(v.host, 128)),
		slog.String("method", event.Clip(ri.method, 32)),
		slog.String("path", event.Clip(path, 256)),
		slog.String("proto", ri.proto),
		slog.Int("status", status),
		slog.Int64("bytes", bytes),
		slog.Duration("duration", d),
		slog.String("service", svc),
	)
}

// rewrite builds the outbound request: backend address, original target
// and Host, forwarding headers.
func (h *Handler) rewrite(s *service) func(*httputil.ProxyRequest) {
	return func(pr *httputil.ProxyRequest) {
		in, out := pr.In, pr.Out
		out.URL.Scheme = s.scheme
		out.URL.Host = s.addr
		host := in.Host
		if host == "" && in.TLS != nil {
			host = in.TLS.ServerName
			out.Host = host
		}
		proto := "http"
		if in.TLS != nil {
			proto = "https"
		}
		peer := peerAddr(in.RemoteAddr)
		hdr := out.Header
		// ReverseProxy already removed Forwarded and X-Forwarded-{For,Host,
		// Proto}; drop the other client-sent forwarding headers too.
		for k := range hdr {
			if strings.HasPrefix(k, "X-Forwarded-") {
				delete(hdr, k)
			}
		}
		delete(hdr, "X-Real-Ip")
		if h.trusted.contains(peer) {
			for k, v := range in.Header {
				if strings.HasPrefix(k, "X-Forwarded-") || k == "Forwarded" || k == "X-Real-Ip" {
					hdr[k] = slices.Clone(v)
				}
			}
		}
		if peer.IsValid() {
			ip := peer.String()
			if prior := hdr["X-Forwarded-For"]; len(prior) > 0 {
				ip = strings.Join(prior, ", ") + ", " + ip
			}
			hdr.Set("X-Forwarded-For", ip)
		}
		if len(hdr["X-Forwarded-Proto"]) == 0 {
			hdr.Set("X-Forwarded-Proto", proto)
		}
		if len(hdr["X-Forwarded-Host"]) == 0 && host != "" {
			hdr.Set("X-Forwarded-Host", host)
		}
		hdr.Add("Forwarded", forwardedElement(peer, proto, host))
	}
}

// transportError marks errors of the round trip to the backend, as opposed
// to errors ReverseProxy reports after the backend answered.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

type markTransport struct{ rt http.RoundTripper }

func (m markTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := m.rt.RoundTrip(r)
	if err != nil {
		return nil, &transportError{err}
	}
	return res, nil
}

func (h *Handler) proxyError(s *service) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		rec, ok := w.(*recorder)
		if !ok { // not reached: ServeHTTP always passes a *recorder
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		var te *transportError
		if !errors.As(err, &te) {
			// The backend answered, but relaying failed (protocol switch
			// refused, client gone). Not an unreachable backend.
			h.log.Debug("proxy error", "service", s.name, "err", err)
			if !rec.wrote {
				rec.reply(http.StatusBadGateway)
			}
			return
		}
		if r.Context().Err() != nil {
			// The client went away (or the server is shutting down): not
			// the backend's fault.
			h.log.Debug("request canceled", "service", s.name, "err", err)
			rec.reply(http.StatusBadGateway)
			return
		}
		status := http.StatusBadGateway
		if isResponseTimeout(err) {
			status = http.StatusGatewayTimeout
		}
		h.emit(event.BackendUnreachable, rec.src, s.name, event.ReasonDial, "", event.Clip(te.err.Error(), 200))
		rec.reply(status)
	}
}

// isResponseTimeout reports whether err is a timeout waiting for the
// backend's answer rather than for connecting to it.
func isResponseTimeout(err error) bool {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	return !strings.Contains(err.Error(), "TLS handshake")
}

// proxyBuffers recycles ReverseProxy's copy buffers.
var proxyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// recorder wraps the client's ResponseWriter: it notes status and size for
// the access log and emits the status events when the backend's answer
// starts.
type recorder struct {
	http.ResponseWriter
	h       *Handler
	svc     *service
	src     netip.Addr
	req     *http.Request
	status  int
	bytes   int64
	wrote   bool
	gateway bool // the gateway answered itself: no status events
}

var gatewayBodies = map[int]string{
	http.StatusBadRequest:     "400 bad request\n",
	http.StatusForbidden:      "403 forbidden\n",
	http.StatusNotFound:       "404 page not found\n",
	http.StatusBadGateway:     "502 bad gateway\n",
	http.StatusGatewayTimeout: "504 gateway timeout\n",
}

// reply sends the gateway's own short answer.
func (rec *recorder) reply(code int) {
	rec.gateway = true
	body := gatewayBodies[code]
	hdr := rec.Header()
	clear(hdr)
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	if code == http.StatusBadRequest {
		hdr.Set("Connection", "close")
	}
	rec.WriteHeader(code)
	_, _ = io.WriteString(rec, body)
}

func (rec *recorder) WriteHeader(code int) {
	if !rec.wrote && code >= 200 {
		rec.wrote = true
		rec.status = code
		if !rec.gateway && rec.svc != nil {
			rec.h.statusEvent(rec.svc, rec.src, code, rec.req.Header.Get("Authorization"))
		}
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(p []byte) (int, error) {
	if !rec.wrote {
		rec.WriteHeader(http.StatusOK)
	}
	n, err := rec.ResponseWriter.Write(p)
	rec.bytes += int64(n)
	return n, err
}

// Flush sends buffered data to the client.
func (rec *recorder) Flush() {
	if !rec.wrote {
		rec.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(rec.ResponseWriter).Flush()
}

// Hijack takes over the client connection; ReverseProxy does so after the
// backend answered 101 Switching Protocols.
func (rec *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(rec.ResponseWriter).Hijack()
	if err == nil && !rec.wrote {
		rec.wrote = true
		rec.status = http.StatusSwitchingProtocols
		if !rec.gateway && rec.svc != nil {
			rec.h.statusEvent(rec.svc, rec.src, http.StatusSwitchingProtocols, rec.req.Header.Get("Authorization"))
		}
	}
	return c, brw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }
