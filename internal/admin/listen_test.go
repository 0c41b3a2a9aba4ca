package admin

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenUnix(t *testing.T) {
	dir := socketDir(t)
	path := filepath.Join(dir, "run", "admin.sock")
	ln, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v; want a 0600 socket", fi.Mode(), err)
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir mode %v, %v; want 0700", di.Mode(), err)
	}

	// A second pbxgate must not steal a live socket.
	if _, err := ListenUnix(path); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("ListenUnix on a live socket = %v, want ErrSocketInUse", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("live socket removed: %v", err)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("Close left the socket file: %v", err)
	}

	// A socket file left by a dead process is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	ln, err = ListenUnix(path)
	if err != nil {
		t.Fatalf("ListenUnix over a stale socket: %v", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("new socket does not answer: %v", err)
	}
	c.Close()
	ln.Close()
}

func TestListenUnixRefuses(t *testing.T) {
	dir := socketDir(t)
	file := filepath.Join(dir, "not-a-socket")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"regular file", file, "exists and is not a socket"},
		{"empty", "", "empty socket path"},
		{"too long", filepath.Join(dir, strings.Repeat("x", 120)), "longer than 107 bytes"},
		{"parent is a file", filepath.Join(file, "admin.sock"), "socket directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := ListenUnix(tt.path)
			if err == nil {
				ln.Close()
				t.Fatal("ListenUnix succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Fatalf("regular file touched: %q, %v", b, err)
	}
}
