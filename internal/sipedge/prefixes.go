package sipedge

import (
	"net/netip"

	"github.com/gaissmai/bart"
)

// prefixSet answers "is this address in one of these networks" fast.
type prefixSet struct{ t *bart.Lite }

func newPrefixSet(ps []netip.Prefix) prefixSet {
	if len(ps) == 0 {
		return prefixSet{}
	}
	t := new(bart.Lite)
	for _, p := range ps {
		t.Insert(p)
	}
	return prefixSet{t: t}
}

func (s prefixSet) contains(a netip.Addr) bool {
	return s.t != nil && s.t.Contains(a.Unmap())
}
