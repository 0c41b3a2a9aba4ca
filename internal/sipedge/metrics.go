package sipedge

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbxgate/pbxgate/internal/udprelay"
)

// Metrics are the SIP edge's Prometheus metrics. Labels are configuration
// (listener, transport, company and brand names) or fixed words, never
// attacker input.
type Metrics struct {
	messages *prometheus.CounterVec
	refused  *prometheus.CounterVec
	policy   atomic.Pointer[Policy]

	mu     sync.Mutex
	relays map[string]func() udprelay.Stats // listener → stats of its UDP relay
	lms    map[[2]string]*listenerMetrics
}

var (
	descCallsActive = prometheus.NewDesc("pbxgate_sip_calls_active",
		"Calls tracked now (established or waiting for an answer), per company.", []string{"brand", "company"}, nil)
	descCallsExternal = prometheus.NewDesc("pbxgate_sip_calls_external",
		"External calls holding a slot of max_calls now, per company.", []string{"brand", "company"}, nil)
	descFlows = prometheus.NewDesc("pbxgate_sip_udp_flows",
		"UDP flows open now.", []string{"listener"}, nil)
	descFlowsOpened = prometheus.NewDesc("pbxgate_sip_udp_flows_opened_total",
		"UDP flows opened.", []string{"listener"}, nil)
	descFlowsEvicted = prometheus.NewDesc("pbxgate_sip_udp_flows_evicted_total",
		"UDP flows evicted to make room for a new client.", []string{"listener"}, nil)
	descFlowsRefused = prometheus.NewDesc("pbxgate_sip_udp_flows_refused_total",
		"New UDP clients refused because the flow table was full of active flows.", []string{"listener"}, nil)
	descUDPDropped = prometheus.NewDesc("pbxgate_sip_udp_dropped_total",
		"UDP datagrams dropped, by why: guard (banned source), route, policy, oversize, error.", []string{"listener", "why"}, nil)
)

// listenerMetrics are one listener's counters, resolved once: a flood
// makes refusals a hot path, and resolving a label set hashes it.
type listenerMetrics struct {
	in, out prometheus.Counter
	refused sync.Map // reason → prometheus.Counter
	name    string
	vec     *prometheus.CounterVec
}

// refuse counts one message the gateway dropped or answered itself.
func (lm *listenerMetrics) refuse(reason string) {
	c, ok := lm.refused.Load(reason)
	if !ok {
		c, _ = lm.refused.LoadOrStore(reason, lm.vec.WithLabelValues(lm.name, reason))
	}
	c.(prometheus.Counter).Inc()
}

// NewMetrics registers the SIP metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbxgate_sip_messages_total",
			Help: "SIP messages relayed, by listener, transport and direction (in: from clients, out: to clients).",
		}, []string{"listener", "transport", "direction"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbxgate_sip_refused_total",
			Help: "SIP messages the gateway dropped or answered itself, by reason (flood, scanner, network_refused, call_limit, blocked_destination, unknown_domain, bad_request, ack_absorbed).",
		}, []string{"listener", "reason"}),
		relays: make(map[string]func() udprelay.Stats),
		lms:    make(map[[2]string]*listenerMetrics),
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.refused, m)
	}
	return m
}

func (m *Metrics) setPolicy(p *Policy) { m.policy.Store(p) }

// listener returns the counters of one listener and transport.
func (m *Metrics) listener(name, transport string) *listenerMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{name, transport}
	if lm := m.lms[k]; lm != nil {
		return lm
	}
	lm := &listenerMetrics{
		in:   m.messages.WithLabelValues(name, transport, "in"),
		out:  m.messages.WithLabelValues(name, transport, "out"),
		name: name,
		vec:  m.refused,
	}
	m.lms[k] = lm
	return lm
}

// AddRelay exports the flow counters of a listener's UDP relay; nil stats
// removes them.
func (m *Metrics) AddRelay(listener string, stats func() udprelay.Stats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if stats == nil {
		delete(m.relays, listener)
		return
	}
	m.relays[listener] = stats
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCallsActive, descCallsExternal, descFlows, descFlowsOpened,
		descFlowsEvicted, descFlowsRefused, descUDPDropped} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if p := m.policy.Load(); p != nil {
		for _, c := range p.calls.Active() {
			ch <- prometheus.MustNewConstMetric(descCallsActive, prometheus.GaugeValue, float64(c.Active), c.Brand, c.Company)
			ch <- prometheus.MustNewConstMetric(descCallsExternal, prometheus.GaugeValue, float64(c.External), c.Brand, c.Company)
		}
	}
	m.mu.Lock()
	relays := make(map[string]func() udprelay.Stats, len(m.relays))
	for k, v := range m.relays {
		relays[k] = v
	}
	m.mu.Unlock()
	for name, stats := range relays {
		st := stats()
		ch <- prometheus.MustNewConstMetric(descFlows, prometheus.GaugeValue, float64(st.Flows), name)
		ch <- prometheus.MustNewConstMetric(descFlowsOpened, prometheus.CounterValue, float64(st.FlowsOpened), name)
		ch <- prometheus.MustNewConstMetric(descFlowsEvicted, prometheus.CounterValue, float64(st.FlowsEvicted), name)
		ch <- prometheus.MustNewConstMetric(descFlowsRefused, prometheus.CounterValue, float64(st.FlowsRefused), name)
		for _, d := range []struct {
			why string
			n   uint64
		}{{"guard", st.DroppedGuard}, {"route", st.DroppedRoute}, {"policy", st.DroppedInspect},
			{"oversize", st.DroppedOversize}, {"error", st.DroppedError}} {
			ch <- prometheus.MustNewConstMetric(descUDPDropped, prometheus.CounterValue, float64(d.n), name, d.why)
		}
	}
}

// Metrics returns the policy's metrics.
func (p *Policy) Metrics() *Metrics { return p.met }
