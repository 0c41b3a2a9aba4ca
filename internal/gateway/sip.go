package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/sip"
	"github.com/pbxgate/pbxgate/internal/sipedge"
	"github.com/pbxgate/pbxgate/internal/sippolicy"
	"github.com/pbxgate/pbxgate/internal/udprelay"
)

// buildSIP turns the sip services and the sip section into the SIP edge's
// tables. The services' dialers must be built.
func (rt *runtime) buildSIP(cfg *config.Config) (sipedge.Config, error) {
	sc := cfg.SIP
	out := sipedge.Config{
		Domains:        make(map[string]*sipedge.Service),
		Wildcards:      make(map[string]*sipedge.Service),
		Trusted:        config.Networks(sc.Trusted),
		MaxMessage:     sc.MaxMessage,
		IdleTimeout:    sc.IdleTimeout.D(),
		ConnectTimeout: cfg.Timeouts.BackendConnect.D(),
		Flood: sippolicy.FloodConfig{
			Window: sc.Flood.Window.D(), Limit: sc.Flood.Limit,
			BlockFor: sc.Flood.BlockFor.D(), MaxSources: sc.Flood.MaxSources,
		},
	}
	svcs := make(map[string]*sipedge.Service)
	for _, s := range cfg.Services {
		if s.Protocol != config.ProtoSIP {
			continue
		}
		es, err := rt.sipService(cfg, s)
		if err != nil {
			return out, fmt.Errorf("service %s: %w", s.Name, err)
		}
		svcs[s.Name] = es
		for _, d := range s.Domains {
			d = normDomain(d)
			if suffix, ok := strings.CutPrefix(d, "*."); ok {
				out.Wildcards[suffix] = es
			} else {
				out.Domains[d] = es
			}
		}
	}
	out.Default = svcs[sc.DefaultService]
	var tc sippolicy.TenantsConfig
	for _, b := range sc.Brands {
		bc := sippolicy.BrandConfig{Name: b.Name, MaxCalls: b.MaxCalls}
		for _, co := range b.Companies {
			cc := sippolicy.CompanyConfig{
				Name: co.Name, Domains: co.Domains, AllowedNetworks: config.Networks(co.AllowedNetworks),
				External: co.External, MaxCalls: co.MaxCalls, BlockedDestinations: co.BlockedDestinations,
			}
			for _, u := range co.Users {
				cc.Users = append(cc.Users, sippolicy.UserConfig{Name: u.Name, CallsFromOtherNetworks: u.CallsFromOtherNetworks})
			}
			bc.Companies = append(bc.Companies, cc)
			for _, d := range co.Domains {
				out.Domains[normDomain(d)] = svcs[co.Service]
			}
		}
		tc.Brands = append(tc.Brands, bc)
	}
	if len(tc.Brands) > 0 {
		t, err := sippolicy.NewTenants(tc)
		if err != nil {
			return out, fmt.Errorf("sip.brands: %w", err)
		}
		out.Tenants = t
	}
	if len(sc.ScannerUserAgents) > 0 {
		m, err := sip.NewUAMatcher(sc.ScannerUserAgents)
		if err != nil {
			return out, fmt.Errorf("sip.scanner_user_agents: %w", err)
		}
		out.Scanners = m
	}
	if err := out.Flood.Validate(); err != nil {
		return out, fmt.Errorf("sip.flood: %w", err)
	}
	return out, nil
}

// normDomain is a configured domain as the edge looks it up: lower case,
// no trailing dot, IPv6 without brackets.
func normDomain(d string) string {
	return strings.ToLower(strings.Trim(strings.TrimSuffix(d, "."), "[]"))
}

