package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pbxgate/pbxgate/internal/backend"
	"github.com/pbxgate/pbxgate/internal/certs"
	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/httpproxy"
	"github.com/pbxgate/pbxgate/internal/ldap"
	"github.com/pbxgate/pbxgate/internal/listen"
	"github.com/pbxgate/pbxgate/internal/sipedge"
	"github.com/pbxgate/pbxgate/internal/sniff"
	"github.com/pbxgate/pbxgate/internal/turn"
)

// runtime is everything built from one configuration. It is immutable once
// built; a reload builds a new one.
type runtime struct {
	cfg        *config.Config
	certs      *certs.Store
	selfSigned string // path of the self-signed certificate in use, or ""
	firstCert  string // name of the first certificate: the default default
	dialers    map[string]*backend.Dialer
	listeners  map[string]*listenerRT
	sip        sipedge.Config
	turn       turn.Settings
	warnings   []string
}

// listenerRT is one listener's part of a runtime.
type listenerRT struct {
	tlsMode  listen.TLSMode
	tls      *tls.Config
	http     *httpproxy.Handler // nil when the listener carries no HTTP
	ldap     listen.Handler
	tcp      listen.Handler
	sip      listen.Handler // SIP over TCP/TLS
	ws       http.Handler   // SIP over WebSocket
	turn     listen.Handler // STUN/TURN over TCP/TLS
	udp      bool           // a udp listener: the relay takes its tables from rt.sip
	maxConns int
}

// build turns cfg into a runtime. It opens no socket and changes nothing
// outside what it returns, except writing the self-signed certificate into
// the data directory when one is needed and missing.
func (g *Gateway) build(cfg *config.Config) (*runtime, error) {
	return g.buildMode(cfg, false)
}

// buildMode is build; with dry set it writes nothing (no self-signed
// certificate is generated) so `pbxgate check` has no side effects.
func (g *Gateway) buildMode(cfg *config.Config, dry bool) (*runtime, error) {
	rt := &runtime{
		cfg:       cfg,
		dialers:   make(map[string]*backend.Dialer),
		listeners: make(map[string]*listenerRT),
		warnings:  cfg.Warnings(),
	}
	var errs []error
	fail := func(err error) { errs = append(errs, err) }

	if err := rt.loadCerts(cfg, dry); err != nil {
		fail(err)
	}
	minTLS := uint16(tls.VersionTLS12)
	if cfg.TLS.MinVersion == "1.3" {
		minTLS = tls.VersionTLS13
	}
	for i, s := range cfg.Services {
		d, err := newDialer(cfg, s, minTLS)
		if err != nil {
			fail(fmt.Errorf("%s (service %s): %w", cfg.Where(fmt.Sprintf("services[%d].backend", i)), s.Name, err))
			continue
		}
		rt.dialers[s.Name] = d
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sc, err := rt.buildSIP(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Where("sip"), err)
	}
	rt.sip = sc
	if cfg.ServesTURN() {
		if g.turn == nil {
			return nil, fmt.Errorf("%s: %w", cfg.Where("turn"), errTURNAtStart)
		}
		if rt.turn, err = turnSettings(cfg, g.accessLog(cfg)); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Where("turn"), err)
		}
	}
	for i, lc := range cfg.Listeners {
		lrt, err := g.buildListener(rt, lc, minTLS)
		if err != nil {
			fail(fmt.Errorf("%s (listener %s): %w", cfg.Where(fmt.Sprintf("listeners[%d]", i)), lc.Name, err))
			continue
		}
		rt.listeners[lc.Name] = lrt
	}
	if len(errs) > 0 {
		rt.close()
		return nil, errors.Join(errs...)
	}
	return rt, nil
}

