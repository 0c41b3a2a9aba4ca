// Package backup writes and reads pbxgate's backup archive: one gzip'd tar
// holding the configuration file and a snapshot of the state store, listed
// with sizes and SHA-256 sums in a manifest.
//
// An archive has exactly three members, manifest.json first:
//
//	manifest.json  {"format":"pbxgate-backup","version":1,"created":RFC 3339,
//	                "pbxgate_version":..., "config_name":..., "files":[{"name","size","sha256"}]}
//	config.yaml    the configuration file, as it was on disk (at most 4 MiB)
//	state.db       a store snapshot (bbolt file, at most 4 GiB)
//
// Read trusts nothing in an archive: it checks the manifest, every member's
// name, type, size and checksum, and that the state is a sound state file
// (store.CheckBolt), and it bounds what it buffers.
//
// The package only moves bytes. It does not take the snapshot, install the
// state (store.RestoreBolt) or write the configuration file; the CLI does.
package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pbxgate/pbxgate/internal/store"
)

// Format and Version identify the archive layout this package writes.
const (
	Format  = "pbxgate-backup"
	Version = 1
)

// Member size limits.
const (
	MaxConfigSize   = 4 << 20
	MaxStateSize    = store.MaxSnapshotSize
	maxManifestSize = 64 << 10
	// maxTrailer bounds the zero padding some tar writers add after the
	// end-of-archive blocks.
	maxTrailer = 64 << 10
)

// Member names.
const (
	MemberManifest = "manifest.json"
	MemberConfig   = "config.yaml"
	MemberState    = "state.db"
)

// Archive is what Write stores.
type Archive struct {
	// Created is when the backup was made; required.
	Created time.Time
	// Version is the pbxgate version making the backup.
	Version string
	// ConfigName is the configuration file's name; only its base name is
	// kept. Empty means "config.yaml".
	ConfigName string
	// Config is the configuration file's content, at most 4 MiB.
	Config []byte
	// State is a store snapshot stream (store.Bolt.Snapshot), at most 4 GiB.
	State io.Reader
}

// Manifest describes an archive. It is the archive's manifest.json.
type Manifest struct {
	Format         string    `json:"format"`
	Version        int       `json:"version"`
	Created        time.Time `json:"created"` // whole seconds, UTC
	PbxgateVersion string    `json:"pbxgate_version"`
	ConfigName     string    `json:"config_name"`
	Files          []File    `json:"files"`
}

// File is one member listed in the manifest.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lower-case hex
}

