package safety

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeLoader is the kernel: the last script applied. Check rejects
// scripts containing "BAD"; Apply fails for scripts containing "FAILAPPLY"
// or while failApply is set.
type fakeLoader struct {
	mu        sync.Mutex
	kernel    string
	applies   int
	failApply bool
}

func (l *fakeLoader) Check(s string) error {
	if strings.Contains(s, "BAD") {
		return errors.New("syntax error")
	}
	return nil
}

func (l *fakeLoader) Apply(s string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failApply || strings.Contains(s, "FAILAPPLY") {
		return errors.New("netlink: operation not permitted")
	}
	l.kernel = s
	l.applies++
	return nil
}

func (l *fakeLoader) state() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.kernel, l.applies
}

// fakeTimer records armed and cancelled generations.
type fakeTimer struct {
	mu        sync.Mutex
	armed     map[uint64]time.Time
	cancelled []string
	failArm   bool
}

func (t *fakeTimer) Kind() string { return "fake" }

func (t *fakeTimer) Arm(gen uint64, deadline time.Time) (TimerHandle, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failArm {
		return TimerHandle{}, errors.New("no timer")
	}
	if t.armed == nil {
		t.armed = map[uint64]time.Time{}
	}
	t.armed[gen] = deadline
	return TimerHandle{Kind: "fake", Unit: fmt.Sprint("u", gen)}, nil
}

func (t *fakeTimer) Cancel(h TimerHandle) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h.Unit != "" {
		t.cancelled = append(t.cancelled, h.Unit)
	}
	return nil
}

func (t *fakeTimer) wasCancelled(unit string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, u := range t.cancelled {
		if u == unit {
			return true
		}
	}
	return false
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type rig struct {
	dir    string
	loader *fakeLoader
	timer  *fakeTimer
	m      *Manager
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{dir: t.TempDir(), loader: &fakeLoader{}, timer: &fakeTimer{}}
	r.m = r.manager(t)
	return r
}

// manager returns a new Manager over the same directory, as a second
// process (or the next CLI run) would have.
func (r *rig) manager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(Options{Dir: r.dir, Loader: r.loader, Timer: r.timer, Now: func() time.Time { return t0 }, History: 3})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (r *rig) kernel() string { k, _ := r.loader.state(); return k }

func (r *rig) status(t *testing.T) Status {
	t.Helper()
	st, err := r.m.Status()
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	return st
}

func (r *rig) exists(name string) bool {
	_, err := os.Stat(filepath.Join(r.dir, name))
	return err == nil
}

func (r *rig) read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const (
	scriptA = "# A\n"
	scriptB = "# B\n"
	scriptC = "# C\n"
)

func mustApplyNow(t *testing.T, m *Manager, s string) uint64 {
	t.Helper()
	gen, err := m.ApplyNow(s, netip.Addr{}, nil, false)
	if err != nil {
		t.Fatalf("ApplyNow: %v", err)
	}
	return gen
}

func mustApplyTest(t *testing.T, m *Manager, s string) uint64 {
	t.Helper()
	gen, err := m.ApplyTest(s, 10*time.Minute, netip.Addr{}, nil, false)
	if err != nil {
		t.Fatalf("ApplyTest: %v", err)
	}
	return gen
}

func TestNewValidates(t *testing.T) {
	_, err := New(Options{})
	for _, want := range []string{"Dir", "Loader", "Self"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(empty) = %v, want a problem naming %s", err, want)
		}
	}
	if _, err := New(Options{Dir: t.TempDir(), Loader: &fakeLoader{}, Self: []string{"/bin/true"}}); err != nil {
		t.Errorf("New with Self: %v", err)
	}
}