func (rt *runtime) loadCerts(cfg *config.Config, dry bool) error {
	needTLS := false
	for _, lc := range cfg.Listeners {
		if lc.TLS != "" && lc.TLS != "none" {
			needTLS = true
		}
	}
	var pairs []certs.Pair
	for _, c := range cfg.TLS.Certificates {
		name := c.Name
		if name == "" {
			name = strings.TrimSuffix(filepath.Base(c.Cert), filepath.Ext(c.Cert))
		}
		pairs = append(pairs, certs.Pair{Name: name, CertFile: c.Cert, KeyFile: c.Key, Hosts: c.Hosts})
	}
	if len(pairs) == 0 && needTLS {
		var hosts []string
		for _, s := range cfg.Services {
			hosts = append(hosts, s.Hosts...)
		}
		dir := cfg.DataDir
		if dry {
			// check writes nothing into the data directory: it builds with
			// a throw-away certificate and says what serve would do.
			tmp, err := os.MkdirTemp("", "pbxgate-check-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
			rt.warnings = append(rt.warnings, "no tls.certificates: serve will generate a self-signed certificate in "+cfg.DataDir)
		}
		p, _, err := certs.SelfSigned(dir, hosts, time.Now())
		if err != nil {
			return fmt.Errorf("self-signed certificate: %w", err)
		}
		pairs = append(pairs, p)
		if !dry {
			rt.selfSigned = p.CertFile
		}
	}
	if len(pairs) == 0 {
		return nil
	}
	rt.firstCert = pairs[0].Name
	st, err := certs.Load(pairs)
	if err != nil {
		return locateCertErrors(cfg, err)
	}
	rt.certs = st
	return nil
}

func newDialer(cfg *config.Config, s config.Service, minTLS uint16) (*backend.Dialer, error) {
	o := backend.Options{
		Address:            s.Backend.Address,
		TLS:                s.Backend.TLS,
		ServerName:         s.Backend.ServerName,
		InsecureSkipVerify: s.Backend.InsecureSkipVerify,
		ConnectTimeout:     cfg.Timeouts.BackendConnect.D(),
	}
	if s.Backend.TLS {
		o.MinTLSVersion = minTLS
	}
	if s.Backend.CA != "" {
		pool, err := backend.LoadCAFile(s.Backend.CA)
		if err != nil {
			return nil, err
		}
		o.RootCAs = pool
	}
	return backend.New(o)
}

func (g *Gateway) buildListener(rt *runtime, lc config.Listener, minTLS uint16) (*listenerRT, error) {
	cfg := rt.cfg
	if lc.Transport == config.TransportUDP {
		return &listenerRT{udp: true}, nil
	}
	lrt := &listenerRT{maxConns: lc.MaxConnections}
	if lrt.maxConns == 0 {
		lrt.maxConns = cfg.Limits.MaxConnections
	}
	protos := map[string]bool{}
	for _, p := range lc.Protocols {
		protos[p] = true
	}
	switch lc.TLS {
	case "required":
		lrt.tlsMode = listen.TLSRequired
	case "optional":
		lrt.tlsMode = listen.TLSOptional
	default:
		lrt.tlsMode = listen.TLSNone
	}
	if lrt.tlsMode != listen.TLSNone {
		var next []string
		if protos["http"] {
			next = []string{"h2", "http/1.1", "http/1.0"}
		} else if protos[config.ProtoSIPWS] {
			next = []string{"http/1.1"}
		}
		def := lc.Certificate
		if def == "" {
			def = rt.firstCert
		}
		tc, err := certs.ServerConfig(rt.certs, def, lc.StrictSNI, minTLS, next)
		if err != nil {
			return nil, err
		}
		lrt.tls = tc
	}
	if protos["http"] {
		h, err := g.buildHTTP(rt, lc)
		if err != nil {
			return nil, err
		}
		lrt.http = h
	}
	if protos["ldap"] {
		p, err := g.buildLDAP(rt, lc)
		if err != nil {
			return nil, err
		}
		lrt.ldap = accessLogged(p, "ldap", lc.Name, g.accessLog(cfg))
	}
	if protos[config.ProtoSIP] {
		lrt.sip = accessLogged(g.sip.Stream(lc.Name), "sip", lc.Name, g.accessLog(cfg))
	}
	if protos[config.ProtoSIPWS] {
		lrt.ws = g.sip.WebSocket(lc.Name, requestAddr)
	}
	if protos[config.ProtoTURN] {
		lrt.turn = g.turn.Stream(lc.Name) // logs its connections when they close
	}
	if protos["tcp"] {
		d := rt.dialers[lc.TCPService]
		if d == nil {
			return nil, fmt.Errorf("tcp_service %q is not a known service", lc.TCPService)
		}
		fw := &tcpForwarder{
			listener: lc.Name, service: lc.TCPService, dial: d.Dial,
			idle: cfg.Timeouts.Idle.D(), events: g.events,
		}
		lrt.tcp = accessLogged(fw, "tcp", lc.Name, g.accessLog(cfg))
	}
	return lrt, nil
}

func (g *Gateway) accessLog(cfg *config.Config) *slog.Logger {
	if cfg.Log.Access != nil && !*cfg.Log.Access {
		return nil
	}
	return g.base.With("component", "access")
}

func (g *Gateway) buildHTTP(rt *runtime, lc config.Listener) (*httpproxy.Handler, error) {
	cfg := rt.cfg
	var svcs []httpproxy.Service
	for _, s := range cfg.Services {
		if s.Protocol != "http" {
			continue
		}
		rules, err := httpproxy.CompileRules(rulesSpec(s.Paths))
		if err != nil {
			return nil, fmt.Errorf("service %s paths: %w", s.Name, err)
		}
		d := rt.dialers[s.Name]
		hosts := make([]string, len(s.Hosts))
		for i, h := range s.Hosts {
			hosts[i] = strings.ToLower(strings.TrimSuffix(h, "."))
		}
		svcs = append(svcs, httpproxy.Service{
			Name:           s.Name,
			Hosts:          hosts,
			Backend:        httpproxy.Backend{Address: s.Backend.Address, TLS: s.Backend.TLS, TLSConfig: d.TLSConfig()},
			Rules:          rules,
			RejectStatuses: s.RejectStatuses,
		})
	}
	return httpproxy.New(httpproxy.Options{
		Listener:              lc.Name,
		Services:              svcs,
		DefaultService:        lc.DefaultService,
		TrustedProxies:        config.Networks(lc.TrustedProxies),
		MaxIdleConnsPerHost:   cfg.Limits.BackendIdleConns,
		DialTimeout:           cfg.Timeouts.BackendConnect.D(),
		ResponseHeaderTimeout: cfg.Timeouts.BackendResponse.D(),
		AccessLog:             g.accessLog(cfg) != nil,
		Events:                g.events,
		Allowed:               g.guard(),
		Log:                   g.base,
	})
}

// admit is the suspect gate; nil in Check, which serves nothing.
func (g *Gateway) admit() func(context.Context, netip.Addr) (func(), bool) {
	if g.sec == nil {
		return nil
	}
	return g.sec.admit
}

// guard is the check asked about clients behind trusted proxies; nil in
// Check, which serves nothing.
func (g *Gateway) guard() func(netip.Addr) bool {
	if g.sec == nil {
		return nil
	}
	return g.sec.allowed
}

func rulesSpec(p config.PathRules) httpproxy.RulesSpec {
	conv := func(rs []config.PathRule) []httpproxy.RuleSpec {
		var out []httpproxy.RuleSpec
		for _, r := range rs {
			out = append(out, httpproxy.RuleSpec{Pattern: r.Path, Methods: r.Methods, Networks: config.Networks(r.Networks)})
		}
		return out
	}
	return httpproxy.RulesSpec{Default: p.Default, Allow: conv(p.Allow), Deny: conv(p.Deny)}
}

func (g *Gateway) buildLDAP(rt *runtime, lc config.Listener) (*ldap.Proxy, error) {
	cfg := rt.cfg
	routes := map[string]ldap.Target{}
	for _, s := range cfg.Services {
		if s.Protocol != "ldap" {
			continue
		}
		t := ldap.Target{Service: s.Name, Dial: rt.dialers[s.Name].Dial}
		for _, d := range s.Domains {
			routes[strings.ToLower(strings.TrimSuffix(d, "."))] = t
		}
	}
	policy := func(v string) *ldap.Target {
		if v == "" || v == "refuse" {
			return nil
		}
		d := rt.dialers[v]
		if d == nil {
			return nil
		}
		return &ldap.Target{Service: v, Dial: d.Dial}
	}
	return ldap.New(ldap.Options{
		Listener:   lc.Name,
		Routes:     routes,
		Anonymous:  policy(cfg.LDAP.Anonymous),
		SASL:       policy(cfg.LDAP.SASL),
		StartTLS:   policy(cfg.LDAP.StartTLS),
		Default:    policy(cfg.LDAP.DefaultService),
		MaxMessage: cfg.Limits.LDAPMaxMessage,
		Idle:       cfg.Timeouts.Idle.D(),
		Events:     g.events,
		Log:        g.base.With("component", "ldap", "listener", lc.Name),
	})
}

// listenConfig is the listen.Config of listener l under rt.
func (g *Gateway) listenConfig(rt *runtime, l *liveListener) listen.Config {
	lrt := rt.listeners[l.name]
	cfg := rt.cfg
	handlers := map[sniff.Proto]listen.Handler{}
	l.mux.Store(&sipMux{ws: lrt.ws, http: httpOrNil(lrt.http != nil, l.hh)})
	if lrt.http != nil || lrt.ws != nil {
		h := listen.HandlerFunc(func(_ context.Context, c net.Conn, _ netip.Addr) error {
			return l.http.ServeConnHere(c)
		})
		handlers[sniff.HTTP] = h
		handlers[sniff.HTTP2] = h
	}
	if lrt.ldap != nil {
		handlers[sniff.LDAP] = lrt.ldap
	}
	if lrt.sip != nil {
		handlers[sniff.SIP] = lrt.sip
	}
	if lrt.turn != nil {
		handlers[sniff.STUN] = lrt.turn
	}
	return listen.Config{
		TLSMode:           lrt.tlsMode,
		TLS:               lrt.tls,
		Handlers:          handlers,
		Fallback:          lrt.tcp,
		MaxConns:          lrt.maxConns,
		FirstBytesTimeout: cfg.Timeouts.FirstBytes.D(),
		HandshakeTimeout:  cfg.Timeouts.TLSHandshake.D(),
		SniffBuffer:       cfg.Limits.SniffBytes,
		Allowed:           g.guard(),
		RefusedHold:       cfg.Fraud.RefusedHold.D(),
		Admit:             g.admit(),
		AdmitHold:         unprovenHold,
	}
}

func (g *Gateway) newListener(ctx context.Context, rt *runtime, lc config.Listener) (*liveListener, error) {
	if lc.Transport == config.TransportUDP {
		if isTURN(lc) {
			return g.newTURNListener(ctx, lc)
		}
		return g.newUDPListener(ctx, rt, lc)
	}
	ln, err := listen.Listen(ctx, "tcp", lc.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", lc.Name, err)
	}
	cfg := rt.cfg
	l := &liveListener{name: lc.Name, addr: lc.Address, transport: config.TransportTCP, ln: ln, sec: g.sec, hh: &httpproxy.Swappable{}}
	l.http = httpproxy.NewServer(httpproxy.ServerOptions{
		ReadHeaderTimeout: cfg.Timeouts.HTTPReadHeader.D(),
		IdleTimeout:       cfg.Timeouts.HTTPIdle.D(),
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		Log:               g.base,
		Events:            g.events,
		Listener:          lc.Name,
		// Plain HTTP/1.1 requests take the lean path straight to hh;
		// upgrades (SIP over WebSocket) reach l's mux through net/http.
		Lean: l.hh,
	}, l)
	if h := rt.listeners[lc.Name].http; h != nil {
		l.hh.Swap(h)
	}
	srv, err := listen.New(listen.Options{
		Name:   lc.Name,
		Events: g.events,
		Log:    g.base.With("component", "listen", "listener", lc.Name),
	}, g.listenConfig(rt, l))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listener %s: %w", lc.Name, err)
	}
	l.srv = srv
	return l, nil
}

