package safety

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Timer kinds, as reported in TimerHandle.Kind and Status.TimerKind.
const (
	TimerSystemd  = "systemd"
	TimerWatchdog = "watchdog"
)

// Flags appended to Options.Self when a timer runs the rollback. The CLI's
// rollback verb must accept both: --if-gen N rolls back only generation N;
// --wait-until T (RFC 3339) first waits until T (see Manager.RollbackAt).
const (
	FlagIfGen     = "--if-gen"
	FlagWaitUntil = "--wait-until"
)

// TimerHandle identifies an armed revert timer; it is stored in
// pending.json so that another process can cancel it.
type TimerHandle struct {
	Kind string `json:"kind,omitempty"`
	// Unit is the transient systemd unit name (systemd timers).
	Unit string `json:"unit,omitempty"`
	// PID, PIDStart (start time in clock ticks since boot, from
	// /proc/PID/stat) and BootID identify the watchdog process, so that a
	// recycled PID or a PID from an earlier boot is never signalled.
	PID      int    `json:"pid,omitempty"`
	PIDStart uint64 `json:"pid_start,omitempty"`
	BootID   string `json:"boot_id,omitempty"`
}

// Timer arms and cancels the revert of one generation. It runs outside
// the calling process: the revert must happen even if that process is
// killed. Cancel is best effort and idempotent; a timer that fires after
// Cancel failed is harmless because Rollback checks the generation.
type Timer interface {
	Kind() string
	Arm(gen uint64, deadline time.Time) (TimerHandle, error)
	Cancel(h TimerHandle) error
}

// runFunc runs a command and returns its combined output.
type runFunc func(ctx context.Context, name string, args ...string) ([]byte, error)

func execRun(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return out, err
}

// NewTimer picks the revert timer for this machine: systemd-run when
// systemd is PID 1 and answers, else a detached watchdog process. self is
// the argv that runs "firewall rollback" (Options.Self).
func NewTimer(self []string) Timer {
	if systemdUsable(execRun) {
		return &SystemdTimer{Self: self, run: execRun}
	}
	return &WatchdogTimer{Self: self}
}

// systemdUsable reports whether systemd is PID 1 and its manager answers.
func systemdUsable(run runFunc) bool {
	fi, err := os.Stat("/run/systemd/system")
	comm, _ := os.ReadFile("/proc/1/comm")
	return systemdAnswers(err == nil && fi.IsDir(), strings.TrimSpace(string(comm)), run)
}

// systemdAnswers decides from what systemdUsable gathered: the
// /run/systemd/system marker, PID 1's command name, and the answer of
// systemctl is-system-running.
func systemdAnswers(booted bool, pid1 string, run runFunc) bool {
	if !booted || pid1 != "systemd" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// is-system-running exits non-zero for "degraded"; what matters is
	// that the manager answers with a state in which it runs units.
	out, _ := run(ctx, "systemctl", "is-system-running")
	switch strings.TrimSpace(string(out)) {
	case "running", "degraded", "starting", "initializing":
		return true
	}
	return false
}

// SystemdTimer arms a transient systemd timer with systemd-run. It
// survives the caller, its SSH session and its cgroup; it does not survive
// a reboot, which needs no revert (the boot unit loads only last-good).
type SystemdTimer struct {
	Self []string
	run  runFunc
}

// Kind returns TimerSystemd.
func (t *SystemdTimer) Kind() string { return TimerSystemd }

func (t *SystemdTimer) runner() runFunc {
	if t.run != nil {
		return t.run
	}
	return execRun
}

// unitName is the transient unit for generation gen.
func unitName(gen uint64) string { return "pbxgate-fw-rollback-" + strconv.FormatUint(gen, 10) }