// Write writes a to w as a gzip'd tar. It spools the state to a temporary
// file (tar needs each member's size before its content), removed before
// it returns.
func Write(w io.Writer, a Archive) error {
	if a.Created.IsZero() {
		return errors.New("backup: Created is not set")
	}
	if a.State == nil {
		return errors.New("backup: no state to write")
	}
	if len(a.Config) > MaxConfigSize {
		return fmt.Errorf("backup: configuration of %d bytes exceeds %d", len(a.Config), MaxConfigSize)
	}
	name := MemberConfig
	if a.ConfigName != "" {
		name = filepath.Base(a.ConfigName)
	}
	if err := checkConfigName(name); err != nil {
		return fmt.Errorf("backup: %w", err)
	}

	spool, err := os.CreateTemp("", "pbxgate-backup-state-*")
	if err != nil {
		return fmt.Errorf("backup: spool state: %w", err)
	}
	defer func() {
		_ = spool.Close()
		_ = os.Remove(spool.Name())
	}()
	sh := sha256.New()
	n, err := io.Copy(io.MultiWriter(spool, sh), io.LimitReader(a.State, MaxStateSize+1))
	if err != nil {
		return fmt.Errorf("backup: read state: %w", err)
	}
	if n > MaxStateSize {
		return fmt.Errorf("backup: state exceeds %d bytes", int64(MaxStateSize))
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup: spool state: %w", err)
	}

	created := a.Created.UTC().Truncate(time.Second)
	cs := sha256.Sum256(a.Config)
	m := Manifest{
		Format:         Format,
		Version:        Version,
		Created:        created,
		PbxgateVersion: a.Version,
		ConfigName:     name,
		Files: []File{
			{Name: MemberConfig, Size: int64(len(a.Config)), SHA256: hex.EncodeToString(cs[:])},
			{Name: MemberState, Size: n, SHA256: hex.EncodeToString(sh.Sum(nil))},
		},
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("backup: manifest: %w", err)
	}
	mj = append(mj, '\n')

	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	for _, mem := range []struct {
		name string
		size int64
		r    io.Reader
	}{
		{MemberManifest, int64(len(mj)), bytes.NewReader(mj)},
		{MemberConfig, int64(len(a.Config)), bytes.NewReader(a.Config)},
		{MemberState, n, spool},
	} {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     mem.name,
			Mode:     0o600,
			Size:     mem.size,
			ModTime:  created,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("backup: write %s: %w", mem.name, err)
		}
		if _, err := io.CopyN(tw, mem.r, mem.size); err != nil {
			return fmt.Errorf("backup: write %s: %w", mem.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// checkConfigName refuses a config_name that is not a plain file name, so a
// restore can never be steered outside the configuration directory.
func checkConfigName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") || len(name) > 255 {
		return fmt.Errorf("config name %q is not a plain file name", name)
	}
	return nil
}

// Read reads an archive from r, verifies it and returns its manifest and
// configuration; it writes the state member to stateDst as it reads it.
//
// Because stateDst has been written before the state's checksum and
// soundness are known, callers write it to a temporary file and install
// it (store.RestoreBolt) only after Read returned nil.
//
// An archive that is damaged, not a pbxgate backup, or has missing,
// unlisted, duplicate, oversized or unsafely named members gives an error
// wrapping ErrCorrupt; one whose content disagrees with its manifest (size
// or SHA-256), whose format version is newer than Version, or whose state
// has another schema version gives ErrMismatch. Errors reading r or writing
// stateDst are returned as they are.
func Read(r io.Reader, stateDst io.Writer) (Manifest, []byte, error) {
	src := &errReader{r: r}
	dst := &errWriter{w: stateDst}
	m, config, err := read(src, dst)
	switch {
	case src.err != nil:
		return Manifest{}, nil, fmt.Errorf("backup: read archive: %w", src.err)
	case dst.err != nil:
		return Manifest{}, nil, fmt.Errorf("backup: write state: %w", dst.err)
	case err != nil:
		return Manifest{}, nil, err
	}
	return m, config, nil
}

func read(r io.Reader, stateDst io.Writer) (Manifest, []byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("%w: not a gzip stream: %v", ErrCorrupt, err)
	}
	tr := tar.NewReader(zr)

	hdr, err := tr.Next()
	if err != nil {
		return Manifest{}, nil, corruptRead("first member", err)
	}
	if err := checkHeader(hdr); err != nil {
		return Manifest{}, nil, err
	}
	if hdr.Name != MemberManifest {
		return Manifest{}, nil, fmt.Errorf("%w: first member is %q, want %s", ErrCorrupt, hdr.Name, MemberManifest)
	}
	if hdr.Size > maxManifestSize {
		return Manifest{}, nil, fmt.Errorf("%w: %s of %d bytes exceeds %d", ErrCorrupt, MemberManifest, hdr.Size, maxManifestSize)
	}
	mj, err := io.ReadAll(tr)
	if err != nil {
		return Manifest{}, nil, corruptRead(MemberManifest, err)
	}
	m, files, err := parseManifest(mj)
	if err != nil {
		return Manifest{}, nil, err
	}

	var config []byte
	seen := map[string]bool{}
	// Each pass reads a new listed member or fails, so this ends after at
	// most len(files)+1 headers.
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Manifest{}, nil, corruptRead("member header", err)
		}
		if err := checkHeader(hdr); err != nil {
			return Manifest{}, nil, err
		}
		f, listed := files[hdr.Name]
		switch {
		case hdr.Name == MemberManifest || seen[hdr.Name]:
			return Manifest{}, nil, fmt.Errorf("%w: duplicate member %q", ErrCorrupt, hdr.Name)
		case !listed:
			return Manifest{}, nil, fmt.Errorf("%w: member %q is not listed in the manifest", ErrCorrupt, hdr.Name)
		case hdr.Size != f.Size:
			return Manifest{}, nil, fmt.Errorf("%w: %s: manifest says %d bytes, archive member has %d", ErrMismatch, f.Name, f.Size, hdr.Size)
		}
		seen[hdr.Name] = true
		switch hdr.Name {
		case MemberConfig:
			config, err = readConfig(tr, f)
		case MemberState:
			err = readState(tr, f, stateDst)
		}
		if err != nil {
			return Manifest{}, nil, err
		}
	}
	for _, name := range []string{MemberConfig, MemberState} {
		if !seen[name] {
			return Manifest{}, nil, fmt.Errorf("%w: member %s listed in the manifest is missing", ErrCorrupt, name)
		}
	}
	if err := checkTrailer(zr); err != nil {
		return Manifest{}, nil, err
	}
	if config == nil {
		config = []byte{}
	}
	return m, config, nil
}

