package safety

import "errors"

// Sentinel errors. Returned errors wrap them; test with errors.Is.
var (
	// ErrWouldCutSSH: the candidate ruleset would drop the SSH client that
	// runs the apply, and force was not given.
	ErrWouldCutSSH = errors.New("ruleset would cut off the current SSH client")
	// ErrCheck: the loader rejected the script in a dry run; nothing changed.
	ErrCheck = errors.New("ruleset check failed")
	// ErrApply: the loader failed to load a script.
	ErrApply = errors.New("ruleset load failed")
	// ErrNoPending: Confirm found no test apply to confirm.
	ErrNoPending = errors.New("no pending ruleset to confirm")
	// ErrRolledBack: Confirm came after the pending generation was already
	// rolled back; the candidate is gone and must be applied again.
	ErrRolledBack = errors.New("pending ruleset was already rolled back")
	// ErrNotApplied: the pending candidate was recorded but its load never
	// completed (an interrupted apply); it cannot be confirmed and will be
	// rolled back at its deadline.
	ErrNotApplied = errors.New("pending ruleset was never loaded")
	// ErrCandidateChanged: candidate.nft is missing or no longer matches the
	// checksum recorded when it was applied.
	ErrCandidateChanged = errors.New("candidate ruleset missing or modified")
	// ErrBadDuration: the test duration is not in (0, MaxTestDuration].
	ErrBadDuration = errors.New("test duration out of range")
	// ErrLocked: another pbxgate process held the state lock for longer than
	// Options.LockWait.
	ErrLocked = errors.New("firewall state is locked by another process")
	// ErrCorruptState: a state file could not be decoded.
	ErrCorruptState = errors.New("corrupt firewall state file")
)
