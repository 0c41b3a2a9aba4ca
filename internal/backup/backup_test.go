package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/store"
	bolt "go.etcd.io/bbolt"
)

var created = time.Date(2025, 3, 1, 12, 30, 15, 0, time.UTC)

const configText = "listeners:\n  - name: https\n    listen: \":443\"\n"

// snapshot returns a snapshot of a small state store.
func snapshot(t testing.TB) []byte {
	t.Helper()
	s, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	err = s.Put(ctx, store.Entry{
		List: store.Blacklist, Prefix: netip.MustParsePrefix("192.0.2.7/32"), Origin: store.Auto,
		Reason: "weighted 10 >= 10", Evidence: []string{"ldap invalid_credentials"}, Created: created, Level: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := s.Snapshot(ctx, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// validArchive returns an archive written by Write and the state in it.
func validArchive(t testing.TB) ([]byte, []byte) {
	t.Helper()
	state := snapshot(t)
	var b bytes.Buffer
	err := Write(&b, Archive{
		Created:    created.Add(999 * time.Millisecond).In(time.FixedZone("CET", 3600)),
		Version:    "v0.4.0",
		ConfigName: "/etc/pbxgate/pbxgate.yaml",
		Config:     []byte(configText),
		State:      bytes.NewReader(state),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), state
}

func TestRoundTrip(t *testing.T) {
	archive, state := validArchive(t)
	var got bytes.Buffer
	m, config, err := Read(bytes.NewReader(archive), &got)
	if err != nil {
		t.Fatalf("Read = %v", err)
	}
	if string(config) != configText {
		t.Errorf("config = %q", config)
	}
	if !bytes.Equal(got.Bytes(), state) {
		t.Errorf("state differs: %d bytes, want %d", got.Len(), len(state))
	}
	if m.Format != Format || m.Version != Version || !m.Created.Equal(created) || m.PbxgateVersion != "v0.4.0" || m.ConfigName != "pbxgate.yaml" {
		t.Errorf("manifest = %+v", m)
	}
	if len(m.Files) != 2 || m.Files[1].Name != MemberState || m.Files[1].Size != int64(len(state)) {
		t.Errorf("manifest files = %+v", m.Files)
	}
	// The state installs.
	path := filepath.Join(t.TempDir(), "state.db")
	if err := store.RestoreBolt(path, &got); err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if e, ok, err := s.Get(context.Background(), store.Blacklist, netip.MustParsePrefix("192.0.2.7/32")); !ok || err != nil || e.Reason != "weighted 10 >= 10" {
		t.Errorf("restored entry = %+v, %v, %v", e, ok, err)
	}
}

func TestManifestIsTheDocumentedJSON(t *testing.T) {
	archive, _ := validArchive(t)
	members := untar(t, archive)
	var raw map[string]any
	if err := json.Unmarshal(members[0].body, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["created"] != "2025-03-01T12:30:15Z" || raw["format"] != "pbxgate-backup" || raw["version"] != 1.0 ||
		raw["pbxgate_version"] != "v0.4.0" || raw["config_name"] != "pbxgate.yaml" {
		t.Errorf("manifest = %s", members[0].body)
	}
	var names []string
	for _, m := range members {
		names = append(names, m.hdr.Name)
	}
	if strings.Join(names, " ") != "manifest.json config.yaml state.db" {
		t.Errorf("members = %v", names)
	}
}

func TestEmptyConfig(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, Archive{Created: created, State: bytes.NewReader(snapshot(t))}); err != nil {
		t.Fatal(err)
	}
	m, config, err := Read(&b, io.Discard)
	if err != nil || config == nil || len(config) != 0 || m.ConfigName != "config.yaml" {
		t.Errorf("Read = %+v, %q, %v", m, config, err)
	}
}

func TestWriteRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		a    Archive
		want string
	}{
		{"no time", Archive{State: strings.NewReader("")}, "Created"},
		{"no state", Archive{Created: created}, "no state"},
		{"big config", Archive{Created: created, State: strings.NewReader(""), Config: make([]byte, MaxConfigSize+1)}, "exceeds"},
		{"dot name", Archive{Created: created, State: strings.NewReader(""), ConfigName: "/etc/.."}, "not a plain file name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			err := Write(&b, c.a)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Write = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

type member struct {
	hdr  tar.Header
	body []byte
}

func untar(t testing.TB, archive []byte) []member {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var ms []member
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, member{*hdr, body})
	}
}

func retar(t testing.TB, ms []member) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for _, m := range ms {
		h := m.hdr
		h.Size = int64(len(m.body))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// editManifest decodes the manifest member, lets fn change it, re-encodes.
func editManifest(t testing.TB, ms []member, fn func(m map[string]any)) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ms[0].body, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ms[0].body = b
}

func files(m map[string]any) []any { return m["files"].([]any) }

func fileEntry(m map[string]any, i int) map[string]any { return files(m)[i].(map[string]any) }

func TestReadRefuses(t *testing.T) {
	good, _ := validArchive(t)
	foreign := filepath.Join(t.TempDir(), "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket([]byte("meta"))
		return b.Put([]byte("schema"), []byte("2"))
	})
	db.Close()
	foreignState, _ := os.ReadFile(foreign)

	// setState replaces the state member and fixes the manifest to match.
	setState := func(t testing.TB, ms []member, state []byte) {
		ms[2].body = state
		sum := sha256.Sum256(state)
		editManifest(t, ms, func(m map[string]any) {
			fileEntry(m, 1)["size"] = len(state)
			fileEntry(m, 1)["sha256"] = hex.EncodeToString(sum[:])
		})
	}
	for _, c := range []struct {
		name   string
		edit   func(t testing.TB, ms []member) []member
		raw    func(b []byte) []byte // instead of edit
		target error
		want   string
	}{
		{"flipped byte in state", func(t testing.TB, ms []member) []member {
			ms[2].body[len(ms[2].body)/2] ^= 1
			return ms
		}, nil, ErrMismatch, "state.db: sha256 is"},
		{"flipped byte in config", func(t testing.TB, ms []member) []member {
			ms[1].body[0] ^= 1
			return ms
		}, nil, ErrMismatch, "config.yaml: sha256 is"},
		{"wrong sha in manifest", func(t testing.TB, ms []member) []member {
			editManifest(t, ms, func(m map[string]any) { fileEntry(m, 1)["sha256"] = strings.Repeat("ab", 32) })
			return ms
		}, nil, ErrMismatch, "manifest says abab"},
		{"size differs from manifest", func(t testing.TB, ms []member) []member {
			ms[1].body = append(ms[1].body, '\n')
			return ms
		}, nil, ErrMismatch, "config.yaml: manifest says 46 bytes, archive member has 47"},
		{"missing member", func(t testing.TB, ms []member) []member { return ms[:2] }, nil, ErrCorrupt, "member state.db listed in the manifest is missing"},
		{"extra member", func(t testing.TB, ms []member) []member {
			return append(ms, member{tar.Header{Name: "notes.txt", Typeflag: tar.TypeReg, Mode: 0o600}, []byte("hi")})
		}, nil, ErrCorrupt, `member "notes.txt" is not listed`},
		{"duplicate member", func(t testing.TB, ms []member) []member { return append(ms, ms[1]) }, nil, ErrCorrupt, `duplicate member "config.yaml"`},
		{"second manifest", func(t testing.TB, ms []member) []member { return append(ms, ms[0]) }, nil, ErrCorrupt, `duplicate member "manifest.json"`},
		{"manifest not first", func(t testing.TB, ms []member) []member {
			return []member{ms[1], ms[0], ms[2]}
		}, nil, ErrCorrupt, `first member is "config.yaml"`},
		{"path traversal", func(t testing.TB, ms []member) []member {
			ms[2].hdr.Name = "../state.db"
			return ms
		}, nil, ErrCorrupt, `unsafe member name "../state.db"`},
		{"absolute name", func(t testing.TB, ms []member) []member {
			ms[1].hdr.Name = "/etc/pbxgate/config.yaml"
			return ms
		}, nil, ErrCorrupt, "unsafe member name"},
		{"symlink", func(t testing.TB, ms []member) []member {
			ms[1].hdr.Typeflag, ms[1].hdr.Linkname, ms[1].body = tar.TypeSymlink, "/etc/shadow", nil
			return ms
		}, nil, ErrCorrupt, "not a regular file"},
		{"wrong format", func(t testing.TB, ms []member) []member {
			editManifest(t, ms, func(m map[string]any) { m["format"] = "tarball" })
			return ms
		}, nil, ErrCorrupt, `not a pbxgate backup: manifest.json format is "tarball"`},
		{"newer version", func(t testing.TB, ms []member) []member {
			editManifest(t, ms, func(m map[string]any) { m["version"] = 2 })
			return ms
		}, nil, ErrMismatch, "archive version 2 is newer than this pbxgate understands (1)"},
		{"version zero", func(t testing.TB, ms []member) []member {
			editManifest(t, ms, func(m map[string]any) { delete(m, "version") })
			return ms
		}, nil, ErrCorrupt, "version 0"},
		{"manifest lists unknown file", func(t testing.TB, ms []member) []member {
			editManifest(t, ms, func(m map[string]any) {
				m["files"] = append(files(m), map[string]any{"name": "x", "size": 0, "sha256": strings.Repeat("0", 64)})
			})
			return ms
		}, nil, ErrCorrupt, `lists unknown member "x"`},
		{"manifest lists a file twice", func(t testing.TB, ms []member) []member {
			editManifest(t, ms, func(m map[string]any) { m["files"] = append(files(m), files(m)[0]) })
			return ms
		}, nil, ErrCorrupt, "lists config.yaml twice"},
		{"manifest omits state", func(t testing.TB, ms []member) []member {
			editManifest(t, ms, func(m map[string]any) { m["files"] = files(m)[:1] })
			return ms
		}, nil, ErrCorrupt, "does not list state.db"},
		{"config over the limit", func(t testing.TB, ms []member) []member {
			editManifest(t, ms, func(m map[string]any) { fileEntry(m, 0)["size"] = MaxConfigSize + 1 })
			return ms
		}, nil, ErrCorrupt, "config.yaml size 4194305 is outside 0..4194304"},
		{"state over the limit", func(t testing.TB, ms []member) []member {
			editManifest(t, ms, func(m map[string]any) { fileEntry(m, 1)["size"] = int64(MaxStateSize) + 1 })
			return ms
		}, nil, ErrCorrupt, "state.db size 4294967297 is outside"},
		{"bad sha syntax", func(t testing.TB, ms []member) []member {
			editManifest(t, ms, func(m map[string]any) { fileEntry(m, 0)["sha256"] = strings.Repeat("AB", 32) })
			return ms
		}, nil, ErrCorrupt, "not 64 lower-case hex digits"},
		{"config name with a path", func(t testing.TB, ms []member) []member {
			editManifest(t, ms, func(m map[string]any) { m["config_name"] = "../../etc/passwd" })
			return ms
		}, nil, ErrCorrupt, "not a plain file name"},
		{"manifest not json", func(t testing.TB, ms []member) []member {
			ms[0].body = []byte("format: pbxgate-backup")
			return ms
		}, nil, ErrCorrupt, "manifest.json: invalid character"},
		{"state not bbolt", func(t testing.TB, ms []member) []member {
			setState(t, ms, []byte("this is not a database"))
			return ms
		}, nil, ErrCorrupt, "state.db: store: corrupt state"},
		{"state of another schema", func(t testing.TB, ms []member) []member {
			setState(t, ms, foreignState)
			return ms
		}, nil, ErrMismatch, `schema version "2"`},
		{"truncated gzip", nil, func(b []byte) []byte { return b[:len(b)*2/3] }, ErrCorrupt, "truncated"},
		{"gzip checksum", nil, func(b []byte) []byte { b[len(b)-6] ^= 1; return b }, ErrCorrupt, "checksum"},
		{"not gzip", nil, func(b []byte) []byte { return []byte("PK\x03\x04 a zip file") }, ErrCorrupt, "not a gzip stream"},
		{"garbage after the gzip stream", nil, func(b []byte) []byte { return append(b, "trailing"...) }, ErrCorrupt, ""},
		{"empty", nil, func(b []byte) []byte { return nil }, ErrCorrupt, "not a gzip stream"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var archive []byte
			if c.raw != nil {
				archive = c.raw(bytes.Clone(good))
			} else {
				archive = retar(t, c.edit(t, untar(t, good)))
			}
			_, config, err := Read(bytes.NewReader(archive), io.Discard)
			if !errors.Is(err, c.target) {
				t.Fatalf("Read = %v, want an error wrapping %v", err, c.target)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			if config != nil {
				t.Error("Read returned a config along with an error")
			}
		})
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after -= len(p); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

type failReader struct {
	r     io.Reader
	after int
}

func (f *failReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("connection reset")
	}
	p = p[:min(len(p), f.after)]
	n, err := f.r.Read(p)
	f.after -= n
	return n, err
}

func TestReadIOErrorsAreNotCorruption(t *testing.T) {
	archive, _ := validArchive(t)
	_, _, err := Read(bytes.NewReader(archive), &failWriter{after: 100})
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("failing stateDst: %v", err)
	}
	_, _, err = Read(&failReader{r: bytes.NewReader(archive), after: len(archive) / 2}, io.Discard)
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("failing source: %v", err)
	}
}

// FuzzRead: Read never panics, and whatever it accepts matches its
// manifest and is what Write would have written.
func FuzzRead(f *testing.F) {
	good, _ := validArchive(f)
	f.Add(good)
	f.Fuzz(func(t *testing.T, archive []byte) {
		var state bytes.Buffer
		m, config, err := Read(bytes.NewReader(archive), &state)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrMismatch) {
				t.Fatalf("Read error wraps neither ErrCorrupt nor ErrMismatch: %v", err)
			}
			return
		}
		// Accepted: recompute every checksum independently.
		zr, err := gzip.NewReader(bytes.NewReader(archive))
		if err != nil {
			t.Fatalf("accepted an archive gzip refuses: %v", err)
		}
		tr := tar.NewReader(zr)
		sums := map[string]string{}
		for range 4 {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("accepted an archive tar refuses: %v", err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, tr); err != nil {
				t.Fatalf("accepted an archive tar refuses: %v", err)
			}
			sums[hdr.Name] = hex.EncodeToString(h.Sum(nil))
		}
		for _, fl := range m.Files {
			if sums[fl.Name] != fl.SHA256 {
				t.Fatalf("accepted %s with sha256 %s, manifest says %s", fl.Name, sums[fl.Name], fl.SHA256)
			}
		}
		cs, ss := sha256.Sum256(config), sha256.Sum256(state.Bytes())
		if hex.EncodeToString(cs[:]) != sums[MemberConfig] || hex.EncodeToString(ss[:]) != sums[MemberState] {
			t.Fatal("returned config or state differ from the archive's members")
		}
		// And it survives a second trip.
		var again bytes.Buffer
		if err := Write(&again, Archive{Created: m.Created, Version: m.PbxgateVersion, ConfigName: m.ConfigName, Config: config, State: &state}); err != nil {
			t.Fatal(err)
		}
		m2, config2, err := Read(&again, io.Discard)
		if err != nil || !bytes.Equal(config2, config) || !m2.Created.Equal(m.Created) || m2.ConfigName != m.ConfigName {
			t.Fatalf("second trip: %+v, %v", m2, err)
		}
	})
}
