//go:build !windows && !plan9 && !solaris && !aix && !js && !wasip1

package store

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// lockPoll is how often a held lock is retried.
const lockPoll = 20 * time.Millisecond

// testHookLockBusy, when set by a test, runs each time the lock is found
// held by someone else.
var testHookLockBusy func()

// lockFile takes the advisory lock bbolt uses (flock: exclusive for a
// writer, shared for a reader), waiting up to timeout. It reports false when
// another holder kept it that long. bbolt later takes the same lock on the
// same file descriptor, which succeeds at once.
func lockFile(f *os.File, exclusive bool, timeout time.Duration) (bool, error) {
	how := unix.LOCK_SH | unix.LOCK_NB
	if exclusive {
		how = unix.LOCK_EX | unix.LOCK_NB
	}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), how)
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR):
			return false, err
		}
		if testHookLockBusy != nil {
			testHookLockBusy()
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		time.Sleep(min(lockPoll, left))
	}
}
