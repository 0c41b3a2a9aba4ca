//go:build !linux

package backend

import (
	"net"
	"testing"
)

// checkKeepAlive is only implemented on Linux.
func checkKeepAlive(*testing.T, *net.TCPConn) {}
