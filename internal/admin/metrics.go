package admin

import (
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
)

// Metrics counts events and exposes the fraud engine's counters, the Go
// runtime's and the process's metrics, and the build. No metric has a label
// holding an address or a user name: every label value comes from a small,
// bounded set (event kinds and reasons, configured listener and service
// names, protocols).
type Metrics struct {
	events *prometheus.CounterVec
	build  *prometheus.GaugeVec

	mu       sync.RWMutex // guards counters
	counters map[labelKey]prometheus.Counter
}

// labelKey is the label set of pbxgate_events_total.
type labelKey struct{ kind, reason, listener, proto, service string }

// maxCachedLabelSets bounds the cache of event counters; label sets beyond
// it are still counted, only looked up the slower way.
const maxCachedLabelSets = 4096

var (
	descEventsSeen = prometheus.NewDesc("pbxgate_fraud_events_seen_total",
		"Events handed to the fraud engine.", nil, nil)
	descEventsCounted = prometheus.NewDesc("pbxgate_fraud_events_counted_total",
		"Suspicious events that added weight to a source.", nil, nil)
	descEventsIgnored = prometheus.NewDesc("pbxgate_fraud_events_ignored_total",
		"Events of weight 0, or from whitelisted or already banned sources.", nil, nil)
	descSources = prometheus.NewDesc("pbxgate_fraud_sources",
		"Sources whose events are being counted now.", nil, nil)
	descSourcesEvicted = prometheus.NewDesc("pbxgate_fraud_sources_evicted_total",
		"Sources forgotten because the engine holds as many as it may.", nil, nil)
	descBans = prometheus.NewDesc("pbxgate_fraud_bans_total",
		"Bans made, automatic or by an operator.", []string{"origin"}, nil)
	descUnbans = prometheus.NewDesc("pbxgate_fraud_unbans_total",
		"Bans lifted, by an operator or by expiry.", nil, nil)
	descRefused = prometheus.NewDesc("pbxgate_fraud_refused_total",
		"Connections and packets refused because their source is blacklisted.", nil, nil)
	descBlacklist = prometheus.NewDesc("pbxgate_blacklist_entries",
		"Blacklist entries in force (addresses and prefixes).", nil, nil)
	descWhitelist = prometheus.NewDesc("pbxgate_whitelist_entries",
		"Whitelist entries in force, the configuration file's included.", nil, nil)
	descStoreErrors = prometheus.NewDesc("pbxgate_store_errors_total",
		"State store writes that failed.", nil, nil)
)

// NewMetrics registers pbxgate's metrics in reg: pbxgate_events_total (fed
// by Emit), the fraud engine's counters read from stats at each scrape
// (none if stats is nil), Go and process collectors, and
// pbxgate_build_info. reg should be a registry of its own (not the
// prometheus default one, which holds Go and process collectors already);
// like prometheus.MustRegister, NewMetrics panics when the same metrics are
// registered in reg twice, a programming error.
func NewMetrics(reg prometheus.Registerer, stats func() fraud.Stats) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbxgate_events_total",
			Help: "Security events by kind, reason, listener, protocol and service.",
		}, []string{"kind", "reason", "listener", "proto", "service"}),
		build: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pbxgate_build_info",
			Help: "Always 1; the labels say which build runs.",
		}, []string{"version", "goversion"}),
		counters: make(map[labelKey]prometheus.Counter),
	}
	reg.MustRegister(
		m.events,
		m.build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if stats != nil {
		reg.MustRegister(statsCollector{stats})
	}
	version := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	m.SetBuildInfo(version)
	return m
}

// SetBuildInfo sets pbxgate_build_info's version label (the release
// version the binary was built with, which the build information of the
// module does not always know).
func (m *Metrics) SetBuildInfo(version string) {
	m.build.Reset()
	m.build.WithLabelValues(labelValue(version), runtime.Version()).Set(1)
}

// Emit counts e in pbxgate_events_total. It does not allocate for a label
// set seen before.
func (m *Metrics) Emit(e event.Event) {
	k := labelKey{e.Kind.String(), e.Reason, e.Listener, e.Proto, e.Service}
	m.mu.RLock()
	c := m.counters[k]
	m.mu.RUnlock()
	if c == nil {
		c = m.counter(k)
	}
	c.Inc()
}

// counter returns the counter of k, caching it while the cache has room.
func (m *Metrics) counter(k labelKey) prometheus.Counter {
	c := m.events.WithLabelValues(labelValue(k.kind), labelValue(k.reason), labelValue(k.listener), labelValue(k.proto), labelValue(k.service))
	m.mu.Lock()
	if len(m.counters) < maxCachedLabelSets {
		m.counters[k] = c
	}
	m.mu.Unlock()
	return c
}

// labelValue makes s a valid label value (prometheus refuses invalid UTF-8).
func labelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// statsCollector reads the fraud engine's counters at each scrape.
type statsCollector struct{ stats func() fraud.Stats }

func (statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEventsSeen, descEventsCounted, descEventsIgnored, descSources,
		descSourcesEvicted, descBans, descUnbans, descRefused, descBlacklist, descWhitelist, descStoreErrors} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter(descEventsSeen, s.EventsSeen)
	counter(descEventsCounted, s.EventsCounted)
	counter(descEventsIgnored, s.EventsIgnored)
	gauge(descSources, s.Sources)
	counter(descSourcesEvicted, s.SourcesEvicted)
	counter(descBans, s.AutoBans, "auto")
	counter(descBans, s.ManualBans, "manual")
	counter(descUnbans, s.Unbans)
	counter(descRefused, s.Refused)
	gauge(descBlacklist, s.Blacklisted)
	gauge(descWhitelist, s.Whitelisted)
	counter(descStoreErrors, s.StoreErrors)
}
