package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/turn"
	"github.com/pbxgate/pbxgate/internal/turnauth"
)

// errTURNAtStart refuses a reload that adds TURN to a gateway started
// without it: the server's realm, addresses and ports are set at start.
var errTURNAtStart = errors.New("a listener carries turn, but TURN was not configured when pbxgate started: restart pbxgate to enable it")

// newTURN creates the TURN server when cfg has a listener carrying turn.
// Its realm, relay addresses and port range are fixed until restart.
func newTURN(cfg *config.Config, g *Gateway) (*turn.Server, error) {
	if !cfg.ServesTURN() {
		return nil, nil
	}
	st, err := turnSettings(cfg, g.accessLog(cfg))
	if err != nil {
		return nil, err
	}
	t := cfg.TURN
	c := turn.Config{
		Realm:    t.Realm,
		PortMin:  uint16(t.RelayPorts.Min),
		PortMax:  uint16(t.RelayPorts.Max),
		Allowed:  g.guard(),
		Settings: st,
	}
	for _, s := range t.PublicAddresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("turn.public_addresses: %w", err) // validated; a bug
		}
		c.PublicAddrs = append(c.PublicAddrs, a)
	}
	for _, s := range t.RelayAddresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("turn.relay_addresses: %w", err)
		}
		c.RelayAddrs = append(c.RelayAddrs, a)
	}
	var met *turn.Metrics
	if g.sec != nil {
		met = turn.NewMetrics(g.sec.reg)
	}
	srv, err := turn.New(c, turn.Options{
		Events:  g.events,
		Log:     g.base,
		Metrics: met,
		Now:     time.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Where("turn"), err)
	}
	return srv, nil
}

// turnSettings are the reloadable TURN settings of cfg, access the access
// log (nil: off). It reads turn.rest_secrets_file.
func turnSettings(cfg *config.Config, access *slog.Logger) (turn.Settings, error) {
	t := cfg.TURN
	st := turn.Settings{
		Users:      make(map[string][]byte, len(t.Users)),
		AllowPeers: config.Networks(t.AllowPeers),
		Quotas: turn.Quotas{
			PerUser:     derefOr(t.Quotas.PerUser, config.DefaultTURNPerUser),
			PerSource:   derefOr(t.Quotas.PerSource, config.DefaultTURNPerSource),
			Total:       derefOr(t.Quotas.Total, config.DefaultTURNTotal),
			MaxLifetime: t.Quotas.MaxLifetime.D(),
			MaxKbps:     derefOr(t.Quotas.MaxKbps, config.DefaultTURNMaxKbps),
		},
		IdleTimeout: t.IdleTimeout.D(),
		Access:      access,
	}
	for _, u := range t.Users {
		key, err := config.TURNKey(u.Key)
		if err != nil {
			return st, fmt.Errorf("turn.users %s: %w", u.Name, err) // validated; a bug
		}
		st.Users[u.Name] = key
	}
	secrets, err := t.TURNSecrets()
	if err != nil {
		return st, err
	}
	if len(secrets) > 0 {
		s, err := turnauth.NewSecrets(secrets)
		if err != nil {
			return st, fmt.Errorf("turn REST secrets: %w", err)
		}
		st.Secrets = s
	}
	return st, nil
}

// turnRestartNeeded names the turn settings that differ between the
// configuration the server started with and cfg: they take effect at
// restart only.
func turnRestartNeeded(started, cfg *config.Config) []string {
	a, b := started.TURN, cfg.TURN
	var out []string
	if a.Realm != b.Realm {
		out = append(out, "turn.realm")
	}
	if !slices.Equal(a.PublicAddresses, b.PublicAddresses) {
		out = append(out, "turn.public_addresses")
	}
	if !slices.Equal(a.RelayAddresses, b.RelayAddresses) {
		out = append(out, "turn.relay_addresses")
	}
	if a.RelayPorts != b.RelayPorts {
		out = append(out, "turn.relay_ports")
	}
	return out
}

// isTURN reports whether a udp listener carries turn (else sip).
func isTURN(lc config.Listener) bool {
	return len(lc.Protocols) == 1 && lc.Protocols[0] == config.ProtoTURN
}

// newTURNListener opens a udp listener's socket for the TURN server.
func (g *Gateway) newTURNListener(ctx context.Context, lc config.Listener) (*liveListener, error) {
	if g.turn == nil {
		return nil, fmt.Errorf("listener %s: %w", lc.Name, errTURNAtStart)
	}
	var lcfg net.ListenConfig
	pc, err := lcfg.ListenPacket(ctx, "udp", lc.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", lc.Name, err)
	}
	return &liveListener{
		name: lc.Name, addr: lc.Address, transport: config.TransportUDP, proto: config.ProtoTURN,
		pc: pc, turn: g.turn, sec: g.sec,
	}, nil
}

// serveTURNLocked starts a udp listener's TURN service.
func (g *Gateway) serveTURNLocked(l *liveListener) {
	addr := "udp " + l.pc.LocalAddr().String()
	stop, err := l.turn.ServePacket(l.name, l.pc)
	if err != nil {
		g.log.Error("listener stopped", "listener", l.name, "err", err)
		return
	}
	l.turnStop = stop
	g.log.Info("listening", "listener", l.name, "addr", addr, "proto", "turn")
}
