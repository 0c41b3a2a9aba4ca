package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/pbxgate/pbxgate/bench/internal/kv"
)

// The raw keys bench/blacklist.sh writes, per case (user, kernel) and
// round: flood.CASE.rN.KEY with KEY one of
//
//	sent, secs, pps, flood_cpu, errors, size  the flooder's BLFLOOD line
//	pbx_cpu        pbxgate's CPU seconds (user + system) during the flood
//	host_busy      busy CPU seconds of the whole machine during the flood
//	kernel_drops   packets counted by the bl4 drop rule (table inet pbxgate_bl)
//	delivered      UDP datagrams the server namespace delivered to a socket
//	rcvbuf_errors  UDP datagrams dropped because the socket buffer was full
//
// and meta.* lines of text.

// caseNames are the two ways a ban is enforced, in report order.
var caseNames = []string{"user", "kernel"}

var caseLabel = map[string]string{
	"user":   "user space (kernel_blacklist off)",
	"kernel": "kernel (kernel_blacklist on)",
}

// row is one case's medians.
type row struct {
	Case        string  `json:"case"`
	Rounds      int     `json:"rounds"`
	Sent        float64 `json:"sent"`
	Secs        float64 `json:"secs"`
	OfferedPPS  float64 `json:"offered_pps"`
	KernelPPS   float64 `json:"dropped_in_kernel_pps"`
	PbxgatePPS  float64 `json:"read_and_dropped_by_pbxgate_pps"`
	SocketPPS   float64 `json:"lost_at_socket_pps"`
	DroppedPPS  float64 `json:"dropped_pps"`
	PbxCPU      float64 `json:"pbxgate_cpu_s"`
	PbxPerM     float64 `json:"pbxgate_cpu_s_per_mpkt"`
	HostPerM    float64 `json:"host_cpu_s_per_mpkt"`
	FloodPerM   float64 `json:"flooder_cpu_s_per_mpkt"`
	KernelShare float64 `json:"kernel_share"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summarise computes a case's per-round values and their medians.
func summarise(r kv.Results, c string) (row, error) {
	out := row{Case: c}
	var sent, secs, offered, kern, pbx, sock, dropped, cpu, pbxPerM, hostPerM, floodPerM, share []float64
	for n := 1; n <= 1000; n++ {
		p := fmt.Sprintf("flood.%s.r%d.", c, n)
		s, ok := r.Num(p + "sent")
		if !ok {
			break
		}
		t, ok := r.Num(p + "secs")
		if !ok || s <= 0 || t <= 0 {
			return out, fmt.Errorf("%s: no duration or nothing sent", p)
		}
		num := func(k string) float64 { v, _ := r.Num(p + k); return v }
		m := s / 1e6
		sent, secs, offered = append(sent, s), append(secs, t), append(offered, s/t)
		kern = append(kern, num("kernel_drops")/t)
		pbx = append(pbx, num("delivered")/t)
		sock = append(sock, num("rcvbuf_errors")/t)
		dropped = append(dropped, (num("kernel_drops")+num("delivered")+num("rcvbuf_errors"))/t)
		cpu = append(cpu, num("pbx_cpu"))
		pbxPerM = append(pbxPerM, num("pbx_cpu")/m)
		hostPerM = append(hostPerM, num("host_busy")/m)
		floodPerM = append(floodPerM, num("flood_cpu")/m)
		share = append(share, num("kernel_drops")/s)
	}
	if len(sent) == 0 {
		return out, fmt.Errorf("no rounds of case %s", c)
	}
	out.Rounds = len(sent)
	out.Sent, out.Secs, out.OfferedPPS = median(sent), median(secs), median(offered)
	out.KernelPPS, out.PbxgatePPS, out.SocketPPS, out.DroppedPPS = median(kern), median(pbx), median(sock), median(dropped)
	out.PbxCPU, out.PbxPerM, out.HostPerM, out.FloodPerM = median(cpu), median(pbxPerM), median(hostPerM), median(floodPerM)
	out.KernelShare = median(share)
	return out, nil
}

func report(args []string) (bool, error) {
	if len(args) != 3 {
		return false, errors.New("report RAW OUT.txt OUT.json")
	}
	r, err := kv.Read(args[0])
	if err != nil {
		return false, err
	}
	var rows []row
	for _, c := range caseNames {
		if _, ok := r.Num("flood." + c + ".r1.sent"); !ok {
			continue
		}
		x, err := summarise(r, c)
		if err != nil {
			return false, err
		}
		rows = append(rows, x)
	}
	if len(rows) == 0 {
		return false, errors.New("no results")
	}

	var verdicts []kv.Verdict
	by := map[string]row{}
	for _, x := range rows {
		by[x.Case] = x
	}
	if k, ok := by["kernel"]; ok {
		verdicts = append(verdicts, kv.Check("kernel: >= 99.9 % of the banned source's packets dropped in the kernel", 100*k.KernelShare, true, k.KernelShare >= 0.999))
	}
	if u, ok := by["user"]; ok {
		verdicts = append(verdicts, kv.Check("user space: no packet dropped in the kernel (table absent)", u.KernelPPS, true, u.KernelPPS == 0))
	}
	saved, haveSaved := 0.0, false
	if u, ok := by["user"]; ok {
		if k, ok := by["kernel"]; ok {
			saved, haveSaved = u.PbxPerM-k.PbxPerM, true
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "pbxgate kernel blacklist benchmark  %s  %s\n", r["meta.date"], r["meta.pbxgate_version"])
	fmt.Fprintf(&b, "%s, %s cores, %s, %s; pinning: %s\n", r["meta.kernel"], r["meta.cores"], r["meta.go"], r["meta.nft"], r["meta.pinning"])
	fmt.Fprintf(&b, "one banned source floods pbxgate's SIP UDP port (%s-byte OPTIONS, %s s or %s datagrams per run, rate %s); %s rounds, medians\n\n",
		r["flood."+rows[0].Case+".r1.size"], r["meta.duration"], r["meta.max"], r["meta.rate"], r["meta.rounds"])
	fmt.Fprintf(&b, "%34s %12s %12s %12s %12s %12s %10s %12s %12s %12s\n", "ban enforced in", "offered/s", "dropped/s", "kernel/s", "pbxgate/s", "socket/s",
		"pbx CPU s", "pbx s/Mpkt", "host s/Mpkt", "flood s/Mpkt")
	for _, x := range rows {
		fmt.Fprintf(&b, "%34s %12s %12s %12s %12s %12s %10.2f %12.3f %12.3f %12.3f\n", caseLabel[x.Case],
			kv.Group(int64(x.OfferedPPS)), kv.Group(int64(x.DroppedPPS)), kv.Group(int64(x.KernelPPS)), kv.Group(int64(x.PbxgatePPS)), kv.Group(int64(x.SocketPPS)),
			x.PbxCPU, x.PbxPerM, x.HostPerM, x.FloodPerM)
	}
	b.WriteString("\n  kernel/s: dropped by the bl4 rule (prerouting, priority raw); pbxgate/s: delivered to pbxgate's socket, read and\n")
	b.WriteString("  dropped by the fraud guard; socket/s: dropped by the kernel because pbxgate's socket buffer was full.\n")
	b.WriteString("  s/Mpkt: CPU seconds per million datagrams sent (pbxgate's own; the whole machine's; the flooder's, which on veth\n")
	b.WriteString("  includes the receive path's softirq work done on the sending CPU).\n")
	if haveSaved {
		fmt.Fprintf(&b, "\npbxgate CPU per million datagrams: user space %.3f s, kernel %.3f s: %.3f s saved\n", by["user"].PbxPerM, by["kernel"].PbxPerM, saved)
	}
	b.WriteString("\n")
	pass := true
	for _, v := range verdicts {
		val := "-"
		if v.Value != nil {
			val = strconv.FormatFloat(*v.Value, 'f', 3, 64)
		}
		fmt.Fprintf(&b, "check %s: %s (%s)\n", v.Target, v, val)
		if v.Pass == nil || !*v.Pass {
			pass = false
		}
	}
	if pass {
		b.WriteString("RESULT: PASS\n")
	} else {
		b.WriteString("RESULT: FAIL\n")
	}
	os.Stdout.WriteString(b.String())
	if err := os.WriteFile(args[1], []byte(b.String()), 0o644); err != nil {
		return false, err
	}
	doc := map[string]any{"raw": r.Nested(), "cases": rows, "verdicts": verdicts, "pass": pass}
	if haveSaved {
		doc["pbxgate_cpu_s_per_mpkt_saved"] = saved
	}
	j, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return false, err
	}
	return pass, os.WriteFile(args[2], append(j, '\n'), 0o644)
}
