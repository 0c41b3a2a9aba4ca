// Package safety loads nftables rulesets with a safety net that survives
// pbxgate: a test apply loads a candidate ruleset and arms a revert timer
// outside the calling process (a transient systemd timer, or a detached
// watchdog process), so that unless Confirm is called before the deadline
// the last confirmed ruleset ("last-good") is loaded again — even if the
// caller is killed, its SSH session drops, or the machine reboots (only
// last-good is ever loaded at boot, by Boot).
//
// State lives in one directory (Options.Dir): last-good.nft (confirmed),
// candidate.nft, pending.json, state.json (generation counter, outcome)
// and history/ (the last confirmed rulesets). Every write is atomic
// (temporary file, fsync, rename, directory fsync) and every operation
// holds an flock on Dir/lock, so the CLI, a second CLI and the timer never
// interleave. Generations number the applies; a timer reverts only its own
// generation, so a stale timer is harmless.
//
// The package does not render rulesets, run nft itself (a Loader does) or
// touch the kernel blacklist table: rollbacks reload our policy table only.
// It never loads an empty accept-all ruleset: with no last-good, a rollback
// removes our table (see Options.RemoveScript), leaving other tables as
// they are.
package safety

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// Loader checks and loads a complete ruleset script atomically (nft -c -f
// and nft -f).
type Loader interface {
	Check(script string) error
	Apply(script string) error
}

// MaxTestDuration bounds ApplyTest's duration.
const MaxTestDuration = 24 * time.Hour

// DefaultRemoveScript removes the policy table "inet pbxgate" whether or
// not it exists (nft 1.0.6 has no "destroy").
const DefaultRemoveScript = "table inet pbxgate {}\ndelete table inet pbxgate\n"

// Options configure a Manager.
type Options struct {
	// Dir holds the state files; required (e.g. /var/lib/pbxgate/firewall).
	// Created with mode 0700 on first use.
	Dir string
	// Loader checks and loads scripts; required.
	Loader Loader
	// Timer arms the revert. Nil picks NewTimer(Self).
	Timer Timer
	// Self is the argv that runs the rollback verb, e.g.
	// ["/usr/sbin/pbxgate", "firewall", "rollback"]; the timer appends
	// FlagIfGen N (and, for the watchdog, FlagWaitUntil T). Required when
	// Timer is nil.
	Self []string
	// RemoveScript is loaded by a rollback when there is no last-good
	// ruleset. Empty means DefaultRemoveScript.
	RemoveScript string
	// History is how many confirmed rulesets history/ keeps. Zero means
	// 10; negative keeps none.
	History int
	// LockWait bounds the wait for the state lock. Zero means 30s.
	LockWait time.Duration
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Log receives one line per state change. Nil discards.
	Log *slog.Logger
}

// Manager runs the apply / confirm / rollback state machine over Dir.
// Its methods are safe for concurrent use, also across processes.
type Manager struct {
	dir      string
	loader   Loader
	timer    Timer
	remove   string
	historyN int
	lockWait time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu sync.Mutex // serialises this process's holders of the flock
}

// Status is a snapshot of the state directory.
type Status struct {
	// Confirmed is the generation of last-good.nft (0: none confirmed yet
	// through this state directory).
	Confirmed       uint64
	ConfirmedAt     time.Time
	ConfirmedSHA256 string
	// HasLastGood reports whether last-good.nft exists.
	HasLastGood bool
	// LastGeneration is the highest generation handed out.
	LastGeneration uint64
	// Pending is the test apply awaiting confirmation, or nil.
	Pending *Pending
	// Last is how the most recent finished generation ended.
	Last Outcome
	// TimerKind is the kind of timer the next test apply would use.
	TimerKind string
}