// armArgs is the systemd-run argv (without the program name).
func (t *SystemdTimer) armArgs(gen uint64, deadline, now time.Time) []string {
	secs := int64(deadline.Sub(now).Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	args := []string{
		"--on-active=" + strconv.FormatInt(secs, 10) + "s",
		"--unit=" + unitName(gen),
		"--timer-property=AccuracySec=1s",
		"--description=pbxgate firewall rollback of generation " + strconv.FormatUint(gen, 10),
		"--",
	}
	args = append(args, t.Self...)
	return append(args, FlagIfGen, strconv.FormatUint(gen, 10))
}

// Arm runs systemd-run --on-active=... Self --if-gen gen.
func (t *SystemdTimer) Arm(gen uint64, deadline time.Time) (TimerHandle, error) {
	if len(t.Self) == 0 {
		return TimerHandle{}, errors.New("systemd timer: no rollback command (Options.Self)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if out, err := t.runner()(ctx, "systemd-run", t.armArgs(gen, deadline, time.Now())...); err != nil {
		return TimerHandle{}, fmt.Errorf("systemd-run: %w: %s", err, trimOut(out))
	}
	return TimerHandle{Kind: TimerSystemd, Unit: unitName(gen)}, nil
}

// Cancel stops the transient timer and its service. Units that no longer
// exist are not an error.
func (t *SystemdTimer) Cancel(h TimerHandle) error {
	if h.Unit == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	units := []string{h.Unit + ".timer", h.Unit + ".service"}
	if inUnit(h.Unit + ".service") {
		// We are that service (the timer fired): stopping it would kill
		// us. The timer has elapsed; the service ends with us.
		units = units[:1]
	}
	out, err := t.runner()(ctx, "systemctl", append([]string{"stop"}, units...)...)
	if err != nil && !bytes.Contains(out, []byte("not loaded")) {
		return fmt.Errorf("systemctl stop %s: %w: %s", h.Unit, err, trimOut(out))
	}
	return nil
}

// inUnit reports whether this process runs in the cgroup of unit.
func inUnit(unit string) bool {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasSuffix(line, "/"+unit) {
			return true
		}
	}
	return false
}

func trimOut(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}

// WatchdogTimer starts Self --if-gen N --wait-until T as a detached
// process: a new session and process group (setsid), stdio on /dev/null,
// not waited for. It survives SIGKILL of the caller and the hang-up of its
// terminal; it does not survive a reboot (none is needed) and it stays in
// the caller's cgroup, so a service manager that kills the caller's whole
// cgroup kills it too (where systemd manages cgroups, SystemdTimer is used).
type WatchdogTimer struct {
	Self []string
	// Env, when non-nil, is the watchdog's environment; nil inherits ours.
	Env []string
}

// Kind returns TimerWatchdog.
func (t *WatchdogTimer) Kind() string { return TimerWatchdog }

// Arm starts the watchdog process.
func (t *WatchdogTimer) Arm(gen uint64, deadline time.Time) (TimerHandle, error) {
	if len(t.Self) == 0 {
		return TimerHandle{}, errors.New("watchdog timer: no rollback command (Options.Self)")
	}
	args := append([]string(nil), t.Self[1:]...)
	args = append(args, FlagIfGen, strconv.FormatUint(gen, 10), FlagWaitUntil, deadline.UTC().Format(time.RFC3339Nano))
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return TimerHandle{}, fmt.Errorf("watchdog: %w", err)
	}
	defer devnull.Close()
	cmd := exec.Command(t.Self[0], args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.Env = t.Env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return TimerHandle{}, fmt.Errorf("start watchdog: %w", err)
	}
	h := TimerHandle{Kind: TimerWatchdog, PID: cmd.Process.Pid, BootID: bootID()}
	h.PIDStart, _, _ = procStart(h.PID)
	// Reap the child if we outlive it, so it does not linger as a zombie;
	// if we die first, init (or the nearest subreaper) reaps it. The
	// goroutine ends when the watchdog does, at the latest at its
	// deadline.
	go func() { _ = cmd.Wait() }()
	return h, nil
}

// Cancel terminates the watchdog's process group if, and only if, the
// recorded process is still the one we started (same boot, same start
// time, still a session leader). Our own PID is never signalled: the
// watchdog itself cancels its handle when it rolls back.
func (t *WatchdogTimer) Cancel(h TimerHandle) error {
	if h.PID <= 0 || h.PID == os.Getpid() {
		return nil
	}
	if h.BootID != "" && h.BootID != bootID() {
		return nil
	}
	start, pgid, err := procStart(h.PID)
	if err != nil || start != h.PIDStart || pgid != h.PID {
		return nil // gone, or the PID was recycled
	}
	if err := syscall.Kill(-h.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop watchdog %d: %w", h.PID, err)
	}
	return nil
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// procStart returns a live (non-zombie) process's start time and process
// group from /proc/PID/stat.
func procStart(pid int) (start uint64, pgid int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseStat(b)
}

// parseStat extracts the start time (field 22) and pgid (field 5) from a
// /proc/PID/stat line, refusing zombies. The command name (field 2) may
// contain spaces and parentheses, so fields are counted after the last ')'.
func parseStat(b []byte) (start uint64, pgid int, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22 (starttime).
	if len(f) < 20 {
		return 0, 0, errors.New("short stat")
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, 0, errors.New("process exited")
	}
	pgid, err = strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, fmt.Errorf("stat pgrp: %w", err)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stat starttime: %w", err)
	}
	return start, pgid, nil
}