func TestApplyThenConfirm(t *testing.T) {
	r := newRig(t)
	if g := mustApplyNow(t, r.m, scriptA); g != 1 {
		t.Fatalf("first generation %d, want 1", g)
	}
	if r.kernel() != scriptA || r.read(t, fileLastGood) != scriptA {
		t.Fatal("ApplyNow did not load and confirm A")
	}
	gen := mustApplyTest(t, r.m, scriptB)
	if gen != 2 {
		t.Fatalf("generation %d, want 2", gen)
	}
	if r.kernel() != scriptB {
		t.Fatalf("kernel %q after ApplyTest, want B", r.kernel())
	}
	if d := r.timer.armed[2]; !d.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("timer armed for %v, want now+10m", d)
	}
	st := r.status(t)
	if st.Pending == nil || st.Pending.Generation != 2 || !st.Pending.Applied || st.Pending.SHA256 != checksum(scriptB) || st.Confirmed != 1 {
		t.Fatalf("status after ApplyTest: %+v pending %+v", st, st.Pending)
	}
	if r.read(t, fileLastGood) != scriptA {
		t.Fatal("ApplyTest changed last-good")
	}

	// Confirm from another process.
	if err := r.manager(t).Confirm(); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	if r.read(t, fileLastGood) != scriptB || r.exists(fileCandidate) || r.exists(filePending) {
		t.Fatal("Confirm did not promote the candidate")
	}
	if !r.timer.wasCancelled("u2") {
		t.Error("Confirm did not cancel the timer")
	}
	st = r.status(t)
	if st.Confirmed != 2 || st.Pending != nil || st.Last.Result != ResultConfirmed || st.ConfirmedSHA256 != checksum(scriptB) {
		t.Fatalf("status after Confirm: %+v", st)
	}
	_, applies := r.loader.state()
	// Idempotent: a second confirm succeeds and changes nothing.
	if err := r.m.Confirm(); err != nil {
		t.Fatalf("second Confirm: %v", err)
	}
	if _, a := r.loader.state(); a != applies || r.status(t).Confirmed != 2 {
		t.Error("second Confirm changed something")
	}
	// A late timer for the confirmed generation is a no-op.
	if err := r.m.Rollback(2); err != nil || r.kernel() != scriptB {
		t.Fatalf("late Rollback(2) = %v, kernel %q; want no-op", err, r.kernel())
	}
	for _, g := range []uint64{1, 2} {
		if b, err := os.ReadFile(filepath.Join(r.dir, dirHistory, historyName(g))); err != nil || len(b) == 0 {
			t.Errorf("history of generation %d: %v", g, err)
		}
	}
}

func TestConfirmWithNothingPending(t *testing.T) {
	r := newRig(t)
	if err := r.m.Confirm(); !errors.Is(err, ErrNoPending) {
		t.Fatalf("Confirm on empty dir = %v, want ErrNoPending", err)
	}
}

func TestRollbackAtDeadline(t *testing.T) {
	r := newRig(t)
	mustApplyNow(t, r.m, scriptA)
	gen := mustApplyTest(t, r.m, scriptB)
	if err := r.manager(t).Rollback(gen); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if r.kernel() != scriptA {
		t.Fatalf("kernel %q after rollback, want A", r.kernel())
	}
	st := r.status(t)
	if st.Pending != nil || st.Last.Result != ResultRolledBack || st.Last.Generation != gen || st.Confirmed != 1 {
		t.Fatalf("status after rollback: %+v", st)
	}
	if r.exists(fileCandidate) || r.read(t, fileLastGood) != scriptA {
		t.Error("rollback left the candidate or changed last-good")
	}
	_, applies := r.loader.state()
	if err := r.m.Rollback(gen); err != nil {
		t.Fatalf("second Rollback: %v", err)
	}
	if _, a := r.loader.state(); a != applies {
		t.Error("second Rollback(gen) loaded again")
	}
	if err := r.m.Confirm(); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("Confirm after rollback = %v, want ErrRolledBack", err)
	}
}

func TestRollbackGenerations(t *testing.T) {
	r := newRig(t)
	mustApplyNow(t, r.m, scriptA)
	g2 := mustApplyTest(t, r.m, scriptB)
	_, applies := r.loader.state()
	if err := r.m.Rollback(1); err != nil {
		t.Fatal(err)
	}
	if _, a := r.loader.state(); a != applies || r.status(t).Pending == nil {
		t.Fatal("Rollback of an old generation was not a no-op")
	}
	// A new test apply supersedes the pending one: its timer is cancelled
	// and goes stale.
	g3 := mustApplyTest(t, r.m, scriptC)
	if !r.timer.wasCancelled(fmt.Sprint("u", g2)) {
		t.Error("superseded timer not cancelled")
	}
	if err := r.m.Rollback(g2); err != nil || r.kernel() != scriptC {
		t.Fatalf("stale Rollback(%d) = %v, kernel %q; want no-op", g2, err, r.kernel())
	}
	if err := r.m.Rollback(g3); err != nil || r.kernel() != scriptA {
		t.Fatalf("Rollback(%d) = %v, kernel %q; want A", g3, err, r.kernel())
	}
	// Rollback(0) with nothing pending reasserts last-good.
	r.loader.kernel = "tampered"
	if err := r.m.Rollback(0); err != nil || r.kernel() != scriptA {
		t.Fatalf("Rollback(0) = %v, kernel %q; want A", err, r.kernel())
	}
}

