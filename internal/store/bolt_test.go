package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

// Environment of the child process that TestKillAfterPut starts.
const (
	childEnv     = "PBXGATE_STORE_TEST_CHILD"
	childPathEnv = "PBXGATE_STORE_TEST_PATH"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "put" {
		os.Exit(childPut(os.Getenv(childPathEnv)))
	}
	goleak.VerifyTestMain(m)
}

// childPut opens the store, puts fullEntry, says "done" and waits for its
// stdin to close (or for SIGKILL).
func childPut(path string) int {
	b, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	if err := b.Put(context.Background(), fullEntry()); err != nil {
		fmt.Println("put:", err)
		return 1
	}
	fmt.Println("done")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // returns at EOF
	return 2
}

func openT(t *testing.T, path string, o BoltOptions) *Bolt {
	t.Helper()
	b, err := OpenBolt(path, o)
	if err != nil {
		t.Fatalf("OpenBolt(%s): %v", path, err)
	}
	return b
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "state.db")
	b := openT(t, path, BoltOptions{})
	defer b.Close()
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(path), 0o700}, {path, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got&^c.mode != 0 {
			t.Errorf("%s has mode %v, want at most %v", c.path, got, c.mode)
		}
	}
	if b.Path() != path {
		t.Errorf("Path() = %q", b.Path())
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	ctx := context.Background()
	b := openT(t, path, BoltOptions{})
	e := fullEntry()
	if err := b.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := recordBan(ctx, b, e.Prefix.Addr(), t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := b.PutMeta(ctx, "admin_token", []byte("hash")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openT(t, path, BoltOptions{ReadOnly: true})
	defer b.Close()
	if got, ok, err := b.Get(ctx, e.List, e.Prefix); err != nil || !ok || got.Reason != e.Reason {
		t.Errorf("after reopen: Get = %+v, %v, %v", got, ok, err)
	}
	if v, ok, _ := b.GetMeta(ctx, "admin_token"); !ok || string(v) != "hash" {
		t.Errorf("after reopen: GetMeta = %q, %v", v, ok)
	}
	wantErr(t, b.Put(ctx, e), ErrReadOnly)
	if _, err := recordBan(ctx, b, e.Prefix.Addr(), t0, time.Hour); !errors.Is(err, ErrReadOnly) {
		t.Errorf("RecordBans on read-only = %v", err)
	}
	wantErr(t, b.RecordBans(ctx, time.Hour, []AutoBan{{Addr: e.Prefix.Addr(), At: t0,
		Entry: func(History) (Entry, bool) { return e, true }}}), ErrReadOnly)
}

func TestReadOnlyMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none", "state.db")
	_, err := OpenBolt(path, BoltOptions{ReadOnly: true})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenBolt(read-only, missing) = %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only open created the directory")
	}
}

func TestLockedInSameProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	b := openT(t, path, BoltOptions{})
	for _, ro := range []bool{false, true} {
		start := time.Now()
		_, err := OpenBolt(path, BoltOptions{Timeout: 100 * time.Millisecond, ReadOnly: ro})
		wantErr(t, err, ErrLocked, "state file "+path+" is in use (is pbxgate running?)")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("waited %v for the lock, want about the 100ms timeout", d)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openT(t, path, BoltOptions{Timeout: 100 * time.Millisecond})
	b.Close()
}

// TestKillAfterPut puts an entry in a child process, which holds the file
// (so this process gets ErrLocked), then SIGKILLs it and finds the entry.
func TestKillAfterPut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=put", childPathEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "done\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child said %q, %v; want done", line, err)
	}

	_, err = OpenBolt(path, BoltOptions{Timeout: 100 * time.Millisecond})
	wantErr(t, err, ErrLocked, "state file "+path+" is in use (is pbxgate running?)")

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed by SIGKILL", err)
	}

	b := openT(t, path, BoltOptions{})
	defer b.Close()
	e := fullEntry()
	got, ok, err := b.Get(context.Background(), e.List, e.Prefix)
	if err != nil || !ok || got.Note != e.Note {
		t.Fatalf("after kill -9: Get = %+v, %v, %v; want the child's entry", got, ok, err)
	}
}

func TestConcurrentPutsAllDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	b := openT(t, path, BoltOptions{})
	txid := func() int {
		var id int
		_ = b.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
		return id
	}
	before := txid()
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i)}), 32)
			errs <- b.Put(context.Background(), Entry{List: Blacklist, Prefix: p, Origin: Auto, Count: i})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Batched: far fewer commits (each one fsync) than puts.
	if commits := txid() - before; commits > n/2 {
		t.Errorf("%d puts took %d commits, want them batched", n, commits)
	} else {
		t.Logf("%d puts took %d commits", n, commits)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openT(t, path, BoltOptions{})
	defer b.Close()
	seen := 0
	err := b.Range(context.Background(), Blacklist, func(e Entry) bool {
		if int(e.Prefix.Addr().As4()[3]) != e.Count {
			t.Errorf("%s has Count %d", e.Prefix, e.Count)
		}
		seen++
		return true
	})
	if err != nil || seen != n {
		t.Fatalf("after reopen: %d entries, %v; want %d", seen, err, n)
	}
}

// rawBolt writes a bbolt file with the given buckets and keys, bypassing
// Bolt, to make files Bolt must refuse.
func rawBolt(t *testing.T, path string, buckets map[string]map[string][]byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for name, kv := range buckets {
			bk, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			for k, v := range kv {
				if err := bk.Put([]byte(k), v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSchemaRefused(t *testing.T) {
	for _, c := range []struct {
		name      string
		buckets   map[string]map[string][]byte
		want      []string
		wantCheck string
	}{
		{"newer version", map[string]map[string][]byte{"meta": {"schema": []byte("2")}}, []string{`schema version "2"`, `expects "1"`}, `schema version "2"`},
		{"no version", map[string]map[string][]byte{"meta": {"other": []byte("x")}}, []string{"no schema version"}, "no schema version"},
		{"foreign file", map[string]map[string][]byte{"etcd": {"k": []byte("v")}}, []string{`holds bucket "etcd"`}, "not a pbxgate state file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			rawBolt(t, path, c.buckets)
			before := fileSum(t, path)
			for _, ro := range []bool{false, true} {
				_, err := OpenBolt(path, BoltOptions{ReadOnly: ro})
				wantErr(t, err, ErrSchema, append(c.want, path)...)
			}
			if fileSum(t, path) != before {
				t.Error("a refused open changed the file")
			}
			f, _ := os.Open(path)
			defer f.Close()
			wantErr(t, CheckBolt(f), ErrSchema, c.wantCheck)
		})
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// populated returns a closed state file with a few entries and its bytes.
func populated(t testing.TB, dir string) (string, []byte) {
	t.Helper()
	path := filepath.Join(dir, "state.db")
	b, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e := fullEntry()
	for _, p := range []string{"192.0.2.7/32", "2001:db8::/48", "10.0.0.0/8"} {
		e.Prefix, e.Note = pfx(p), "note for "+p
		if err := b.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := recordBan(ctx, b, netip.MustParseAddr("192.0.2.7"), t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := b.PutMeta(ctx, "admin_token", []byte("hash")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

// activeMeta returns the meta page bbolt would use for data.
func activeMeta(t *testing.T, data []byte) metaPage {
	t.Helper()
	m0, ok0 := parseMeta(data[pageHeaderLen:])
	m1, ok1 := parseMeta(data[4096+pageHeaderLen:])
	if !ok0 || !ok1 || m0.pageSize != 4096 {
		t.Fatalf("test file has meta pages %v %v, page size %d", ok0, ok1, m0.pageSize)
	}
	if m1.txid > m0.txid {
		return m1
	}
	return m0
}

// patchAll changes the first byte of every copy of needle in data (bbolt
// leaves old copies of pages in free pages) and reports how many it found.
func patchAll(data, needle []byte, b byte) int {
	n := 0
	for i := 0; i < len(data); {
		j := bytes.Index(data[i:], needle)
		if j < 0 {
			break
		}
		data[i+j] = b
		i += j + 1
		n++
	}
	return n
}

func TestCorruptFileRefused(t *testing.T) {
	_, good := populated(t, t.TempDir())
	m := activeMeta(t, good)
	root := int(m.root) * 4096
	for _, c := range []struct {
		name  string
		patch func([]byte) []byte
		want  string
	}{
		{"garbage", func(b []byte) []byte { return bytes.Repeat([]byte("not a database "), 2000) }, "not a bbolt file"},
		{"truncated", func(b []byte) []byte { return b[:(m.hwm-1)*4096] }, "high water mark"},
		{"short", func(b []byte) []byte { return b[:1000] }, "too small"},
		{"element count past page", func(b []byte) []byte {
			b[root+10], b[root+11] = 0xff, 0x0f
			return b
		}, "do not fit"},
		{"page id mismatch", func(b []byte) []byte {
			b[root] ^= 0x40
			return b
		}, "header says page"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			if err := os.WriteFile(path, c.patch(bytes.Clone(good)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenBolt(path, BoltOptions{})
			wantErr(t, err, ErrCorrupt, path, c.want)
			_, err = OpenBolt(path, BoltOptions{ReadOnly: true})
			wantErr(t, err, ErrCorrupt, c.want)
			f, _ := os.Open(path)
			defer f.Close()
			wantErr(t, CheckBolt(f), ErrCorrupt, c.want)
		})
	}
}

func TestCorruptValueNamesKey(t *testing.T) {
	path, data := populated(t, t.TempDir())
	e := fullEntry()
	e.Prefix, e.Note = pfx("2001:db8::/48"), "note for 2001:db8::/48"
	if patchAll(data, encodeEntry(e), 9) == 0 { // 9: unknown encoding version
		t.Fatal("encoded entry not found in the file")
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	wantErr(t, CheckBolt(bytes.NewReader(data)), ErrCorrupt, "blacklist 2001:db8::/48", "version 9")

	b := openT(t, path, BoltOptions{})
	defer b.Close()
	ctx := context.Background()
	_, _, err := b.Get(ctx, Blacklist, e.Prefix)
	wantErr(t, err, ErrCorrupt, "blacklist 2001:db8::/48", "version 9")
	err = b.Range(ctx, Blacklist, func(Entry) bool { return true })
	wantErr(t, err, ErrCorrupt, "blacklist 2001:db8::/48")
	if _, ok, err := b.Get(ctx, Blacklist, pfx("10.0.0.0/8")); !ok || err != nil {
		t.Errorf("a sound entry next to it: %v, %v", ok, err)
	}
	got, ok, err := b.Delete(ctx, Blacklist, e.Prefix)
	if err != nil || !ok || got.Prefix != e.Prefix || got.Reason != "" {
		t.Errorf("Delete of the corrupt entry = %+v, %v, %v; want it removed with only its key", got, ok, err)
	}
	if err := b.Range(ctx, Blacklist, func(Entry) bool { return true }); err != nil {
		t.Errorf("Range after deleting it: %v", err)
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	srcPath, _ := populated(t, t.TempDir())
	src := openT(t, srcPath, BoltOptions{})
	var snap bytes.Buffer
	if err := src.Snapshot(ctx, &snap); err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot are not in it.
	if err := src.Put(ctx, Entry{List: Whitelist, Prefix: pfx("198.51.100.1/32")}); err != nil {
		t.Fatal(err)
	}
	src.Close()
	if err := CheckBolt(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatalf("CheckBolt(snapshot) = %v", err)
	}

	dir := t.TempDir()
	dst := filepath.Join(dir, "state.db")
	b := openT(t, dst, BoltOptions{})
	if err := b.Put(ctx, Entry{List: Blacklist, Prefix: pfx("203.0.113.0/24"), Note: "replaced by the restore"}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := RestoreBolt(dst, bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatalf("RestoreBolt = %v", err)
	}
	b = openT(t, dst, BoltOptions{})
	defer b.Close()
	var got []string
	if err := b.Range(ctx, Blacklist, func(e Entry) bool { got = append(got, e.Prefix.String()); return true }); err != nil {
		t.Fatal(err)
	}
	if want := "10.0.0.0/8 192.0.2.7/32 2001:db8::/48"; strings.Join(got, " ") != want {
		t.Errorf("restored blacklist = %v, want %s", got, want)
	}
	if n, _ := b.Count(ctx, Whitelist); n != 0 {
		t.Errorf("restored whitelist has %d entries, want 0 (put after the snapshot)", n)
	}
	if v, ok, _ := b.GetMeta(ctx, "admin_token"); !ok || string(v) != "hash" {
		t.Errorf("restored meta = %q, %v", v, ok)
	}
	if h, _ := recordBan(ctx, b, netip.MustParseAddr("192.0.2.7"), t0.Add(time.Minute), time.Hour); h.Bans != 2 {
		t.Errorf("restored history: %d bans, want 2", h.Bans)
	}
	assertNoTemps(t, dir)
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
		t.Errorf("restored file mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestRestoreIntoNewPath(t *testing.T) {
	_, data := populated(t, t.TempDir())
	dst := filepath.Join(t.TempDir(), "new", "state.db")
	if err := RestoreBolt(dst, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	b := openT(t, dst, BoltOptions{})
	defer b.Close()
	if n, _ := b.Count(context.Background(), Blacklist); n != 3 {
		t.Errorf("Count = %d, want 3", n)
	}
}

func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "state.db" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestRestoreRefusesAndKeepsOldFile(t *testing.T) {
	_, good := populated(t, t.TempDir())
	hwm := activeMeta(t, good).hwm
	foreign := filepath.Join(t.TempDir(), "foreign.db")
	rawBolt(t, foreign, map[string]map[string][]byte{"meta": {"schema": []byte("7")}})
	foreignData, _ := os.ReadFile(foreign)
	for _, c := range []struct {
		name   string
		data   []byte
		target error
		want   string
	}{
		{"garbage", []byte("definitely not bbolt"), ErrCorrupt, "too small"},
		{"empty", nil, ErrCorrupt, "too small"},
		{"truncated", good[:(hwm-1)*4096], ErrCorrupt, "high water mark"},
		{"other schema", foreignData, ErrSchema, `schema version "7"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path, _ := populated(t, dir)
			before := fileSum(t, path)
			wantErr(t, RestoreBolt(path, bytes.NewReader(c.data)), c.target, c.want)
			if fileSum(t, path) != before {
				t.Error("a refused restore changed the state file")
			}
			assertNoTemps(t, dir)
		})
	}
}

func TestRestoreRefusesWhileRunning(t *testing.T) {
	dir := t.TempDir()
	path, data := populated(t, dir)
	b := openT(t, path, BoltOptions{})
	defer b.Close()
	if err := b.Put(context.Background(), Entry{List: Whitelist, Prefix: pfx("192.0.2.99/32")}); err != nil {
		t.Fatal(err)
	}
	before := fileSum(t, path)
	wantErr(t, RestoreBolt(path, bytes.NewReader(data)), ErrLocked, "state file "+path+" is in use")
	if fileSum(t, path) != before {
		t.Error("a refused restore changed the state file")
	}
	assertNoTemps(t, dir)
}

// TestOpenFollowsReplacedFile: a pbxgate starting while a restore holds the
// old file's lock must end up on the new file, not on the unlinked old one.
func TestOpenFollowsReplacedFile(t *testing.T) {
	dir := t.TempDir()
	path, _ := populated(t, dir)
	old, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := lockFile(old, true, 0); !ok || err != nil {
		t.Fatalf("lock: %v %v", ok, err)
	}
	// Replace the file while holding the old one's lock, as RestoreBolt does.
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	rawBolt(t, fresh, map[string]map[string][]byte{"meta": {"schema": []byte("1")}, "whitelist": {}, "blacklist": {}, "history": {}})
	data, _ := os.ReadFile(fresh)
	if err := os.WriteFile(path+".new", data, 0o600); err != nil {
		t.Fatal(err)
	}
	busy := make(chan struct{})
	var once sync.Once
	testHookLockBusy = func() { once.Do(func() { close(busy) }) }
	defer func() { testHookLockBusy = nil }()
	opened := make(chan error, 1)
	var b atomic.Pointer[Bolt]
	go func() {
		s, err := OpenBolt(path, BoltOptions{Timeout: 10 * time.Second})
		b.Store(s)
		opened <- err
	}()
	<-busy // OpenBolt holds the old file and waits for its lock
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	old.Close() // releases the lock
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	defer b.Load().Close()
	if n, _ := b.Load().Count(context.Background(), Blacklist); n != 0 {
		t.Errorf("opened the replaced file: %d blacklist entries, want the new file's 0", n)
	}
}

// BenchmarkPutParallel measures Put under many concurrent writers, which
// bbolt's Batch coalesces into shared commits.
func BenchmarkPutParallel(b *testing.B) {
	s, err := OpenBolt(filepath.Join(b.TempDir(), "state.db"), BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var next atomic.Uint32
	e := fullEntry()
	b.SetParallelism(64) // many writers, as in a ban burst: they share commits
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			e := e
			e.Prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), 32)
			if err := s.Put(context.Background(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
