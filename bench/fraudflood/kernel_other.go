//go:build !linux

package main

import (
	"errors"
	"net/netip"
)

// kernelBL stands in for the Linux reader of the kernel blacklist: nftables
// exists on Linux only.
type kernelBL struct{}

func openKernelBL() (*kernelBL, error) {
	return nil, errors.New("kernel blacklist: needs Linux (nftables)")
}

func (*kernelBL) close()                 {}
func (*kernelBL) drops() (uint64, error) { return 0, errors.New("kernel blacklist: needs Linux") }
func (*kernelBL) covered([]netip.Addr) (int, error) {
	return 0, errors.New("kernel blacklist: needs Linux")
}