func TestLoaded(t *testing.T) {
	r := newRig(t)
	if s, g, err := r.m.Loaded(); err != nil || s != "" || g != 0 {
		t.Fatalf("Loaded = %q, %d, %v before any apply", s, g, err)
	}
	a := mustApplyNow(t, r.m, scriptA)
	if s, g, err := r.m.Loaded(); err != nil || s != scriptA || g != a {
		t.Fatalf("Loaded = %q, %d, %v; want A, %d", s, g, err, a)
	}
	b := mustApplyTest(t, r.m, scriptB)
	if s, g, err := r.m.Loaded(); err != nil || s != scriptB || g != b {
		t.Fatalf("Loaded = %q, %d, %v; want B, %d", s, g, err, b)
	}
}

func TestUninstall(t *testing.T) {
	r := newRig(t)
	mustApplyNow(t, r.m, scriptA)
	gen := mustApplyTest(t, r.m, scriptB)
	for range 2 { // idempotent
		if err := r.m.Uninstall(); err != nil {
			t.Fatal(err)
		}
		if r.kernel() != DefaultRemoveScript {
			t.Fatalf("kernel %q, want the remove script", r.kernel())
		}
	}
	if !r.timer.wasCancelled(fmt.Sprint("u", gen)) {
		t.Error("pending timer not cancelled")
	}
	st := r.status(t)
	if st.Pending != nil || st.HasLastGood || st.Confirmed != 0 || st.Last.Reason != "uninstall" {
		t.Fatalf("status %+v", st)
	}
	if r.read(t, "last-good.nft.uninstalled") != scriptA {
		t.Error("last-good not set aside")
	}
	// Neither boot nor a rollback loads a policy after an uninstall.
	if err := r.m.Boot(); err != nil || r.kernel() != DefaultRemoveScript {
		t.Fatalf("Boot = %v, kernel %q", err, r.kernel())
	}
	if err := r.m.Rollback(0); err != nil || r.kernel() != DefaultRemoveScript {
		t.Fatalf("Rollback = %v, kernel %q", err, r.kernel())
	}
	// The next apply starts a new generation.
	if g := mustApplyNow(t, r.m, scriptA); g <= gen {
		t.Errorf("generation %d after %d", g, gen)
	}
}

func TestRollbackWithoutLastGoodRemovesOurTable(t *testing.T) {
	r := newRig(t)
	gen := mustApplyTest(t, r.m, scriptB)
	if err := r.m.Rollback(0); err != nil {
		t.Fatal(err)
	}
	if r.kernel() != DefaultRemoveScript {
		t.Fatalf("kernel %q, want the remove script", r.kernel())
	}
	if st := r.status(t); st.Pending != nil || st.Last.Generation != gen || st.HasLastGood {
		t.Fatalf("status %+v", st)
	}
}

