package main

import (
	"math"
	"slices"
	"time"
)

// sample is one legitimate request that was sent.
type sample struct {
	due time.Duration // the due time, from the phase start
	lat time.Duration // from the due time to the answer (or failure)
	lag time.Duration // from the due time to the moment it was written
	ok  bool          // answered 200
}

// percentile returns the nearest-rank percentile of sorted values: the
// smallest value with at least perTenThousand/10000 of the values at or below
// it (5000 = median, 9900 = p99, 9990 = p99.9). Integer arithmetic, so p99 of
// 100 values is exactly the 99th. Zero for no values.
func percentile(sorted []time.Duration, perTenThousand int) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := (n*perTenThousand + 9999) / 10000
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// phaseStats is what one phase of the legitimate load measured. Latencies
// are counted from each request's due time (open loop: a request sent late
// is charged its wait) and include failed requests, which count up to the
// moment they failed.
type phaseStats struct {
	Duration   float64 `json:"duration_s"`
	Scheduled  int     `json:"scheduled"`
	Sent       int     `json:"sent"`
	OK         int     `json:"ok"`
	Failed     int     `json:"failed"` // sent, but no 200 (error, timeout or other status)
	Unsent     int     `json:"unsent"` // not sent before the phase's hard stop; failures too
	Late       int     `json:"late"`   // sent more than the -late threshold after their due time
	SuccessPct float64 `json:"success_pct"`
	P50        float64 `json:"p50_ms"`
	P90        float64 `json:"p90_ms"`
	P99        float64 `json:"p99_ms"`
	P999       float64 `json:"p999_ms"`
	Max        float64 `json:"max_ms"`
	LagP99     float64 `json:"send_lag_p99_ms"`
	FirstError string  `json:"first_error,omitempty"`
	// GatewayCPU is the CPU time pbxgate used during the phase (user +
	// system, from /proc), in seconds.
	GatewayCPU float64 `json:"pbxgate_cpu_s"`
	// TCP holds the machine's TCP counters' growth during the phase
	// (/proc/net/netstat and snmp): listen queue overflows, retransmissions.
	TCP map[string]int64 `json:"tcp_counters"`
	// Seconds shows the phase second by second.
	Seconds []second `json:"seconds"`
}

// summarize reduces the samples of one phase. late is the send-lag beyond
// which a request counts as late.
func summarize(samples []sample, scheduled int, late time.Duration) phaseStats {
	st := phaseStats{Scheduled: scheduled, Sent: len(samples)}
	lats := make([]time.Duration, len(samples))
	lags := make([]time.Duration, len(samples))
	for i, s := range samples {
		lats[i], lags[i] = s.lat, s.lag
		if s.ok {
			st.OK++
		}
		if s.lag > late {
			st.Late++
		}
	}
	st.Failed = st.Sent - st.OK
	st.Unsent = max(0, scheduled-st.Sent)
	if scheduled > 0 {
		st.SuccessPct = 100 * float64(st.OK) / float64(scheduled)
	}
	slices.Sort(lats)
	slices.Sort(lags)
	st.P50 = ms(percentile(lats, 5000))
	st.P90 = ms(percentile(lats, 9000))
	st.P99 = ms(percentile(lats, 9900))
	st.P999 = ms(percentile(lats, 9990))
	st.Max = ms(percentile(lats, 10000))
	st.LagP99 = ms(percentile(lags, 9900))
	return st
}

// ms converts to milliseconds rounded to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// second is one second of a phase, by due time.
type second struct {
	Sent int     `json:"sent"`
	OK   int     `json:"ok"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	// GatewayCPU is pbxgate's CPU time in this second (the first includes
	// the head start before the first request).
	GatewayCPU float64 `json:"pbxgate_cpu_s"`
	// CPUs is what each CPU of the machine did in this second, whoever
	// ran on it (/proc/stat).
	CPUs []cpuShare `json:"cpus"`
	// KernelDrops are the packets the kernel blacklist dropped in this
	// second (with -kernel-blacklist).
	KernelDrops uint64 `json:"kernel_drops,omitempty"`
}

// timeline splits the samples of a phase of duration d by the second they
// fell due in, to show when in the phase latency rose.
func timeline(samples []sample, d time.Duration) []second {
	n := int((d + time.Second - 1) / time.Second)
	if n <= 0 {
		return nil
	}
	buckets := make([][]time.Duration, n)
	out := make([]second, n)
	for _, s := range samples {
		k := min(max(int(s.due/time.Second), 0), n-1)
		buckets[k] = append(buckets[k], s.lat)
		out[k].Sent++
		if s.ok {
			out[k].OK++
		}
	}
	for k, b := range buckets {
		slices.Sort(b)
		out[k].P99 = ms(percentile(b, 9900))
		out[k].Max = ms(percentile(b, 10000))
	}
	return out
}

// splitStats summarizes the samples due in [from, to). Every slot in the
// window was sent (or counted unsent) by the same clients, so the slots are
// counted from the samples' own due times plus the unsent ones are not
// known: Scheduled is the number of samples, and Unsent is zero.
func splitStats(samples []sample, from, to time.Duration, late time.Duration) *phaseStats {
	var part []sample
	for _, s := range samples {
		if s.due >= from && s.due < to {
			part = append(part, s)
		}
	}
	st := summarize(part, len(part), late)
	st.Duration = roundTo((to - from).Seconds(), 3)
	return &st
}
