package safety

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSystemdTimer(t *testing.T) {
	var calls [][]string
	fail := ""
	run := func(_ context.Context, name string, args ...string) ([]byte, error) {
		calls = append(calls, append([]string{name}, args...))
		if fail != "" {
			return []byte(fail), errors.New("exit status 5")
		}
		return nil, nil
	}
	tm := &SystemdTimer{Self: []string{"/usr/sbin/pbxgate", "firewall", "rollback"}, run: run}
	now := time.Now()
	got := tm.armArgs(7, now.Add(10*time.Minute), now)
	want := []string{"--on-active=600s", "--unit=pbxgate-fw-rollback-7", "--timer-property=AccuracySec=1s",
		"--description=pbxgate firewall rollback of generation 7", "--",
		"/usr/sbin/pbxgate", "firewall", "rollback", "--if-gen", "7"}
	if !slices.Equal(got, want) {
		t.Fatalf("systemd-run args\n got %q\nwant %q", got, want)
	}
	if a := tm.armArgs(1, now.Add(-time.Second), now); a[0] != "--on-active=1s" {
		t.Errorf("past deadline armed with %s, want 1s", a[0])
	}
	h, err := tm.Arm(7, time.Now().Add(time.Minute))
	if err != nil || h.Kind != TimerSystemd || h.Unit != "pbxgate-fw-rollback-7" || calls[0][0] != "systemd-run" {
		t.Fatalf("Arm = %+v, %v; calls %q", h, err, calls)
	}
	if err := tm.Cancel(h); err != nil {
		t.Fatal(err)
	}
	if last := calls[len(calls)-1]; !slices.Equal(last, []string{"systemctl", "stop", "pbxgate-fw-rollback-7.timer", "pbxgate-fw-rollback-7.service"}) {
		t.Fatalf("Cancel ran %q", last)
	}
	fail = "Failed to stop pbxgate-fw-rollback-7.timer: Unit pbxgate-fw-rollback-7.timer not loaded."
	if err := tm.Cancel(h); err != nil {
		t.Errorf("Cancel of a finished unit = %v, want nil", err)
	}
	fail = "Access denied"
	if err := tm.Cancel(h); err == nil || !strings.Contains(err.Error(), "Access denied") {
		t.Errorf("Cancel failure = %v, want the systemctl output", err)
	}
	if _, err := tm.Arm(8, time.Now().Add(time.Minute)); err == nil {
		t.Error("Arm ignored a systemd-run failure")
	}
}

func TestSystemdAnswers(t *testing.T) {
	answer := func(out string) runFunc {
		return func(context.Context, string, ...string) ([]byte, error) {
			if out == "" {
				return nil, errors.New("Failed to connect to bus")
			}
			return []byte(out + "\n"), errors.New("exit status 1")
		}
	}
	tests := []struct {
		name   string
		booted bool
		pid1   string
		out    string
		want   bool
	}{
		{"running", true, "systemd", "running", true},
		{"degraded", true, "systemd", "degraded", true},
		{"offline", true, "systemd", "offline", false},
		{"no bus", true, "systemd", "", false},
		{"pid1 not systemd", true, "process_api", "running", false},
		{"not booted with systemd", false, "systemd", "running", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := systemdAnswers(tc.booted, tc.pid1, answer(tc.out)); got != tc.want {
				t.Fatalf("systemdAnswers = %v, want %v", got, tc.want)
			}
		})
	}
	// On this machine (CI containers: PID 1 is not systemd) the watchdog
	// must be chosen.
	if comm, _ := os.ReadFile("/proc/1/comm"); strings.TrimSpace(string(comm)) != "systemd" {
		if _, ok := NewTimer([]string{"/bin/true"}).(*WatchdogTimer); !ok {
			t.Fatal("NewTimer did not fall back to the watchdog")
		}
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		start     uint64
		pgid      int
		wantError bool
	}{
		{name: "plain", in: "1234 (pbxgate) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10", start: 98765, pgid: 1234},
		{name: "odd comm", in: "1234 (a) b) (c) S 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 1000 10", start: 5, pgid: 77},
		{name: "zombie", in: "1234 (x) Z 1 1234 1234 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0", wantError: true},
		{name: "short", in: "1234 (x) S 1 2", wantError: true},
		{name: "no paren", in: "1234 x S", wantError: true},
		{name: "bad number", in: "1 (x) S 1 x 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0", wantError: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start, pgid, err := parseStat([]byte(tc.in))
			if tc.wantError {
				if err == nil {
					t.Fatalf("parseStat = %d, %d; want an error", start, pgid)
				}
				return
			}
			if err != nil || start != tc.start || pgid != tc.pgid {
				t.Fatalf("parseStat = %d, %d, %v; want %d, %d", start, pgid, err, tc.start, tc.pgid)
			}
		})
	}
	// Our own stat parses.
	if _, _, err := procStart(os.Getpid()); err != nil {
		t.Fatalf("procStart(self): %v", err)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1234 (pbxgate) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10"))
	f.Add([]byte("1 ()) Z"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, pgid, err := parseStat(b)
		if err == nil && !strings.Contains(string(b), strconv.Itoa(pgid)) {
			t.Fatalf("pgid %d not in the input", pgid)
		}
	})
}

// The watchdog is detached: its own session and process group, stdio on
// /dev/null, the flags appended; Cancel stops it, and a handle that does
// not match the live process (recycled PID) is never signalled.
func TestWatchdogTimerDetaches(t *testing.T) {
	out := t.TempDir() + "/args"
	// sh -c SCRIPT argv0 args...: records its arguments, then waits.
	tm := &WatchdogTimer{Self: []string{"/bin/sh", "-c", `echo "$@" > ` + out + `; exec sleep 30`, "watchdog"}}
	deadline := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	h, err := tm.Arm(42, deadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-h.PID, syscall.SIGKILL) })
	if h.Kind != TimerWatchdog || h.PID <= 0 || h.PIDStart == 0 || h.BootID == "" {
		t.Fatalf("handle %+v", h)
	}
	sid, err := syscall.Getpgid(h.PID)
	if err != nil || sid != h.PID {
		t.Fatalf("watchdog pgid %d (%v), want its own group %d", sid, err, h.PID)
	}
	if fd0, err := os.Readlink("/proc/" + strconv.Itoa(h.PID) + "/fd/0"); err != nil || fd0 != os.DevNull {
		t.Errorf("watchdog stdin %q (%v), want /dev/null", fd0, err)
	}
	var args string
	for range 200 { // bounded: 10 s
		if b, err := os.ReadFile(out); err == nil && len(b) > 0 {
			args = strings.TrimSpace(string(b))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if want := "--if-gen 42 --wait-until 2030-01-02T03:04:05Z"; args != want {
		t.Fatalf("watchdog args %q, want %q", args, want)
	}
	// A handle whose start time does not match is left alone.
	stale := h
	stale.PIDStart++
	if err := tm.Cancel(stale); err != nil {
		t.Fatal(err)
	}
	if _, _, err := procStart(h.PID); err != nil {
		t.Fatal("Cancel of a stale handle killed the process")
	}
	if err := tm.Cancel(h); err != nil {
		t.Fatal(err)
	}
	gone := false
	for range 200 {
		if _, _, err := procStart(h.PID); err != nil {
			gone = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !gone {
		t.Fatal("Cancel did not stop the watchdog")
	}
	if err := tm.Cancel(h); err != nil {
		t.Errorf("second Cancel = %v", err)
	}
	if _, err := (&WatchdogTimer{}).Arm(1, deadline); err == nil {
		t.Error("Arm without Self succeeded")
	}
}