func TestApplyRefusals(t *testing.T) {
	ssh := netip.MustParseAddr("192.0.2.7")
	dropSSH := func(a netip.Addr) bool { return a == ssh }
	tests := []struct {
		name    string
		script  string
		d       time.Duration
		drop    func(netip.Addr) bool
		force   bool
		prepare func(r *rig)
		want    error // nil: succeeds
	}{
		{name: "bad script", script: "BAD", d: time.Minute, want: ErrCheck},
		{name: "zero duration", script: scriptB, d: 0, want: ErrBadDuration},
		{name: "too long", script: scriptB, d: 25 * time.Hour, want: ErrBadDuration},
		{name: "cuts ssh", script: scriptB, d: time.Minute, drop: dropSSH, want: ErrWouldCutSSH},
		{name: "cuts ssh forced", script: scriptB, d: time.Minute, drop: dropSSH, force: true},
		{name: "keeps ssh", script: scriptB, d: time.Minute, drop: func(netip.Addr) bool { return false }},
		{name: "load fails", script: "FAILAPPLY", d: time.Minute, want: ErrApply},
		{name: "no timer", script: scriptB, d: time.Minute, prepare: func(r *rig) { r.timer.failArm = true }, want: errors.New("arm")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			mustApplyNow(t, r.m, scriptA)
			if tc.prepare != nil {
				tc.prepare(r)
			}
			gen, err := r.m.ApplyTest(tc.script, tc.d, ssh, tc.drop, tc.force)
			if tc.want == nil {
				if err != nil || gen == 0 || r.kernel() != tc.script {
					t.Fatalf("ApplyTest = %d, %v; kernel %q", gen, err, r.kernel())
				}
				if p := r.status(t).Pending; p == nil || p.SSHClient != ssh {
					t.Fatalf("pending %+v, want ssh client %v", p, ssh)
				}
				return
			}
			if err == nil || gen != 0 {
				t.Fatalf("ApplyTest = %d, %v; want error %v", gen, err, tc.want)
			}
			if sentinel := tc.want; !errors.Is(err, sentinel) && !strings.Contains(err.Error(), sentinel.Error()) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			st := r.status(t)
			if r.kernel() != scriptA || r.read(t, fileLastGood) != scriptA || st.Pending != nil || r.exists(fileCandidate) || st.Confirmed != 1 {
				t.Fatalf("after refusal: kernel %q, status %+v, candidate %v", r.kernel(), st, r.exists(fileCandidate))
			}
			for gen := range r.timer.armed {
				if gen > 1 && !r.timer.wasCancelled(fmt.Sprint("u", gen)) {
					t.Errorf("timer for generation %d left armed", gen)
				}
			}
			// ApplyNow refuses the same way (duration aside).
			if tc.d > 0 && tc.d <= MaxTestDuration && tc.prepare == nil {
				if _, err := r.m.ApplyNow(tc.script, ssh, tc.drop, tc.force); err == nil {
					t.Error("ApplyNow accepted what ApplyTest refused")
				}
				if r.kernel() != scriptA {
					t.Errorf("ApplyNow refusal changed the kernel to %q", r.kernel())
				}
			}
		})
	}
}

// A failed load while another candidate is under test reverts to
// last-good itself: the superseded timer is stale by then.
func TestFailedApplyOverPendingRevertsToLastGood(t *testing.T) {
	r := newRig(t)
	mustApplyNow(t, r.m, scriptA)
	mustApplyTest(t, r.m, scriptB)
	if _, err := r.m.ApplyTest("FAILAPPLY", time.Minute, netip.Addr{}, nil, false); !errors.Is(err, ErrApply) {
		t.Fatalf("err = %v, want ErrApply", err)
	}
	if r.kernel() != scriptA || r.status(t).Pending != nil {
		t.Fatalf("kernel %q, pending %+v; want A and none", r.kernel(), r.status(t).Pending)
	}
	// The same through ApplyNow.
	g := mustApplyTest(t, r.m, scriptB)
	if _, err := r.m.ApplyNow("FAILAPPLY", netip.Addr{}, nil, false); !errors.Is(err, ErrApply) {
		t.Fatalf("err = %v, want ErrApply", err)
	}
	if r.kernel() != scriptA || r.status(t).Pending != nil || r.read(t, fileLastGood) != scriptA || !r.m.finished(g) {
		t.Fatalf("after failed ApplyNow: kernel %q, status %+v", r.kernel(), r.status(t))
	}
}

func TestApplyNowSupersedesPending(t *testing.T) {
	r := newRig(t)
	mustApplyNow(t, r.m, scriptA)
	g2 := mustApplyTest(t, r.m, scriptB)
	g3 := mustApplyNow(t, r.m, scriptC)
	if !r.timer.wasCancelled(fmt.Sprint("u", g2)) {
		t.Error("ApplyNow did not cancel the pending timer")
	}
	st := r.status(t)
	if st.Pending != nil || st.Confirmed != g3 || r.read(t, fileLastGood) != scriptC {
		t.Fatalf("status %+v", st)
	}
	if !r.m.finished(g2) {
		t.Error("superseded generation not finished: its watchdog would linger")
	}
	if err := r.m.Rollback(g2); err != nil || r.kernel() != scriptC {
		t.Fatalf("stale rollback: %v, kernel %q", err, r.kernel())
	}
}

