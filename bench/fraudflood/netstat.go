package main

import (
	"bufio"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// tcpCounters are the kernel counters that explain a flood's effect on
// loopback TCP: an accept queue that overflowed (the client believes it is
// connected, the server dropped it) and retransmissions (a dropped SYN is
// retried after a second).
var tcpCounters = []string{
	"TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPTimeouts",
	"TcpExt.TCPSynRetrans", "TcpExt.TCPAbortOnData", "Tcp.RetransSegs",
	"Tcp.ActiveOpens", "Tcp.PassiveOpens", "Tcp.AttemptFails",
}

// readCounters reads the machine-wide counters named "Group.Name" from
// /proc/net/netstat and /proc/net/snmp. Missing files or names are left out.
func readCounters() map[string]int64 {
	m := map[string]int64{}
	for _, p := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		parseCounters(f, m)
		f.Close()
	}
	return m
}

// parseCounters reads the /proc/net/{netstat,snmp} format: pairs of lines,
// "Group: name name ..." then "Group: value value ...".
func parseCounters(r io.Reader, into map[string]int64) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var names []string
	var group string
	for sc.Scan() {
		g, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			names = nil
			continue
		}
		fields := strings.Fields(rest)
		if names == nil || g != group {
			group, names = g, fields
			continue
		}
		for i, v := range fields {
			if i < len(names) {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					into[g+"."+names[i]] = n
				}
			}
		}
		names = nil
	}
}

// counterDelta returns after-before for the counters of interest.
func counterDelta(before, after map[string]int64) map[string]int64 {
	d := make(map[string]int64, len(tcpCounters))
	for _, k := range tcpCounters {
		if a, ok := after[k]; ok {
			d[k] = a - before[k]
		}
	}
	return d
}

// cpuTime is one CPU's line of /proc/stat, in jiffies.
type cpuTime struct {
	total, idle, softirq, steal uint64 // idle includes iowait
}

// cpuTimes returns the machine's CPUs' times; nil if unreadable.
func cpuTimes() []cpuTime {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	return parseCPUTimes(string(b))
}

// parseCPUTimes reads the "cpuN user nice system idle iowait irq softirq
// steal guest guest_nice" lines (guest time is already counted in user).
func parseCPUTimes(stat string) []cpuTime {
	var out []cpuTime
	for l := range strings.Lines(stat) {
		f := strings.Fields(l)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return nil
			}
			v[i] = n
		}
		var t cpuTime
		for _, n := range v {
			t.total += n
		}
		t.idle, t.softirq, t.steal = v[3]+v[4], v[6], v[7]
		out = append(out, t)
	}
	return out
}

// cpuShare is what one CPU did over an interval, in percent.
type cpuShare struct {
	Busy    float64 `json:"busy_pct"`    // all but idle and iowait
	Softirq float64 `json:"softirq_pct"` // network receive processing, mostly
	Steal   float64 `json:"steal_pct"`   // taken by the hypervisor
}

// cpuShares returns each CPU's shares between two cpuTimes readings.
func cpuShares(a, b []cpuTime) []cpuShare {
	if len(a) != len(b) {
		return nil
	}
	out := make([]cpuShare, len(a))
	for i := range a {
		dt := float64(b[i].total - a[i].total)
		if b[i].total <= a[i].total || b[i].idle < a[i].idle || b[i].softirq < a[i].softirq || b[i].steal < a[i].steal {
			continue
		}
		pct := func(x uint64) float64 { return math.Round(100 * float64(x) / dt) }
		out[i] = cpuShare{
			Busy:    pct((b[i].total - a[i].total) - (b[i].idle - a[i].idle)),
			Softirq: pct(b[i].softirq - a[i].softirq),
			Steal:   pct(b[i].steal - a[i].steal),
		}
	}
	return out
}
