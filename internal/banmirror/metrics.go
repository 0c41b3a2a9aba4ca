package banmirror

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the kernel blacklist's Prometheus metrics. One Metrics may
// outlive several Mirrors (a gateway restarted in the same process); a nil
// *Metrics records nothing.
type Metrics struct {
	up        prometheus.Gauge
	prefixes  *prometheus.GaugeVec
	adds      prometheus.Counter
	removes   prometheus.Counter
	reconcile prometheus.Counter
	errors    *prometheus.CounterVec
	drops     prometheus.Counter
	lastOK    prometheus.Gauge
}

// Operations named by the op label of pbxgate_kernel_blacklist_errors_total.
const (
	opAdd       = "add"
	opRemove    = "remove"
	opReconcile = "reconcile"
)

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered). Registering twice on one registry panics, as with
// prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pbxgate_kernel_blacklist_up",
			Help: "1 when the last update of the kernel blacklist (table inet pbxgate_bl) succeeded, 0 when it failed or none was made yet.",
		}),
		prefixes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pbxgate_kernel_blacklist_prefixes",
			Help: "Prefixes the kernel blacklist should hold, by family (ipv4, ipv6): bans minus whitelist and trusted networks, before overlaps are merged.",
		}, []string{"family"}),
		adds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pbxgate_kernel_blacklist_adds_total",
			Help: "Bans added to the kernel blacklist as they happened (before the next reconcile).",
		}),
		removes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pbxgate_kernel_blacklist_removes_total",
			Help: "Lifted prefixes (unban, allow) removed from the kernel blacklist as they happened.",
		}),
		reconcile: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pbxgate_kernel_blacklist_reconciles_total",
			Help: "Successful reconciles of the kernel blacklist with the stored bans.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbxgate_kernel_blacklist_errors_total",
			Help: "Failed kernel blacklist updates, by operation (add, remove, reconcile); each is retried.",
		}, []string{"op"}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pbxgate_kernel_blacklist_queue_dropped_total",
			Help: "Bans and lifts not queued for the kernel because the queue was full; the next reconcile applies them.",
		}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pbxgate_kernel_blacklist_last_reconcile_timestamp_seconds",
			Help: "Unix time of the last successful reconcile of the kernel blacklist.",
		}),
	}
	for _, f := range []string{"ipv4", "ipv6"} {
		m.prefixes.WithLabelValues(f)
	}
	for _, op := range []string{opAdd, opRemove, opReconcile} {
		m.errors.WithLabelValues(op)
	}
	if reg != nil {
		reg.MustRegister(m.up, m.prefixes, m.adds, m.removes, m.reconcile, m.errors, m.drops, m.lastOK)
	}
	return m
}
