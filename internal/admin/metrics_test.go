package admin

import (
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
)

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// TestMetricsNoAddressLabels scrapes /metrics after events from many
// sources and users and checks that no label value is an address or a user.
func TestMetricsNoAddressLabels(t *testing.T) {
	e := startEnv(t)
	for i := range 50 {
		e.metrics.Emit(event.Event{
			Kind: event.RejectedByService, Source: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}),
			Listener: "web", Service: "portal", Proto: "http", Reason: event.ReasonStatus, User: fmt.Sprintf("user%d", i),
		})
	}
	e.metrics.Emit(event.Event{Kind: event.Success, Source: netip.MustParseAddr("2001:db8::1"), Listener: "ldaps", Proto: "ldap", Reason: event.ReasonOK, User: "alice"})
	e.do(t, viaTCP, "GET", "/api/v1/stats", "", "Bearer wrong") // an auth failure from 127.0.0.1

	resp, body := e.do(t, viaTCP, "GET", "/metrics", "", "-")
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	text := string(body)
	labels := 0
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, m := range labelRE.FindAllStringSubmatch(line, -1) {
			labels++
			v := m[2]
			if _, err := netip.ParseAddr(v); err == nil {
				t.Errorf("label %s holds an address: %s", m[1], line)
			}
			if _, err := netip.ParsePrefix(v); err == nil {
				t.Errorf("label %s holds a prefix: %s", m[1], line)
			}
			if strings.HasPrefix(v, "user") || v == "alice" {
				t.Errorf("label %s holds a user: %s", m[1], line)
			}
		}
	}
	if labels == 0 {
		t.Fatal("no labels found; the check checked nothing")
	}
	for _, want := range []string{
		`pbxgate_events_total{kind="rejected_by_service",listener="web",proto="http",reason="status",service="portal"} 50`,
		`pbxgate_events_total{kind="success",listener="ldaps",proto="ldap",reason="ok",service=""} 1`,
		`pbxgate_events_total{kind="rejected_by_gateway",listener="admin",proto="http",reason="admin_auth",service=""} 1`,
		`pbxgate_fraud_bans_total{origin="auto"} 0`,
		`pbxgate_fraud_bans_total{origin="manual"} 0`,
		"go_goroutines ",
		"process_",
		"pbxgate_build_info{goversion=",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestMetricsStatsFields sets every fraud.Stats field to a distinct value
// and finds each one in the gathered metrics, so a field added to Stats
// without a metric fails here.
func TestMetricsStatsFields(t *testing.T) {
	var st fraud.Stats
	v := reflect.ValueOf(&st).Elem()
	want := map[float64]string{}
	for i := range v.NumField() {
		f := v.Field(i)
		n := 1000 + i*7
		switch f.Kind() {
		case reflect.Int:
			f.SetInt(int64(n))
		case reflect.Uint64:
			f.SetUint(uint64(n))
		default:
			t.Fatalf("fraud.Stats.%s has kind %s; teach the metrics about it", v.Type().Field(i).Name, f.Kind())
		}
		want[float64(n)] = v.Type().Field(i).Name
	}
	reg := prometheus.NewRegistry()
	NewMetrics(reg, func() fraud.Stats { return st })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var val float64
			switch {
			case m.GetCounter() != nil:
				val = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				val = m.GetGauge().GetValue()
			default:
				continue
			}
			if name, ok := want[val]; ok && strings.HasPrefix(mf.GetName(), "pbxgate_") {
				delete(want, val)
				t.Logf("%s = %s", name, mf.GetName())
			}
		}
	}
	for _, name := range want {
		t.Errorf("fraud.Stats.%s is not exposed", name)
	}
}

func TestMetricsBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, nil)
	m.SetBuildInfo("v1.2.3")
	m.SetBuildInfo("v1.2.4")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "pbxgate_fraud_") {
			t.Errorf("%s registered without a stats source", mf.GetName())
		}
		if mf.GetName() != "pbxgate_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%d build_info series, want 1", len(mf.GetMetric()))
		}
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			if lp.GetName() == "version" && lp.GetValue() != "v1.2.4" {
				t.Fatalf("version label %q", lp.GetValue())
			}
		}
		return
	}
	t.Fatal("no pbxgate_build_info")
}

func TestMetricsInvalidUTF8(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, nil)
	m.Emit(event.Event{Kind: event.RejectedByGateway, Listener: "we\xffb", Reason: "x"})
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsEmitAllocs(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry(), nil)
	ev := event.Event{Kind: event.RejectedByService, Listener: "web", Service: "portal", Proto: "http",
		Reason: event.ReasonStatus, Source: netip.MustParseAddr("203.0.113.7"), User: "bob"}
	m.Emit(ev)
	if n := testing.AllocsPerRun(1000, func() { m.Emit(ev) }); n != 0 {
		t.Fatalf("Emit allocates %v times per event", n)
	}
}

func BenchmarkMetricsEmit(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry(), nil)
	ev := event.Event{Kind: event.RejectedByService, Listener: "web", Service: "portal", Proto: "http", Reason: event.ReasonStatus}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Emit(ev)
		}
	})
}