// New validates o and returns a Manager. It touches nothing on disk.
func New(o Options) (*Manager, error) {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("safety: Options.Dir is required"))
	}
	if o.Loader == nil {
		errs = append(errs, errors.New("safety: Options.Loader is required"))
	}
	if o.Timer == nil && len(o.Self) == 0 {
		errs = append(errs, errors.New("safety: Options.Self is required when Options.Timer is nil"))
	}
	if o.LockWait < 0 {
		errs = append(errs, errors.New("safety: Options.LockWait is negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m := &Manager{
		dir:      o.Dir,
		loader:   o.Loader,
		timer:    o.Timer,
		remove:   o.RemoveScript,
		historyN: o.History,
		lockWait: o.LockWait,
		now:      o.Now,
		log:      o.Log,
	}
	if m.timer == nil {
		m.timer = NewTimer(o.Self)
	}
	if m.remove == "" {
		m.remove = DefaultRemoveScript
	}
	if m.historyN == 0 {
		m.historyN = 10
	}
	if m.lockWait == 0 {
		m.lockWait = 30 * time.Second
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("component", "firewall-safety")
	return m, nil
}

// SSHClient returns the client address from an $SSH_CONNECTION value
// ("client_ip client_port server_ip server_port"); invalid when v is not
// of that form.
func SSHClient(v string) netip.Addr {
	f := strings.Fields(v)
	if len(f) != 4 {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(f[0])
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// refuseSSHCut implements the SSH cut-off check.
func refuseSSHCut(ssh netip.Addr, wouldDrop func(netip.Addr) bool, force bool) error {
	if force || !ssh.IsValid() || wouldDrop == nil || !wouldDrop(ssh) {
		return nil
	}
	return fmt.Errorf("%w (%s); use --force to apply anyway", ErrWouldCutSSH, ssh)
}

// ApplyTest checks script, loads it as generation gen and arms a timer
// that reloads last-good at now+d unless Confirm is called first. It
// refuses, changing nothing, when the loader's check fails or when
// wouldDrop(sshClient) is true and force is false (an invalid sshClient or
// a nil wouldDrop skips that check). A pending test apply is replaced: the
// revert target stays last-good. If the load fails, the timer is cancelled,
// no pending state remains and last-good is in force.
func (m *Manager) ApplyTest(script string, d time.Duration, sshClient netip.Addr, wouldDrop func(netip.Addr) bool, force bool) (gen uint64, err error) {
	if d <= 0 || d > MaxTestDuration {
		return 0, fmt.Errorf("%w: %v not in (0, %v]", ErrBadDuration, d, MaxTestDuration)
	}
	st, prev, gen, unlock, err := m.begin(script, sshClient, wouldDrop, force)
	if err != nil {
		return 0, err
	}
	defer unlock()
	// The timer, the candidate, the pending record. A crash before the
	// record leaves the superseded record (if any) and its timer in charge,
	// and a timer for a generation that never became pending (a no-op). A
	// watchdog exits early only once its generation is finished (see
	// finished), not merely because it is not pending yet. After the record
	// is written the superseded timer is stale, so every failure reverts to
	// last-good itself (abortLocked).
	now := m.now()
	deadline := now.Add(d)
	h, err := m.timer.Arm(gen, deadline)
	if err != nil {
		return 0, fmt.Errorf("arm revert timer: %w", err)
	}
	p := &Pending{Generation: gen, Deadline: deadline, SHA256: checksum(script), SSHClient: sshClient, Started: now, Timer: h}
	if err := m.writeFile(fileCandidate, []byte(script)); err != nil {
		return 0, m.abortLocked(st, p, prev, err)
	}
	if err := m.writePending(p); err != nil {
		return 0, m.abortLocked(st, p, prev, err)
	}
	if prev != nil {
		if err := m.timer.Cancel(prev.Timer); err != nil {
			m.log.Warn("cancel superseded revert timer", "generation", prev.Generation, "err", err)
		}
	}

	// 3. Load. nft -f is atomic: on failure the kernel still holds what it
	// held, which is last-good unless a superseded candidate was loaded.
	if err := m.loader.Apply(script); err != nil {
		return 0, m.abortLocked(st, p, prev, fmt.Errorf("%w: generation %d: %w", ErrApply, gen, err))
	}
	p.Applied = true
	if err := m.writePending(p); err != nil {
		return gen, fmt.Errorf("generation %d loaded but not recorded as loaded (it cannot be confirmed and will be rolled back at %s): %w", gen, deadline.Format(time.RFC3339), err)
	}
	m.log.Info("ruleset applied in test mode", "generation", gen, "deadline", deadline, "timer", h.Kind, "ssh_client", sshClient)
	return gen, nil
}

// abortLocked undoes a test apply of p that failed with cause: it cancels
// p's timer, removes the pending record and the candidate, records the
// outcome and, if a superseded candidate had been loaded, cancels its
// timer and reloads last-good. It returns cause joined with any cleanup error.
func (m *Manager) abortLocked(st persisted, p, prev *Pending, cause error) error {
	errs := []error{cause, m.timer.Cancel(p.Timer), m.removeFile(filePending), m.removeFile(fileCandidate)}
	st.Last = Outcome{Generation: p.Generation, Result: ResultRolledBack, Reason: "apply failed", At: m.now()}
	errs = append(errs, m.writeState(st))
	if prev != nil {
		// Stale already (its generation is no longer the newest); stop it
		// anyway.
		if err := m.timer.Cancel(prev.Timer); err != nil {
			m.log.Warn("cancel superseded revert timer", "generation", prev.Generation, "err", err)
		}
		if prev.Applied {
			errs = append(errs, m.loadLastGoodLocked())
		}
	}
	return errors.Join(errs...)
}

// begin is the start shared by ApplyTest and ApplyNow: the SSH and nft
// checks, the lock (the caller defers unlock), recovery of a crashed
// earlier run, and a fresh generation persisted before anything refers to
// it.
func (m *Manager) begin(script string, sshClient netip.Addr, wouldDrop func(netip.Addr) bool, force bool) (st persisted, prev *Pending, gen uint64, unlock func(), err error) {
	if err := refuseSSHCut(sshClient, wouldDrop, force); err != nil {
		return st, nil, 0, nil, err
	}
	if err := m.loader.Check(script); err != nil {
		return st, nil, 0, nil, fmt.Errorf("%w: %w", ErrCheck, err)
	}
	unlock, err = m.lock()
	if err != nil {
		return st, nil, 0, nil, err
	}
	st, prev, err = m.recoverLocked()
	if err == nil {
		st.LastGeneration++
		gen = st.LastGeneration
		err = m.writeState(st)
	}
	if err != nil {
		unlock()
		return st, nil, 0, nil, err
	}
	return st, prev, gen, unlock, nil
}

// ApplyNow checks and loads script and confirms it at once, without a
// timer. The checks are those of ApplyTest. A pending test apply is
// superseded.
func (m *Manager) ApplyNow(script string, sshClient netip.Addr, wouldDrop func(netip.Addr) bool, force bool) (gen uint64, err error) {
	st, prev, gen, unlock, err := m.begin(script, sshClient, wouldDrop, force)
	if err != nil {
		return 0, err
	}
	defer unlock()
	if err := m.writeFile(fileCandidate, []byte(script)); err != nil {
		return 0, err
	}
	if err := m.loader.Apply(script); err != nil {
		return 0, m.abortLocked(st, &Pending{Generation: gen}, prev, fmt.Errorf("%w: generation %d: %w", ErrApply, gen, err))
	}
	// Commit point: the rename. A pending record of a superseded test
	// apply is finished by finishConfirm (its timer cancelled, the record
	// removed).
	if err := m.commitLocked(); err != nil {
		return gen, err
	}
	p := &Pending{Generation: gen, SHA256: checksum(script)}
	if prev != nil {
		p.Timer = prev.Timer
	}
	if err := m.finishConfirmLocked(&st, p, script, prev != nil); err != nil {
		return gen, err
	}
	m.log.Info("ruleset applied and confirmed", "generation", gen)
	return gen, nil
}

// Confirm makes the pending candidate the new last-good and cancels its
// timer. Confirming an already confirmed generation again returns nil;
// confirming after the rollback returns ErrRolledBack; with nothing applied
// in test mode it returns ErrNoPending.
func (m *Manager) Confirm() error {
	unlock, err := m.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, p, err := m.recoverLocked()
	if err != nil {
		return err
	}
	if p == nil {
		latest := st.Last.Generation != 0 && st.Last.Generation == st.LastGeneration
		switch {
		case latest && st.Last.Result == ResultConfirmed:
			return nil
		case latest && st.Last.Result == ResultRolledBack:
			return fmt.Errorf("%w: generation %d (%s at %s); apply again", ErrRolledBack, st.Last.Generation, st.Last.Reason, st.Last.At.Format(time.RFC3339))
		}
		return ErrNoPending
	}
	if !p.Applied {
		return fmt.Errorf("%w: generation %d", ErrNotApplied, p.Generation)
	}
	script, ok, err := m.readScript(fileCandidate)
	if err != nil {
		return err
	}
	if !ok || checksum(script) != p.SHA256 {
		return fmt.Errorf("%w: generation %d", ErrCandidateChanged, p.Generation)
	}
	if err := m.commitLocked(); err != nil {
		return err
	}
	if err := m.finishConfirmLocked(&st, p, script, true); err != nil {
		return err
	}
	m.log.Info("ruleset confirmed", "generation", p.Generation)
	return nil
}

// commitLocked renames candidate.nft over last-good.nft: the commit point
// of a confirm.
func (m *Manager) commitLocked() error {
	if err := os.Rename(m.path(fileCandidate), m.path(fileLastGood)); err != nil {
		return fmt.Errorf("promote candidate: %w", err)
	}
	return syncDir(m.dir)
}

// finishConfirmLocked does the bookkeeping after the commit point; it is
// idempotent, so recovery can rerun it after a crash.
func (m *Manager) finishConfirmLocked(st *persisted, p *Pending, script string, hadPending bool) error {
	if p.Generation > st.LastGeneration {
		st.LastGeneration = p.Generation
	}
	st.ConfirmedGeneration = p.Generation
	st.ConfirmedSHA256 = p.SHA256
	st.ConfirmedAt = m.now()
	st.Last = Outcome{Generation: p.Generation, Result: ResultConfirmed, At: st.ConfirmedAt}
	var errs []error
	if err := m.addHistory(p.Generation, script); err != nil {
		errs = append(errs, err)
	}
	if err := m.writeState(*st); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if hadPending {
		if err := m.removeFile(filePending); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := m.timer.Cancel(p.Timer); err != nil {
			// Harmless: the timer finds no pending generation.
			m.log.Warn("cancel revert timer", "generation", p.Generation, "err", err)
		}
	}
	return errors.Join(errs...)
}

// Rollback reloads last-good (or, with no last-good, removes our table
// only — never an empty accept-all ruleset) and drops the pending state,
// provided the pending generation is ifGen. ifGen 0 matches any pending
// generation, and with nothing pending it reloads last-good again. A
// rollback of a generation that is not pending (already confirmed, rolled
// back or superseded) is a no-op returning nil.
func (m *Manager) Rollback(ifGen uint64) error {
	return m.rollback(ifGen, "manual")
}

func (m *Manager) rollback(ifGen uint64, reason string) error {
	unlock, err := m.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, p, err := m.recoverLocked()
	if err != nil {
		if !errors.Is(err, ErrCorruptState) {
			return err
		}
		// An unreadable record must not keep the safety net from
		// working: revert, and keep the record for inspection.
		m.log.Warn("corrupt state; rolling back regardless", "err", err)
		if qerr := m.quarantinePendingLocked(); qerr != nil {
			return errors.Join(err, qerr)
		}
		return m.loadLastGoodLocked()
	}
	if p == nil {
		if ifGen != 0 {
			m.log.Info("rollback skipped: generation not pending", "generation", ifGen)
			return nil
		}
		return m.loadLastGoodLocked()
	}
	if ifGen != 0 && p.Generation != ifGen {
		m.log.Info("rollback skipped: another generation is pending", "generation", ifGen, "pending", p.Generation)
		return nil
	}
	if err := m.loadLastGoodLocked(); err != nil {
		return err // pending kept: a later rollback or Boot retries
	}
	st.Last = Outcome{Generation: p.Generation, Result: ResultRolledBack, Reason: reason, At: m.now()}
	if err := errors.Join(m.writeState(st), m.removeFile(filePending), m.removeFile(fileCandidate)); err != nil {
		return err
	}
	if err := m.timer.Cancel(p.Timer); err != nil {
		m.log.Warn("cancel revert timer", "generation", p.Generation, "err", err)
	}
	m.log.Warn("ruleset rolled back to last-good", "generation", p.Generation, "reason", reason, "confirmed", st.ConfirmedGeneration)
	return nil
}

// Uninstall removes our policy table (loading Options.RemoveScript), ends
// a pending test apply and cancels its timer, and sets last-good.nft aside
// as last-good.nft.uninstalled, so that neither a rollback nor Boot loads a
// policy again until the next apply. The history is kept. Uninstalling
// twice is harmless.
func (m *Manager) Uninstall() error {
	unlock, err := m.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, p, err := m.recoverOrSetAsideLocked("uninstall")
	if err != nil {
		return err
	}
	if err := m.loader.Apply(m.remove); err != nil {
		return fmt.Errorf("%w: removing our table: %w", ErrApply, err)
	}
	if err := os.Rename(m.path(fileLastGood), m.path(fileLastGood+".uninstalled")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("set aside %s: %w", fileLastGood, err)
	}
	if p != nil {
		st.Last = Outcome{Generation: p.Generation, Result: ResultRolledBack, Reason: "uninstall", At: m.now()}
		if err := m.timer.Cancel(p.Timer); err != nil {
			m.log.Warn("cancel revert timer", "generation", p.Generation, "err", err)
		}
	}
	st.ConfirmedGeneration, st.ConfirmedSHA256, st.ConfirmedAt = 0, "", time.Time{}
	if err := errors.Join(m.writeState(st), m.removeFile(filePending), m.removeFile(fileCandidate), syncDir(m.dir)); err != nil {
		return err
	}
	m.log.Warn("host firewall policy uninstalled")
	return nil
}

// recoverOrSetAsideLocked is recoverLocked for operations that must work
// on a corrupt state (boot, uninstall): an unreadable pending record is set
// aside for inspection and the operation goes on as if nothing were
// pending.
func (m *Manager) recoverOrSetAsideLocked(op string) (persisted, *Pending, error) {
	st, p, err := m.recoverLocked()
	if err == nil || !errors.Is(err, ErrCorruptState) {
		return st, p, err
	}
	m.log.Warn("corrupt state; going on regardless", "operation", op, "err", err)
	if qerr := m.quarantinePendingLocked(); qerr != nil {
		return persisted{}, nil, errors.Join(err, qerr)
	}
	return st, nil, nil
}

// quarantinePendingLocked renames an unreadable pending.json to
// pending.json.corrupt, so that it no longer blocks the state machine.
func (m *Manager) quarantinePendingLocked() error {
	if _, err := m.readPending(); err == nil {
		return nil
	}
	if err := os.Rename(m.path(filePending), m.path(filePending+".corrupt")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("set aside %s: %w", filePending, err)
	}
	return syncDir(m.dir)
}

// loadLastGoodLocked loads last-good.nft, or the remove script if there is
// none.
func (m *Manager) loadLastGoodLocked() error {
	script, ok, err := m.readScript(fileLastGood)
	if err != nil {
		return err
	}
	if !ok {
		script = m.remove
	}
	if err := m.loader.Apply(script); err != nil {
		if !ok {
			return fmt.Errorf("%w: removing our table (no last-good): %w", ErrApply, err)
		}
		return fmt.Errorf("%w: last-good: %w", ErrApply, err)
	}
	return nil
}

// RollbackAt is what a timer runs: it waits until deadline (returning
// early, without a rollback, once gen is finished: confirmed, rolled back
// or superseded), then rolls gen back, retrying a failed load a few
// times. ctx cancels the wait. The CLI's rollback verb calls it for
// "--if-gen N --wait-until T" (the watchdog) and, with a zero deadline,
// for "--if-gen N" alone (the systemd timer, already at its deadline).
func (m *Manager) RollbackAt(ctx context.Context, gen uint64, deadline time.Time) error {
	const tick = time.Second
	for {
		if m.finished(gen) {
			return nil // confirmed, rolled back or superseded
		}
		left := deadline.Sub(m.now())
		if left <= 0 {
			break
		}
		// Short steps: wall-clock jumps and suspend are noticed, and a
		// confirm ends the watchdog within a tick.
		t := time.NewTimer(min(left, tick))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	var err error
	for attempt := range 5 {
		if err = m.rollback(gen, "deadline"); err == nil {
			return nil
		}
		m.log.Error("rollback failed", "generation", gen, "attempt", attempt+1, "err", err)
		t := time.NewTimer(2 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
	return err
}

// finished reports, without the lock, whether generation gen has ended:
// confirmed, rolled back, aborted or superseded. A generation whose
// pending record is not written yet is not finished. Unreadable state
// counts as not finished.
func (m *Manager) finished(gen uint64) bool {
	st, err := m.readState()
	if err != nil {
		return false
	}
	p, err := m.readPending()
	if err != nil {
		return false
	}
	return st.Last.Generation >= gen || (p != nil && p.Generation > gen)
}

// Boot loads last-good and nothing else; it is what the boot unit runs. An
// unconfirmed apply pending from before the reboot is recorded as rolled
// back. With no last-good it loads nothing.
func (m *Manager) Boot() error {
	unlock, err := m.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, p, err := m.recoverOrSetAsideLocked("boot")
	if err != nil {
		return err
	}
	if p != nil {
		st.Last = Outcome{Generation: p.Generation, Result: ResultRolledBack, Reason: "boot", At: m.now()}
		if err := errors.Join(m.writeState(st), m.removeFile(filePending), m.removeFile(fileCandidate)); err != nil {
			return err
		}
		// The handle carries the boot ID: a watchdog PID from before the
		// reboot is never signalled.
		_ = m.timer.Cancel(p.Timer)
	}
	script, ok, err := m.readScript(fileLastGood)
	if err != nil || !ok {
		return err
	}
	if err := m.loader.Apply(script); err != nil {
		return fmt.Errorf("%w: last-good at boot: %w", ErrApply, err)
	}
	m.log.Info("last-good ruleset loaded at boot", "generation", st.ConfirmedGeneration)
	return nil
}

// Status reports the confirmed and pending generations.
func (m *Manager) Status() (Status, error) {
	unlock, err := m.lock()
	if err != nil {
		return Status{}, err
	}
	defer unlock()
	st, p, err := m.recoverLocked()
	if err != nil {
		return Status{}, err
	}
	_, hasLG, err := readLimited(m.path(fileLastGood), maxScript)
	if err != nil {
		return Status{}, err
	}
	return Status{
		Confirmed:       st.ConfirmedGeneration,
		ConfirmedAt:     st.ConfirmedAt,
		ConfirmedSHA256: st.ConfirmedSHA256,
		HasLastGood:     hasLG,
		LastGeneration:  st.LastGeneration,
		Pending:         p,
		Last:            st.Last,
		TimerKind:       m.timer.Kind(),
	}, nil
}

// Loaded returns the script pbxgate last loaded and its generation: the
// pending candidate while a test apply awaits confirmation, else
// last-good. With neither it returns "" and 0.
func (m *Manager) Loaded() (script string, gen uint64, err error) {
	unlock, err := m.lock()
	if err != nil {
		return "", 0, err
	}
	defer unlock()
	st, p, err := m.recoverLocked()
	if err != nil {
		return "", 0, err
	}
	if p != nil && p.Applied {
		s, ok, err := m.readScript(fileCandidate)
		if err != nil || ok {
			return s, p.Generation, err
		}
	}
	s, ok, err := m.readScript(fileLastGood)
	if err != nil || !ok {
		return "", 0, err
	}
	return s, st.ConfirmedGeneration, nil
}

// recoverLocked reads state.json and pending.json and completes a confirm
// interrupted after its commit point (candidate.nft already renamed to
// last-good.nft whose checksum matches the pending record). It returns the
// state and the pending record still outstanding, if any.
func (m *Manager) recoverLocked() (persisted, *Pending, error) {
	st, err := m.readState()
	if err != nil {
		return st, nil, err
	}
	p, err := m.readPending()
	if err != nil || p == nil {
		return st, nil, err
	}
	if p.Generation > st.LastGeneration {
		st.LastGeneration = p.Generation
	}
	if _, ok, err := readLimited(m.path(fileCandidate), maxScript); err != nil || ok {
		return st, p, err
	}
	lg, ok, err := m.readScript(fileLastGood)
	if err != nil {
		return st, p, err
	}
	if ok && p.Applied && checksum(lg) == p.SHA256 {
		m.log.Info("completing an interrupted confirm", "generation", p.Generation)
		if err := m.finishConfirmLocked(&st, p, lg, true); err != nil {
			return st, nil, err
		}
		return st, nil, nil
	}
	return st, p, nil
}