func TestLockWait(t *testing.T) {
	r := newRig(t)
	unlock, err := r.m.lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	other, err := New(Options{Dir: r.dir, Loader: r.loader, Timer: r.timer, LockWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Confirm(); !errors.Is(err, ErrLocked) {
		t.Fatalf("Confirm while locked = %v, want ErrLocked", err)
	}
}

func TestConcurrentManagers(t *testing.T) {
	r := newRig(t)
	mustApplyNow(t, r.m, scriptA)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		wg.Go(func() {
			m := r.manager(t)
			if _, err := m.ApplyTest(fmt.Sprintf("# %d\n", i), time.Minute, netip.Addr{}, nil, false); err != nil {
				errs <- err
			}
			if err := m.Rollback(0); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := r.status(t)
	if st.LastGeneration != 5 || st.Pending != nil || r.kernel() != scriptA {
		t.Fatalf("after concurrent use: %+v, kernel %q", st, r.kernel())
	}
}

// Crash recovery: each case leaves the directory as a crash at some point
// would, then checks that the next process does the safe thing.
func TestCrashRecovery(t *testing.T) {
	t.Run("after the commit rename", func(t *testing.T) {
		r := newRig(t)
		mustApplyNow(t, r.m, scriptA)
		gen := mustApplyTest(t, r.m, scriptB)
		// Confirm crashed right after renaming candidate to last-good.
		if err := os.Rename(filepath.Join(r.dir, fileCandidate), filepath.Join(r.dir, fileLastGood)); err != nil {
			t.Fatal(err)
		}
		m := r.manager(t)
		st, err := m.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.Confirmed != gen || st.Pending != nil || st.Last.Result != ResultConfirmed {
			t.Fatalf("recovered status %+v", st)
		}
		if !r.timer.wasCancelled(fmt.Sprint("u", gen)) {
			t.Error("recovery did not cancel the timer")
		}
		if err := m.Confirm(); err != nil {
			t.Errorf("Confirm after recovered confirm: %v", err)
		}
	})
	t.Run("before the load", func(t *testing.T) {
		r := newRig(t)
		mustApplyNow(t, r.m, scriptA)
		gen := mustApplyTest(t, r.m, scriptB)
		// The record was written but the load never happened.
		p, _ := r.m.readPending()
		p.Applied = false
		if err := r.m.writePending(p); err != nil {
			t.Fatal(err)
		}
		r.loader.kernel = scriptA
		m := r.manager(t)
		if err := m.Confirm(); !errors.Is(err, ErrNotApplied) {
			t.Fatalf("Confirm = %v, want ErrNotApplied", err)
		}
		if err := m.Rollback(gen); err != nil || r.kernel() != scriptA || r.status(t).Pending != nil {
			t.Fatalf("Rollback = %v, kernel %q", err, r.kernel())
		}
	})
	t.Run("candidate modified", func(t *testing.T) {
		r := newRig(t)
		mustApplyNow(t, r.m, scriptA)
		mustApplyTest(t, r.m, scriptB)
		if err := os.WriteFile(filepath.Join(r.dir, fileCandidate), []byte("# other\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := r.m.Confirm(); !errors.Is(err, ErrCandidateChanged) {
			t.Fatalf("Confirm = %v, want ErrCandidateChanged", err)
		}
		if r.read(t, fileLastGood) != scriptA {
			t.Fatal("a refused confirm changed last-good")
		}
	})
	t.Run("corrupt pending record", func(t *testing.T) {
		r := newRig(t)
		mustApplyNow(t, r.m, scriptA)
		mustApplyTest(t, r.m, scriptB)
		if err := os.WriteFile(filepath.Join(r.dir, filePending), []byte("{\"generation\": "), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := r.m.Status(); !errors.Is(err, ErrCorruptState) {
			t.Fatalf("Status = %v, want ErrCorruptState", err)
		}
		// The safety net still works: a timed rollback reverts anyway.
		if err := r.m.Rollback(2); err != nil || r.kernel() != scriptA {
			t.Fatalf("Rollback = %v, kernel %q; want A", err, r.kernel())
		}
		if !r.exists(filePending+".corrupt") || r.exists(filePending) {
			t.Error("corrupt record not set aside")
		}
		mustApplyTest(t, r.m, scriptC)
	})
	t.Run("orphan candidate", func(t *testing.T) {
		r := newRig(t)
		mustApplyNow(t, r.m, scriptA)
		// A crash before the pending record was written.
		if err := os.WriteFile(filepath.Join(r.dir, fileCandidate), []byte("# half\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := r.m.Confirm(); err != nil {
			t.Fatalf("Confirm = %v; want nil (generation 1 confirmed)", err)
		}
		if r.read(t, fileLastGood) != scriptA {
			t.Fatal("an orphan candidate was promoted")
		}
		mustApplyTest(t, r.m, scriptB)
	})
}

func TestBoot(t *testing.T) {
	t.Run("loads last-good and drops pending", func(t *testing.T) {
		r := newRig(t)
		mustApplyNow(t, r.m, scriptA)
		gen := mustApplyTest(t, r.m, scriptB)
		r.loader.kernel = "" // rebooted
		if err := r.manager(t).Boot(); err != nil {
			t.Fatal(err)
		}
		st := r.status(t)
		if r.kernel() != scriptA || st.Pending != nil || st.Last.Generation != gen || st.Last.Reason != "boot" {
			t.Fatalf("kernel %q, status %+v", r.kernel(), st)
		}
		if err := r.m.Confirm(); !errors.Is(err, ErrRolledBack) {
			t.Errorf("Confirm after boot = %v, want ErrRolledBack", err)
		}
	})
	t.Run("nothing confirmed", func(t *testing.T) {
		r := newRig(t)
		if err := r.m.Boot(); err != nil {
			t.Fatal(err)
		}
		if _, applies := r.loader.state(); applies != 0 {
			t.Fatalf("Boot with no last-good loaded %d scripts", applies)
		}
	})
	t.Run("load fails", func(t *testing.T) {
		r := newRig(t)
		mustApplyNow(t, r.m, scriptA)
		r.loader.failApply = true
		if err := r.m.Boot(); !errors.Is(err, ErrApply) {
			t.Fatalf("Boot = %v, want ErrApply", err)
		}
	})
}

func TestRollbackAt(t *testing.T) {
	setup := func(t *testing.T) (*rig, uint64, time.Time) {
		r := &rig{dir: t.TempDir(), loader: &fakeLoader{}, timer: &fakeTimer{}}
		m, err := New(Options{Dir: r.dir, Loader: r.loader, Timer: r.timer})
		if err != nil {
			t.Fatal(err)
		}
		r.m = m
		mustApplyNow(t, m, scriptA)
		gen, err := m.ApplyTest(scriptB, 10*time.Second, netip.Addr{}, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		return r, gen, r.timer.armed[gen]
	}
	t.Run("reverts at the deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r, gen, deadline := setup(t)
			done := make(chan error, 1)
			go func() { done <- r.m.RollbackAt(t.Context(), gen, deadline) }()
			time.Sleep(9 * time.Second)
			synctest.Wait()
			if r.kernel() != scriptB {
				t.Fatalf("reverted before the deadline: kernel %q", r.kernel())
			}
			time.Sleep(2 * time.Second)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if r.kernel() != scriptA || time.Now().Before(deadline) {
				t.Fatalf("kernel %q at %v, want A after %v", r.kernel(), time.Now(), deadline)
			}
		})
	})
	t.Run("confirm ends the wait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r, gen, deadline := setup(t)
			done := make(chan error, 1)
			go func() { done <- r.m.RollbackAt(t.Context(), gen, deadline) }()
			time.Sleep(3 * time.Second)
			if err := r.m.Confirm(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !time.Now().Before(deadline) || r.kernel() != scriptB {
				t.Fatalf("watchdog ended at %v (deadline %v), kernel %q", time.Now(), deadline, r.kernel())
			}
		})
	})
	t.Run("cancelled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r, gen, deadline := setup(t)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := r.m.RollbackAt(ctx, gen, deadline); !errors.Is(err, context.Canceled) {
				t.Fatalf("RollbackAt = %v, want context.Canceled", err)
			}
			if r.kernel() != scriptB {
				t.Fatal("a cancelled watchdog rolled back")
			}
		})
	})
}

func TestSSHClient(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"192.0.2.7 50022 198.51.100.1 22", "192.0.2.7"},
		{"2001:db8::7 50022 2001:db8::1 22", "2001:db8::7"},
		{"::ffff:192.0.2.7 50022 ::ffff:198.51.100.1 22", "192.0.2.7"},
		{"fe80::1%eth0 5 fe80::2%eth0 22", "fe80::1"},
		{"", ""},
		{"192.0.2.7", ""},
		{"nope 1 2 3", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got := SSHClient(tc.in)
			if (tc.want == "" && got.IsValid()) || (tc.want != "" && got.String() != tc.want) {
				t.Fatalf("SSHClient(%q) = %v, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzSSHClient(f *testing.F) {
	f.Add("192.0.2.7 50022 198.51.100.1 22")
	f.Add("2001:db8::7 1 2001:db8::1 22")
	f.Fuzz(func(t *testing.T, s string) {
		a := SSHClient(s)
		if a.IsValid() && (a.Zone() != "" || a.Is4In6()) {
			t.Fatalf("SSHClient(%q) = %v: zone or mapped address kept", s, a)
		}
	})
}