// sipService builds one sip service's backends.
func (rt *runtime) sipService(cfg *config.Config, s config.Service) (*sipedge.Service, error) {
	d := rt.dialers[s.Name]
	es := &sipedge.Service{
		Name: s.Name, Dial: d.Dial,
		ClientHeader: s.ClientAddressHeader, ProxyProtocol: s.Backend.ProxyProtocol,
	}
	udp := s.Backend.UDPAddress // defaults to Address
	ap, err := netip.ParseAddrPort(udp)
	if err != nil {
		// A DNS name in address: resolved once, here, because flows are
		// opened per datagram without name resolution.
		ua, rerr := net.ResolveUDPAddr("udp", udp)
		if rerr != nil {
			return nil, fmt.Errorf("backend UDP address %q: %w", udp, rerr)
		}
		ap = ua.AddrPort()
	}
	es.UDP = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if s.Backend.WebSocket != "" {
		nd := &net.Dialer{Timeout: cfg.Timeouts.BackendConnect.D()}
		wd := sipedge.NewWSDialer(cfg.Timeouts.BackendConnect.D(), nd.DialContext)
		if strings.HasPrefix(s.Backend.WebSocket, "wss:") {
			wd.TLSClientConfig = d.TLSConfig()
		}
		es.WebSocket = &sipedge.WSBackend{URL: s.Backend.WebSocket, Dialer: wd}
	}
	return es, nil
}

// udpConfig is the relay configuration of a udp listener under rt.
func (g *Gateway) udpConfig(rt *runtime, lc config.Listener) udprelay.Config {
	c := g.sip.UDP(lc.Name)
	c.Allowed = g.guard()
	c.MaxFlows = rt.cfg.SIP.UDP.MaxFlows
	c.IdleTimeout = rt.cfg.SIP.IdleTimeout.D()
	c.MaxDatagram = rt.cfg.SIP.MaxMessage
	c.UpstreamLocals = rt.cfg.SIP.Upstreams()
	return c
}

// newUDPListener opens a udp listener's socket and its relay.
func (g *Gateway) newUDPListener(ctx context.Context, rt *runtime, lc config.Listener) (*liveListener, error) {
	var lcfg net.ListenConfig
	pc, err := lcfg.ListenPacket(ctx, "udp", lc.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", lc.Name, err)
	}
	relay, err := udprelay.New(g.udpConfig(rt, lc), udprelay.Options{
		Name: lc.Name, Proto: "sip", Events: g.events,
		Log: g.base.With("component", "udprelay", "listener", lc.Name),
	})
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("listener %s: %w", lc.Name, err)
	}
	return &liveListener{name: lc.Name, addr: lc.Address, transport: config.TransportUDP, proto: config.ProtoSIP, pc: pc, relay: relay, sec: g.sec}, nil
}

// serveUDPLocked starts a udp listener's relay.
func (g *Gateway) serveUDPLocked(l *liveListener) {
	g.sec.track(l.relay)
	g.sip.Metrics().AddRelay(l.name, l.relay.Stats)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := l.relay.ServePacket(context.WithoutCancel(g.serveCtx), l.pc); err != nil {
			g.log.Error("listener stopped", "listener", l.name, "err", err)
		}
	}()
	g.log.Info("listening", "listener", l.name, "addr", "udp "+l.pc.LocalAddr().String())
}

// sipMux sends WebSocket upgrades offering the sip subprotocol to the SIP
// edge and every other request to the HTTP services, or answers 404 when
// the listener carries no http.
type sipMux struct {
	ws   http.Handler // nil: the listener carries no sip-ws
	http http.Handler // nil: the listener carries no http
}

func (m *sipMux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case m.ws != nil && sipedge.IsSIPUpgrade(r):
		m.ws.ServeHTTP(w, r)
	case m.http != nil:
		m.http.ServeHTTP(w, r)
	case m.ws != nil:
		m.ws.ServeHTTP(w, r) // answers 400 with an event
	default:
		http.NotFound(w, r)
	}
}

// requestAddr is the client address of an HTTP request: its connection's
// peer.
func requestAddr(r *http.Request) netip.AddrPort {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// sipPolicy creates the SIP edge with the calls settings of cfg, which
// take effect at start only.
func sipPolicy(cfg *config.Config, g *Gateway) (*sipedge.Policy, error) {
	var met *sipedge.Metrics
	if g.sec != nil {
		met = sipedge.NewMetrics(g.sec.reg)
	}
	return sipedge.New(sipedge.Config{}, sipedge.Options{
		Calls: sippolicy.CallsConfig{
			MaxDuration: cfg.SIP.Calls.MaxDuration.D(), MaxCalls: cfg.SIP.Calls.MaxTracked,
		},
		Events:  g.events,
		Log:     g.base.With("component", "sip"),
		Metrics: met,
		Now:     time.Now,
	})
}
