package safety

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pbxgate/pbxgate/internal/atomicfile"
)

// File names inside Options.Dir.
const (
	fileLock      = "lock"
	fileLastGood  = "last-good.nft"
	fileCandidate = "candidate.nft"
	filePending   = "pending.json"
	fileState     = "state.json"
	dirHistory    = "history"
)

// maxStateFile bounds what is read from pending.json and state.json.
const maxStateFile = 1 << 16

// maxScript bounds what is read from a ruleset file (last-good, candidate).
const maxScript = 64 << 20

// Pending describes a test apply awaiting confirmation (pending.json).
type Pending struct {
	// Generation is the number of this apply; the revert timer carries it.
	Generation uint64 `json:"generation"`
	// Deadline is when the timer reverts to last-good.
	Deadline time.Time `json:"deadline"`
	// SHA256 is the hex checksum of candidate.nft.
	SHA256 string `json:"sha256"`
	// SSHClient is the SSH client address of the apply (from
	// $SSH_CONNECTION); invalid when the apply did not come over SSH.
	SSHClient netip.Addr `json:"ssh_client"`
	// Started is when the apply began.
	Started time.Time `json:"started"`
	// Applied is set once the loader accepted the candidate. A pending
	// record without it is an interrupted apply; it cannot be confirmed.
	Applied bool `json:"applied"`
	// Timer identifies the armed revert timer, for Cancel.
	Timer TimerHandle `json:"timer"`
}

// Outcome records how the most recent generation ended.
type Outcome struct {
	Generation uint64    `json:"generation,omitempty"`
	Result     string    `json:"result,omitempty"` // ResultConfirmed or ResultRolledBack
	Reason     string    `json:"reason,omitempty"` // why it was rolled back: "deadline", "manual", "boot", "load failed"
	At         time.Time `json:"at,omitzero"`
}

// Outcome results.
const (
	ResultConfirmed  = "confirmed"
	ResultRolledBack = "rolled_back"
)

// persisted is state.json: the generation counter and the confirmed state.
type persisted struct {
	LastGeneration      uint64    `json:"last_generation"`
	ConfirmedGeneration uint64    `json:"confirmed_generation"`
	ConfirmedSHA256     string    `json:"confirmed_sha256,omitempty"`
	ConfirmedAt         time.Time `json:"confirmed_at,omitzero"`
	Last                Outcome   `json:"last"`
}

func (m *Manager) path(name string) string { return filepath.Join(m.dir, name) }

// lock takes the exclusive flock on Dir/lock, waiting at most LockWait.
// The returned func releases it.
func (m *Manager) lock() (func(), error) {
	m.mu.Lock()
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		m.mu.Unlock()
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	f, err := os.OpenFile(m.path(fileLock), os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		m.mu.Unlock()
		return nil, fmt.Errorf("open lock: %w", err)
	}
	deadline := time.Now().Add(m.lockWait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			m.mu.Unlock()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if !time.Now().Before(deadline) {
			_ = f.Close()
			m.mu.Unlock()
			return nil, fmt.Errorf("%w (waited %v for %s)", ErrLocked, m.lockWait, f.Name())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
		m.mu.Unlock()
	}, nil
}

// syncDir makes renames and removals in Dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// writeFile atomically replaces Dir/name and syncs the directory.
func (m *Manager) writeFile(name string, data []byte) error {
	if err := atomicfile.WriteBytes(m.path(name), data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return syncDir(m.dir)
}

// removeFile removes Dir/name if present and syncs the directory.
func (m *Manager) removeFile(name string) error {
	if err := os.Remove(m.path(name)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return syncDir(m.dir)
}

// readLimited reads a file of at most limit bytes; ok is false when it does
// not exist.
func readLimited(path string, limit int64) (data []byte, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		return nil, false, err
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, false, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, true, nil
}

func (m *Manager) readScript(name string) (string, bool, error) {
	b, ok, err := readLimited(m.path(name), maxScript)
	return string(b), ok, err
}

func (m *Manager) readPending() (*Pending, error) {
	b, ok, err := readLimited(m.path(filePending), maxStateFile)
	if err != nil || !ok {
		return nil, err
	}
	var p Pending
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorruptState, filePending, err)
	}
	if p.Generation == 0 {
		return nil, fmt.Errorf("%w: %s: generation 0", ErrCorruptState, filePending)
	}
	return &p, nil
}

func (m *Manager) writePending(p *Pending) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return m.writeFile(filePending, append(b, '\n'))
}

func (m *Manager) readState() (persisted, error) {
	var s persisted
	b, ok, err := readLimited(m.path(fileState), maxStateFile)
	if err != nil || !ok {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%w: %s: %w", ErrCorruptState, fileState, err)
	}
	return s, nil
}

func (m *Manager) writeState(s persisted) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return m.writeFile(fileState, append(b, '\n'))
}

func checksum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// historyName is the file name of generation gen in history/, zero-padded
// so names sort by generation.
func historyName(gen uint64) string { return fmt.Sprintf("%020d.nft", gen) }

// addHistory stores a confirmed script as history/<gen>.nft and keeps the
// newest m.historyN entries.
func (m *Manager) addHistory(gen uint64, script string) error {
	if m.historyN <= 0 {
		return nil
	}
	dir := m.path(dirHistory)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create history dir: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, historyName(gen)), []byte(script), 0o600); err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read history dir: %w", err)
	}
	var gens []uint64
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".nft")
		if !ok || e.IsDir() {
			continue
		}
		if g, err := strconv.ParseUint(n, 10, 64); err == nil {
			gens = append(gens, g)
		}
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] < gens[j] })
	for len(gens) > m.historyN {
		if err := os.Remove(filepath.Join(dir, historyName(gens[0]))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("prune history: %w", err)
		}
		gens = gens[1:]
	}
	return syncDir(dir)
}
