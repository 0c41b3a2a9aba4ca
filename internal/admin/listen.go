package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

// ListenUnix opens the admin socket at path, mode 0600. It creates the
// parent directory (mode 0700) if missing. A socket file left by a pbxgate
// that died is removed; if something answers on it, the error wraps
// ErrSocketInUse. A path that exists and is not a socket is never removed.
// Closing the listener removes the socket file.
//
// Between bind and chmod the socket briefly has the umask's mode; the
// server's peer uid check (root or pbxgate's own uid) covers that window.
func ListenUnix(path string) (net.Listener, error) {
	switch {
	case path == "":
		return nil, errors.New("admin: empty socket path")
	case len(path) > maxSocketPath:
		return nil, fmt.Errorf("admin: socket path %s is longer than %d bytes; choose a shorter admin.socket", path, maxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("admin: socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: %s (is pbxgate already running?)", ErrSocketInUse, path)
		}
		return nil, fmt.Errorf("admin: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("admin: socket mode: %w", err)
	}
	return ln, nil
}

// removeStale removes a socket file nobody answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin: socket path: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("admin: %s exists and is not a socket; remove it or choose another admin.socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("%w: %s (is pbxgate already running?)", ErrSocketInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("admin: cannot tell whether %s is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin: remove stale socket: %w", err)
	}
	return nil
}
