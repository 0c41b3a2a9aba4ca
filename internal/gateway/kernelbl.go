package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/pbxgate/pbxgate/internal/banmirror"
	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/kernelbl"
	"github.com/pbxgate/pbxgate/internal/store"
)

// kernelBLState is the security part's view of the kernel blacklist.
type kernelBLState struct {
	run     *kernelBL          // nil when off; set by startSecurity
	metrics *banmirror.Metrics // registered on the first start that enables it
}

// kernelBL is the kernel blacklist (firewall.kernel_blacklist) of a
// running gateway: the fraud engine's bans, minus the whitelist and the
// trusted networks, mirrored into the nftables table inet pbxgate_bl. Its
// methods are safe on a nil *kernelBL, which is what the gateway holds
// when the feature is off.
type kernelBL struct {
	sync   *kernelbl.Sync
	mirror *banmirror.Mirror
	cancel context.CancelFunc // stops the mirror's Run; nil before start
	done   chan struct{}      // closed when Run returns
	closed bool
}

// errKernelBLHint explains what a failure to create the table means.
const errKernelBLHint = "pbxgate needs CAP_NET_ADMIN for this: run it as root or grant the capability " +
	"(systemd: AmbientCapabilities=CAP_NET_ADMIN), or set firewall.kernel_blacklist.enabled: false"

// kernelBLSettings are the mirror's reloadable settings from cfg.
func kernelBLSettings(cfg *config.Config) banmirror.Settings {
	return banmirror.Settings{
		Resync:  cfg.Firewall.KernelBlacklist.Resync.D(),
		BanMax:  cfg.Fraud.BlacklistMax.D(),
		Trusted: config.Networks(cfg.Firewall.TrustedNetworks),
	}
}

// newKernelBL creates the table inet pbxgate_bl (or repairs it) in the
// current network namespace when cfg enables the kernel blacklist, and
// returns nil when it does not. Set elements already in the kernel (bans
// from before a restart) are kept. The mirror asks the running fraud
// engine for the stored entries.
func (g *Gateway) newKernelBL(cfg *config.Config) (*kernelBL, error) {
	if !cfg.Firewall.KernelBlacklist.Enabled {
		return nil, nil
	}
	s := g.sec
	ks, err := kernelbl.New(kernelbl.Options{Log: g.base})
	if err != nil {
		return nil, fmt.Errorf("firewall.kernel_blacklist: %w (%s)", err, errKernelBLHint)
	}
	if err := ks.Ensure(); err != nil {
		_ = ks.Close()
		return nil, fmt.Errorf("firewall.kernel_blacklist: cannot create the nftables table inet %s: %w (%s)", kernelbl.TableName, err, errKernelBLHint)
	}
	if s.kbl.metrics == nil {
		s.kbl.metrics = banmirror.NewMetrics(s.reg)
	}
	mir, err := banmirror.New(banmirror.Options{
		Sync: ks,
		Entries: func(ctx context.Context, l store.List) ([]store.Entry, error) {
			e := s.engine.Load()
			if e == nil {
				return nil, errors.New("the fraud engine is not running")
			}
			return e.Entries(ctx, l)
		},
		Settings: kernelBLSettings(cfg),
		Metrics:  s.kbl.metrics,
		Log:      g.base,
	})
	if err != nil {
		_ = ks.Close()
		return nil, fmt.Errorf("firewall.kernel_blacklist: %w", err)
	}
	return &kernelBL{sync: ks, mirror: mir}, nil
}

// onBan and onLift hand the fraud engine's callbacks to the mirror; they
// never block.
func (k *kernelBL) onBan(p netip.Prefix) {
	if k != nil {
		k.mirror.OnBan(p)
	}
}

func (k *kernelBL) onLift(p netip.Prefix) {
	if k != nil {
		k.mirror.OnLift(p)
	}
}

// start reconciles the kernel with the stored bans once (the engine must
// be loaded and published in security.engine) and then keeps it in step
// until stop.
func (k *kernelBL) start(ctx context.Context) error {
	if k == nil {
		return nil
	}
	if err := k.mirror.Reconcile(ctx); err != nil {
		return fmt.Errorf("firewall.kernel_blacklist: loading the bans into the kernel: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	k.cancel, k.done = cancel, make(chan struct{})
	go func() {
		defer close(k.done)
		k.mirror.Run(runCtx)
	}()
	return nil
}

// stop ends the mirror (applying what it still has queued) and closes the
// netlink socket. The table and its elements stay in the kernel: bans keep
// being enforced, each until its own timeout, while pbxgate restarts.
// Idempotent.
func (k *kernelBL) stop() {
	if k == nil || k.closed {
		return
	}
	k.closed = true
	if k.cancel != nil {
		k.cancel()
		<-k.done
	}
	_ = k.sync.Close()
}

// reloadKernelBLLocked applies a reload's resync interval, trusted
// networks and ban length; turning the kernel blacklist on or off takes a
// restart.
func (g *Gateway) reloadKernelBLLocked(cfg *config.Config) {
	s := g.sec
	if s.kbl.run != nil {
		s.kbl.run.mirror.Reconfigure(kernelBLSettings(cfg))
	}
	if g.started && (s.kbl.run != nil) != cfg.Firewall.KernelBlacklist.Enabled {
		g.log.Warn("reload: firewall.kernel_blacklist.enabled changes at the next restart",
			"running", s.kbl.run != nil, "configured", cfg.Firewall.KernelBlacklist.Enabled)
	}
}
