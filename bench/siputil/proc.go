package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procMem is what the kernel says about another process's memory and
// descriptors.
type procMem struct {
	RSSKB int64 // VmRSS
	HWMKB int64 // VmHWM: peak RSS
	FDs   int   // open descriptors
}

func readProcMem(pid int) (procMem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMem{}, err
	}
	defer f.Close()
	var m procMem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			m.RSSKB, _ = strconv.ParseInt(fields[1], 10, 64)
		case "VmHWM:":
			m.HWMKB, _ = strconv.ParseInt(fields[1], 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return procMem{}, err
	}
	if m.RSSKB == 0 {
		return procMem{}, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return procMem{}, err
	}
	m.FDs = len(fds)
	return m, nil
}

// procNoFile returns the soft open-file limit of process pid. The Go
// runtime raises its own soft limit to the hard one at start-up, so for
// pbxgate this is the hard limit.
func procNoFile(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 1 {
			break
		}
		if fields[0] == "unlimited" {
			return 1 << 30, nil
		}
		return strconv.Atoi(fields[0])
	}
	return 0, fmt.Errorf("no \"Max open files\" in /proc/%d/limits", pid)
}

// raiseNoFile lifts this process's open-file limit to want, or, when the
// hard limit is lower and may not be raised (no CAP_SYS_RESOURCE), the soft
// limit to the hard one, and returns the limit in force.
func raiseNoFile(want int) (int, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if w := uint64(want); w > rl.Max {
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: w, Max: w}) == nil {
			rl.Cur, rl.Max = w, w
		}
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, fmt.Errorf("setrlimit: %w", err)
		}
	}
	if rl.Cur > 1<<30 {
		return 1 << 30, nil
	}
	return int(rl.Cur), nil
}