// parseManifest decodes and checks the manifest and returns it with its
// files by name.
func parseManifest(b []byte) (Manifest, map[string]File, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, MemberManifest, err)
	}
	if m.Format != Format {
		return Manifest{}, nil, fmt.Errorf("%w: not a pbxgate backup: %s format is %q, want %q", ErrCorrupt, MemberManifest, clip(m.Format), Format)
	}
	if m.Version > Version {
		return Manifest{}, nil, fmt.Errorf("%w: archive version %d is newer than this pbxgate understands (%d)", ErrMismatch, m.Version, Version)
	}
	if m.Version < 1 {
		return Manifest{}, nil, fmt.Errorf("%w: %s: version %d", ErrCorrupt, MemberManifest, m.Version)
	}
	if m.Created.IsZero() {
		return Manifest{}, nil, fmt.Errorf("%w: %s has no created time", ErrCorrupt, MemberManifest)
	}
	if err := checkConfigName(m.ConfigName); err != nil {
		return Manifest{}, nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, MemberManifest, err)
	}
	limits := map[string]int64{MemberConfig: MaxConfigSize, MemberState: MaxStateSize}
	files := make(map[string]File, len(m.Files))
	for _, f := range m.Files {
		limit, known := limits[f.Name]
		switch {
		case !known:
			return Manifest{}, nil, fmt.Errorf("%w: %s lists unknown member %q", ErrCorrupt, MemberManifest, clip(f.Name))
		case files[f.Name].Name != "":
			return Manifest{}, nil, fmt.Errorf("%w: %s lists %s twice", ErrCorrupt, MemberManifest, f.Name)
		case f.Size < 0 || f.Size > limit:
			return Manifest{}, nil, fmt.Errorf("%w: %s: %s size %d is outside 0..%d", ErrCorrupt, MemberManifest, f.Name, f.Size, limit)
		case !isSHA256(f.SHA256):
			return Manifest{}, nil, fmt.Errorf("%w: %s: %s sha256 %q is not 64 lower-case hex digits", ErrCorrupt, MemberManifest, f.Name, clip(f.SHA256))
		}
		files[f.Name] = f
	}
	for name := range limits {
		if _, ok := files[name]; !ok {
			return Manifest{}, nil, fmt.Errorf("%w: %s does not list %s", ErrCorrupt, MemberManifest, name)
		}
	}
	return m, files, nil
}

