//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Names of the kernel blacklist's objects, as pbxgate creates them
// (internal/kernelbl): table inet pbxgate_bl, chain prerouting (priority
// raw) with one `... saddr @set counter drop` rule per family, sets bl4 and
// bl6.
const (
	kblTable = "pbxgate_bl"
	kblChain = "prerouting"
	kblSet4  = "bl4"
)

// kernelBL reads the kernel blacklist of the current network namespace
// over netlink: cheap enough to poll once a second during the flood, where
// running nft(8) would cost the harness's CPU a process each time. It only
// reads.
type kernelBL struct {
	conn  *nftables.Conn
	table *nftables.Table
	chain *nftables.Chain
}

// openKernelBL opens a netlink socket in the current network namespace.
func openKernelBL() (*kernelBL, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("kernel blacklist: open netlink: %w", err)
	}
	t := &nftables.Table{Name: kblTable, Family: nftables.TableFamilyINet}
	return &kernelBL{conn: c, table: t, chain: &nftables.Chain{Name: kblChain, Table: t}}, nil
}

// close closes the netlink socket. Safe on nil.
func (k *kernelBL) close() {
	if k != nil {
		_ = k.conn.CloseLasting()
	}
}

// drops returns the packets dropped so far by the chain's rules (the sum of
// their counters); an error when the table or chain is missing or has no
// counter.
func (k *kernelBL) drops() (uint64, error) {
	rules, err := k.conn.GetRules(k.table, k.chain)
	if err != nil {
		return 0, fmt.Errorf("kernel blacklist: read chain inet %s %s: %w", kblTable, kblChain, err)
	}
	return sumCounters(rules)
}

// sumCounters adds up the packet counters of rules.
func sumCounters(rules []*nftables.Rule) (uint64, error) {
	var n uint64
	found := false
	for _, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				n += c.Packets
				found = true
			}
		}
	}
	if !found {
		return 0, fmt.Errorf("kernel blacklist: chain inet %s %s has no counter (%d rules)", kblTable, kblChain, len(rules))
	}
	return n, nil
}

// covered returns how many of addrs set bl4 holds.
func (k *kernelBL) covered(addrs []netip.Addr) (int, error) {
	set, err := k.conn.GetSetByName(k.table, kblSet4)
	if err != nil {
		return 0, fmt.Errorf("kernel blacklist: set %s: %w", kblSet4, err)
	}
	els, err := k.conn.GetSetElements(set)
	if err != nil {
		return 0, fmt.Errorf("kernel blacklist: elements of set %s: %w", kblSet4, err)
	}
	rs, err := ranges4(els)
	if err != nil {
		return 0, err
	}
	return countIn(rs, addrs), nil
}

// range4 is an inclusive range of IPv4 addresses, as numbers.
type range4 struct{ lo, hi uint32 }

// ranges4 turns the elements of an IPv4 interval set into ranges: each
// element that is not an interval end starts a range running up to the
// next element's key minus one (the kernel's interval ends are exclusive),
// or to 255.255.255.255 when it is the last.
func ranges4(els []nftables.SetElement) ([]range4, error) {
	type el struct {
		k   uint32
		end bool
	}
	list := make([]el, 0, len(els))
	for _, e := range els {
		if len(e.Key) != 4 {
			return nil, fmt.Errorf("kernel blacklist: set %s: a key of %d bytes, want 4", kblSet4, len(e.Key))
		}
		list = append(list, el{uint32(e.Key[0])<<24 | uint32(e.Key[1])<<16 | uint32(e.Key[2])<<8 | uint32(e.Key[3]), e.IntervalEnd})
	}
	// At an equal key the end of one range sorts before the start of the
	// next (adjacent ranges share that key).
	slices.SortFunc(list, func(a, b el) int {
		switch {
		case a.k != b.k:
			if a.k < b.k {
				return -1
			}
			return 1
		case a.end == b.end:
			return 0
		case a.end:
			return -1
		}
		return 1
	})
	var out []range4
	for i, e := range list {
		if e.end {
			continue
		}
		r := range4{lo: e.k, hi: ^uint32(0)}
		if i+1 < len(list) {
			if list[i+1].k == 0 {
				return nil, errors.New("kernel blacklist: an interval ends at 0.0.0.0")
			}
			r.hi = list[i+1].k - 1
		}
		out = append(out, r)
	}
	return out, nil
}

// countIn returns how many of addrs (IPv4) lie in one of rs.
func countIn(rs []range4, addrs []netip.Addr) int {
	n := 0
	for _, a := range addrs {
		if !a.Is4() {
			continue
		}
		b := a.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		if slices.ContainsFunc(rs, func(r range4) bool { return r.lo <= v && v <= r.hi }) {
			n++
		}
	}
	return n
}