// reconfigureLocked moves an unchanged listener onto the tables of rt.
func (g *Gateway) reconfigureLocked(l *liveListener, rt *runtime, lc config.Listener) error {
	if l.turn != nil {
		return nil // the TURN server's settings are reconfigured as a whole
	}
	if l.relay != nil {
		return l.relay.Reconfigure(g.udpConfig(rt, lc))
	}
	if err := l.srv.Reconfigure(g.listenConfig(rt, l)); err != nil {
		return err
	}
	// The old handler is closed with the old runtime.
	l.hh.Swap(rt.listeners[lc.Name].http)
	return nil
}

// warn logs the configuration audit and the self-signed certificate warning.
// It runs at every start and reload on purpose.
func (rt *runtime) warn(log *slog.Logger) {
	if rt.selfSigned != "" {
		log.Warn("!!! USING A SELF-SIGNED CERTIFICATE: clients will not trust it; configure tls.certificates !!!",
			"cert", rt.selfSigned)
	}
	for _, w := range rt.warnings {
		log.Warn("configuration audit: " + w)
	}
}

// locateCertErrors points each certificate problem certs.Load reports at
// the configuration line of its pair.
func locateCertErrors(cfg *config.Config, err error) error {
	var all []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		all = j.Unwrap()
	} else {
		all = []error{err}
	}
	out := make([]error, 0, len(all))
	for _, e := range all {
		where := cfg.Where("tls.certificates")
		if pe, ok := errors.AsType[*certs.PairError](e); ok {
			where = cfg.Where(fmt.Sprintf("tls.certificates[%d]", pe.Index))
		}
		out = append(out, fmt.Errorf("%s: %w", where, e))
	}
	return errors.Join(out...)
}

// close releases what the runtime holds (idle backend connections).
func (rt *runtime) close() {
	if rt == nil {
		return
	}
	for _, l := range rt.listeners {
		if l.http != nil {
			l.http.Close()
		}
	}
}

// accessLogged wraps a connection handler with one access line per
// connection.
func accessLogged(h listen.Handler, proto, listener string, log *slog.Logger) listen.Handler {
	if log == nil {
		return h
	}
	return listen.HandlerFunc(func(ctx context.Context, c net.Conn, src netip.Addr) error {
		start := time.Now()
		err := h.ServeConn(ctx, c, src)
		attrs := []slog.Attr{
			slog.String("listener", listener), slog.String("proto", proto),
			slog.String("src", src.String()), slog.Duration("duration", time.Since(start)),
		}
		if err != nil {
			attrs = append(attrs, slog.String("err", event.Clip(err.Error(), 200)))
		}
		log.LogAttrs(ctx, slog.LevelInfo, "connection", attrs...)
		return err
	})
}
