package turn

import (
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the TURN server's Prometheus metrics. Labels are fixed words
// (reasons, quotas, directions), never a user, address or listener input
// an attacker chooses. A nil *Metrics counts nothing.
type Metrics struct {
	created      prometheus.Counter
	authFailures *prometheus.CounterVec
	peerDenied   *prometheus.CounterVec
	quota        *prometheus.CounterVec
	bwDropped    prometheus.Counter
	server       atomic.Pointer[Server]
}

var (
	descAllocations = prometheus.NewDesc("pbxgate_turn_allocations",
		"TURN allocations active now, by relay protocol (udp, tcp).", []string{"protocol"}, nil)
	descRelayedBytes = prometheus.NewDesc("pbxgate_turn_relayed_bytes_total",
		"Payload bytes relayed, by direction (to_peer, from_peer).", []string{"direction"}, nil)
	descRelayedPackets = prometheus.NewDesc("pbxgate_turn_relayed_packets_total",
		"Datagrams (UDP) or reads/writes (TCP) relayed, by direction (to_peer, from_peer).", []string{"direction"}, nil)
)

// NewMetrics registers the TURN metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pbxgate_turn_allocations_total",
			Help: "TURN allocations created.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbxgate_turn_auth_failures_total",
			Help: "Failed TURN authentications, by reason (unknown_user, wrong_password, expired, malformed).",
		}, []string{"reason"}),
		peerDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbxgate_turn_peer_denied_total",
			Help: "Permissions, channel bindings and connects refused by the peer filter, by denied range (loopback, private, ...).",
		}, []string{"range"}),
		quota: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbxgate_turn_quota_refused_total",
			Help: "Allocate requests refused with 486 because a quota was full, by quota (total, user, source).",
		}, []string{"quota"}),
		bwDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pbxgate_turn_bandwidth_dropped_total",
			Help: "Relayed UDP datagrams dropped for exceeding the per-allocation bandwidth cap.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.created, m.authFailures, m.peerDenied, m.quota, m.bwDropped, m)
	}
	return m
}

// Describe implements prometheus.Collector for the sums over allocations.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAllocations
	ch <- descRelayedBytes
	ch <- descRelayedPackets
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	var (
		t        totals
		udp, tcp int
	)
	if s := m.server.Load(); s != nil {
		t, udp, tcp = s.reg.sums()
	}
	ch <- prometheus.MustNewConstMetric(descAllocations, prometheus.GaugeValue, float64(udp), "udp")
	ch <- prometheus.MustNewConstMetric(descAllocations, prometheus.GaugeValue, float64(tcp), "tcp")
	ch <- prometheus.MustNewConstMetric(descRelayedBytes, prometheus.CounterValue, float64(t.bytesTo), "to_peer")
	ch <- prometheus.MustNewConstMetric(descRelayedBytes, prometheus.CounterValue, float64(t.bytesFrom), "from_peer")
	ch <- prometheus.MustNewConstMetric(descRelayedPackets, prometheus.CounterValue, float64(t.pktsTo), "to_peer")
	ch <- prometheus.MustNewConstMetric(descRelayedPackets, prometheus.CounterValue, float64(t.pktsFrom), "from_peer")
}

func (m *Metrics) attach(s *Server) {
	if m != nil {
		m.server.Store(s)
	}
}

func (m *Metrics) allocationCreated() {
	if m != nil {
		m.created.Inc()
	}
}

func (m *Metrics) authFailure(reason string) {
	if m != nil {
		m.authFailures.WithLabelValues(reason).Inc()
	}
}

// peerDeniedIn counts a refused peer by the name of its range: the filter's
// reason is "loopback 127.0.0.0/8"; the label keeps the name.
func (m *Metrics) peerDeniedIn(reason string) {
	if m == nil {
		return
	}
	if i := strings.LastIndexByte(reason, ' '); i > 0 {
		if _, err := netip.ParsePrefix(reason[i+1:]); err == nil {
			reason = reason[:i]
		}
	}
	m.peerDenied.WithLabelValues(reason).Inc()
}

func (m *Metrics) quotaFull(which string) {
	if m != nil {
		m.quota.WithLabelValues(which).Inc()
	}
}

func (m *Metrics) bandwidthDrop() {
	if m != nil {
		m.bwDropped.Inc()
	}
}
