//go:build !linux

// Package rawio reads and writes non-blocking sockets with raw system
// calls on Linux; elsewhere Supported is false and callers use net.Conn.
package rawio

import "syscall"

// Supported reports whether Read and Write work on this platform.
const Supported = false

// Read is not available on this platform: callers check Supported.
func Read(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.ENOSYS }

// Write is not available on this platform: callers check Supported.
func Write(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.ENOSYS }
