//go:build !linux

package httpproxy

import (
	"net"
	"syscall"
)

// rawOf returns nil: waiting without a buffer is implemented on Linux
// only; elsewhere an idle connection waits with a one-byte read.
func rawOf(net.Conn) syscall.RawConn { return nil }

func (lc *leanConn) readReady(uintptr) bool { return true }

// alive cannot peek here; a dead connection is found by the retry.
func (bc *bconn) alive() bool { return true }

func sysRead(uintptr, []byte) (int, syscall.Errno)  { return 0, syscall.ENOTSUP }
func sysWrite(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.ENOTSUP }
