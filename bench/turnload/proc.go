package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux the benchmark runs on).
const clockTick = 10 * time.Millisecond

// cpuTime returns the user + system CPU time process pid (0: this process)
// has used so far, all its threads included.
func cpuTime(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a
// /proc/PID/stat line. The command name (field 2) is in parentheses and
// may contain spaces and parentheses, so fields are counted after the last
// ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command name in %q", truncate(b))
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the name, want >= 13", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: utime %q stime %q", f[11], f[12])
	}
	return time.Duration(u+s) * clockTick, nil
}

// procMem is a process's resident memory in KiB: now and at its peak.
type procMem struct {
	rssKB, hwmKB int64
}

// readMem reads VmRSS and VmHWM from /proc/PID/status.
func readMem(pid int) (procMem, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return procMem{}, err
	}
	defer f.Close()
	return parseStatus(f, f.Name())
}

func parseStatus(r io.Reader, name string) (procMem, error) {
	var m procMem
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &m.rssKB
		case "VmHWM":
			dst = &m.hwmKB
		default:
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return m, fmt.Errorf("status: %s %q", k, v)
		}
		*dst = n
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if m.rssKB == 0 {
		return m, fmt.Errorf("status: no VmRSS in %s", name)
	}
	return m, nil
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// cpuBusy is the CPU time spent not idle so far: by all CPUs, and by each
// (index = CPU number), from /proc/stat.
type cpuBusy struct {
	all   time.Duration
	byCPU []time.Duration
}

func readCPUBusy() (cpuBusy, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuBusy{}, err
	}
	return parseProcStat(b)
}

// parseProcStat reads the "cpu" and "cpuN" lines: busy is everything but
// idle and iowait (guest time is already in user).
func parseProcStat(b []byte) (cpuBusy, error) {
	var c cpuBusy
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		var busy uint64
		for i, v := range f[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return c, fmt.Errorf("/proc/stat: %s field %d %q", f[0], i+1, v)
			}
			switch i {
			case 3, 4, 8, 9: // idle, iowait, guest, guest_nice
			default:
				busy += n
			}
		}
		d := time.Duration(busy) * clockTick
		if f[0] == "cpu" {
			c.all, found = d, true
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil || n < 0 || n > 4096 {
			return c, fmt.Errorf("/proc/stat: line %q", f[0])
		}
		for len(c.byCPU) <= n {
			c.byCPU = append(c.byCPU, 0)
		}
		c.byCPU[n] = d
	}
	if !found {
		return c, errors.New("/proc/stat: no cpu line")
	}
	return c, nil
}

// on returns the busy time of the CPUs in set, and false when one is
// unknown.
func (c cpuBusy) on(set []int) (time.Duration, bool) {
	var d time.Duration
	for _, n := range set {
		if n < 0 || n >= len(c.byCPU) {
			return 0, false
		}
		d += c.byCPU[n]
	}
	return d, true
}

// udpDrops reads /proc/net/udp: for every IPv4 UDP socket in this network
// namespace, whoever owns it, the datagrams the kernel dropped because its
// receive buffer was full (the last column), summed per local address (a
// port bound several times with SO_REUSEPORT counts once).
func udpDrops() (map[netip.AddrPort]uint64, error) {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return nil, err
	}
	return parseUDPDrops(b)
}

func parseUDPDrops(b []byte) (map[netip.AddrPort]uint64, error) {
	out := map[netip.AddrPort]uint64{}
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		f := strings.Fields(line)
		if i == 0 || len(f) == 0 {
			continue // header
		}
		if len(f) < 13 {
			return nil, fmt.Errorf("/proc/net/udp line %d: %d fields, want 13", i+1, len(f))
		}
		hexIP, hexPort, ok := strings.Cut(f[1], ":")
		ip, err1 := strconv.ParseUint(hexIP, 16, 32)
		port, err2 := strconv.ParseUint(hexPort, 16, 16)
		drops, err3 := strconv.ParseUint(f[len(f)-1], 10, 64)
		if !ok || err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("/proc/net/udp line %d: cannot read %q", i+1, truncate([]byte(line)))
		}
		// The address is the kernel's __be32 printed as a host-order
		// (little-endian on every machine this runs on) number.
		a := netip.AddrFrom4([4]byte{byte(ip), byte(ip >> 8), byte(ip >> 16), byte(ip >> 24)})
		out[netip.AddrPortFrom(a, uint16(port))] += drops
	}
	return out, nil
}

// dropCounter sums the drops of groups of sockets between two readings.
type dropCounter struct {
	before map[netip.AddrPort]uint64
	err    error
}

func (d *dropCounter) start() { d.before, d.err = udpDrops() }

// since returns, for each group of addresses, the drops since start; nil
// when /proc/net/udp could not be read.
func (d *dropCounter) since(groups ...[]netip.AddrPort) []uint64 {
	if d.err != nil {
		return nil
	}
	after, err := udpDrops()
	if err != nil {
		return nil
	}
	out := make([]uint64, len(groups))
	for i, g := range groups {
		for _, a := range g {
			if x, y := after[a], d.before[a]; x > y {
				out[i] += x - y
			}
		}
	}
	return out
}