func isSHA256(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// checkHeader refuses members that are not plain files with plain names.
func checkHeader(hdr *tar.Header) error {
	name := hdr.Name
	if name == "" || strings.ContainsAny(name, "/\\\x00") || name == "." || name == ".." || len(name) > 100 {
		return fmt.Errorf("%w: unsafe member name %q", ErrCorrupt, clip(name))
	}
	if hdr.Typeflag != tar.TypeReg {
		return fmt.Errorf("%w: member %q is not a regular file (type %q)", ErrCorrupt, name, hdr.Typeflag)
	}
	return nil
}

func readConfig(tr io.Reader, f File) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(tr, f.Size))
	if err != nil {
		return nil, corruptRead(f.Name, err)
	}
	if int64(len(b)) != f.Size {
		return nil, fmt.Errorf("%w: %s: truncated at %d of %d bytes", ErrCorrupt, f.Name, len(b), f.Size)
	}
	sum := sha256.Sum256(b)
	if err := checkSum(f, sum[:]); err != nil {
		return nil, err
	}
	return b, nil
}

// errCheckDone stops the state copy when store.CheckBolt returned before
// reading all of it.
var errCheckDone = errors.New("state check ended early")

// readState copies the state member to dst while hashing it and feeding
// store.CheckBolt, which runs in a goroutine joined before returning.
func readState(tr io.Reader, f File, dst io.Writer) error {
	pr, pw := io.Pipe()
	checked := make(chan error, 1)
	go func() {
		err := store.CheckBolt(pr)
		pr.CloseWithError(errCheckDone)
		checked <- err
	}()
	h := sha256.New()
	n, copyErr := io.Copy(io.MultiWriter(dst, h, pw), io.LimitReader(tr, f.Size))
	pw.CloseWithError(copyErr) // nil: CheckBolt sees EOF
	checkErr := <-checked

	switch {
	case copyErr != nil && errors.Is(copyErr, errCheckDone):
		if checkErr == nil {
			checkErr = errCheckDone
		}
		return stateCheckError(checkErr)
	case copyErr != nil:
		return corruptRead(f.Name, copyErr) // Read reports dst's errors itself
	case n != f.Size:
		return fmt.Errorf("%w: %s: truncated at %d of %d bytes", ErrCorrupt, f.Name, n, f.Size)
	}
	if err := checkSum(f, h.Sum(nil)); err != nil {
		return err
	}
	if checkErr != nil {
		return stateCheckError(checkErr)
	}
	return nil
}

// stateCheckError classifies an error from store.CheckBolt.
func stateCheckError(err error) error {
	switch {
	case errors.Is(err, store.ErrSchema):
		return fmt.Errorf("%w: %s: %w", ErrMismatch, MemberState, err)
	case errors.Is(err, store.ErrCorrupt):
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, MemberState, err)
	}
	return fmt.Errorf("backup: check %s: %w", MemberState, err)
}

func checkSum(f File, sum []byte) error {
	if got := hex.EncodeToString(sum); got != f.SHA256 {
		return fmt.Errorf("%w: %s: sha256 is %s, manifest says %s", ErrMismatch, f.Name, got, f.SHA256)
	}
	return nil
}

// checkTrailer reads what follows the tar's end (zero padding at most) to
// the end of the gzip stream, which makes gzip verify its CRC and length.
func checkTrailer(zr io.Reader) error {
	buf := make([]byte, 4096)
	total := 0
	for total <= maxTrailer {
		n, err := zr.Read(buf)
		total += n
		for _, c := range buf[:n] {
			if c != 0 {
				return fmt.Errorf("%w: data after the end of the archive", ErrCorrupt)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return corruptRead("end of archive", err)
		}
	}
	return fmt.Errorf("%w: more than %d bytes after the end of the archive", ErrCorrupt, maxTrailer)
}

// corruptRead wraps an error from the gzip or tar reader.
func corruptRead(where string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s: archive is truncated", ErrCorrupt, where)
	}
	return fmt.Errorf("%w: %s: %v", ErrCorrupt, where, err)
}

// clip shortens a string from an archive for an error message.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return s
}

// errReader remembers the first error of the underlying reader, so that
// Read can tell a failing source from a damaged archive.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// errWriter remembers the first error of the underlying writer.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}
