package kernelbl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Names of the kernel objects this package owns.
const (
	TableName = "pbxgate_bl"
	ChainName = "prerouting"
	Set4Name  = "bl4"
	Set6Name  = "bl6"
)

// Options configures a Sync. The zero value works on the current network
// namespace.
type Options struct {
	// Conn is the netlink connection to use. If nil, New opens a lasting
	// connection in NetNS, which Close closes.
	Conn *nftables.Conn
	// NetNS is an open file descriptor of a network namespace (for example
	// of /run/netns/NAME) used when Conn is nil. 0 means the current one.
	NetNS int
	// Log receives warnings from Run. Nil discards them.
	Log *slog.Logger
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Chunk is the most set elements sent in one netlink batch; a range
	// counts as two elements (start and end). 0 means 500.
	Chunk int
	// Jitter lengthens each kernel timeout by a random fraction of up to
	// Jitter (at most one minute) so elements imported together do not
	// expire in the same instant. 0 means 0.02; negative disables it.
	Jitter float64
	// ReadEvery is how often Reconcile re-reads the sets from the kernel
	// instead of trusting what it last wrote. A netlink dump of a large
	// interval set is slow in the kernel (about 4.5 s for 100,000 ranges),
	// so it is not done on every call. A batch the kernel rejects always
	// forces a re-read. 0 means 15 minutes; negative means every call.
	ReadEvery time.Duration
}

// kelem is one range as it is (or we believe it is) in the kernel.
type kelem struct {
	hi     u128
	hasEnd bool  // an interval-end element follows the range
	exp    int64 // kernel expiry on our clock (UnixNano), or forever
}

// family is the state of one set.
type family struct {
	v4   bool
	set  *nftables.Set
	max  u128
	kern map[u128]kelem // keyed by range start
}

// Sync keeps the kernel sets bl4/bl6 equal to a wanted list of entries.
// Its methods are safe for concurrent use.
type Sync struct {
	conn    *nftables.Conn
	ownConn bool
	log     *slog.Logger
	now     func() time.Time
	chunk   int
	jitter  float64
	every   time.Duration
	table   *nftables.Table
	chain   *nftables.Chain

	mu     sync.Mutex // guards the fields below
	want   map[netip.Prefix]time.Time
	nlen   [2][129]int // prefixes in want by family (v4, v6) and length
	fams   [2]*family  // v4, v6
	mirror bool        // fams[i].kern reflect the kernel
	readAt time.Time   // when the mirror was last read from the kernel
	closed bool
}

// New returns a Sync. It does not touch the kernel (Ensure does), except
// that it opens a netlink socket when o.Conn is nil.
func New(o Options) (*Sync, error) {
	s := &Sync{
		conn:   o.Conn,
		log:    o.Log,
		now:    o.Now,
		chunk:  o.Chunk,
		jitter: o.Jitter,
		every:  o.ReadEvery,
		want:   make(map[netip.Prefix]time.Time),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "kernelbl")
	if s.now == nil {
		s.now = time.Now
	}
	if s.chunk <= 0 {
		s.chunk = 500
	}
	if s.chunk < 2 {
		s.chunk = 2
	}
	if s.jitter == 0 {
		s.jitter = 0.02
	}
	if s.every == 0 {
		s.every = 15 * time.Minute
	}
	if s.jitter < 0 {
		s.jitter = 0
	}
	if s.conn == nil {
		opts := []nftables.ConnOption{nftables.AsLasting()}
		if o.NetNS > 0 {
			opts = append(opts, nftables.WithNetNSFd(o.NetNS))
		}
		c, err := nftables.New(opts...)
		if err != nil {
			return nil, fmt.Errorf("kernelbl: open netlink: %w", err)
		}
		s.conn, s.ownConn = c, true
	}
	s.table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	policy := nftables.ChainPolicyAccept
	s.chain = &nftables.Chain{
		Name:     ChainName,
		Table:    s.table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityRaw,
		Policy:   &policy,
	}
	// Fixed set IDs: they only name the sets inside one batch, and avoid
	// the library's unsynchronised global ID counter.
	s.fams[0] = &family{v4: true, max: max4, set: &nftables.Set{
		Table: s.table, ID: 0x70620004, Name: Set4Name, KeyType: nftables.TypeIPAddr,
		Interval: true, HasTimeout: true,
	}}
	s.fams[1] = &family{max: max6, set: &nftables.Set{
		Table: s.table, ID: 0x70620006, Name: Set6Name, KeyType: nftables.TypeIP6Addr,
		Interval: true, HasTimeout: true,
	}}
	return s, nil
}

// Close closes the netlink connection New opened. It is idempotent.
func (s *Sync) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.ownConn {
		if err := s.conn.CloseLasting(); err != nil {
			return fmt.Errorf("kernelbl: close netlink: %w", err)
		}
	}
	return nil
}

// Ensure creates the table, chain, sets and drop rules if they are missing,
// in one atomic batch. It rewrites the chain's rules when they are not
// exactly the two drop rules (so a tampered chain is repaired) and leaves
// them alone otherwise, keeping their packet counters; it never removes set
// elements. A set that exists with other flags or key type makes it fail;
// Uninstall first.
func (s *Sync) Ensure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.ensureLocked()
}

func (s *Sync) ensureLocked() error {
	c := s.conn
	rules := [2][]expr.Any{
		dropFrom(s.fams[0].set, unix.NFPROTO_IPV4, 12, 4),
		dropFrom(s.fams[1].set, unix.NFPROTO_IPV6, 8, 16),
	}
	intact := s.chainIntactLocked(rules) // before the batch is queued
	c.AddTable(s.table)
	c.AddChain(s.chain)
	for _, f := range s.fams {
		if err := c.AddSet(f.set, nil); err != nil {
			return fmt.Errorf("kernelbl: set %s: %w", f.set.Name, err)
		}
	}
	if !intact {
		c.FlushChain(s.chain)
		for _, r := range rules {
			c.AddRule(&nftables.Rule{Table: s.table, Chain: s.chain, Exprs: r})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("kernelbl: ensure table inet %s: %w", TableName, err)
	}
	return nil
}

// chainIntactLocked reports whether the chain holds exactly the given
// rules, in order (counter values aside). A missing table or chain is not
// intact.
func (s *Sync) chainIntactLocked(want [2][]expr.Any) bool {
	got, err := s.conn.GetRules(s.table, s.chain)
	if err != nil || len(got) != len(want) {
		return false
	}
	for i, r := range got {
		if !sameExprs(r.Exprs, want[i]) {
			return false
		}
	}
	return true
}

// sameExprs compares the expressions dropFrom makes with those read back
// from the kernel, field by field where it matters.
func sameExprs(got, want []expr.Any) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range want {
		switch w := want[i].(type) {
		case *expr.Meta:
			g, ok := got[i].(*expr.Meta)
			if !ok || g.Key != w.Key || g.Register != w.Register || g.SourceRegister != w.SourceRegister {
				return false
			}
		case *expr.Cmp:
			g, ok := got[i].(*expr.Cmp)
			if !ok || g.Op != w.Op || g.Register != w.Register || !bytes.Equal(g.Data, w.Data) {
				return false
			}
		case *expr.Payload:
			g, ok := got[i].(*expr.Payload)
			if !ok || g.Base != w.Base || g.Offset != w.Offset || g.Len != w.Len || g.DestRegister != w.DestRegister {
				return false
			}
		case *expr.Lookup:
			g, ok := got[i].(*expr.Lookup)
			if !ok || g.SetName != w.SetName || g.SourceRegister != w.SourceRegister || g.Invert != w.Invert || g.IsDestRegSet {
				return false
			}
		case *expr.Counter:
			if _, ok := got[i].(*expr.Counter); !ok {
				return false
			}
		case *expr.Verdict:
			g, ok := got[i].(*expr.Verdict)
			if !ok || g.Kind != w.Kind {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// dropFrom is `meta nfproto P <saddr> @set counter drop`.
func dropFrom(set *nftables.Set, proto byte, off, n uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// Uninstall deletes the table inet pbxgate_bl with its sets. A missing
// table is not an error.
func (s *Sync) Uninstall() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.mirror = false
	s.conn.DelTable(s.table)
	if err := s.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("kernelbl: delete table inet %s: %w", TableName, err)
	}
	return nil
}

// Add adds entries to the wanted list, replacing the expiry of a prefix
// already there, and updates the kernel. Expired entries are ignored. An
// invalid prefix fails the call before anything changes. Entries that
// overlap nothing wanted (new automatic bans) cost Add work in proportion
// to their number only; others make it diff every wanted entry against
// the kernel. Either way each call is at least one nftables transaction,
// whose commit costs the kernel time in proportion to the size of the set
// (Linux 6.18: about 0.1 ms at 1,000 ranges, 0.6 ms at 10,000, 15 ms at
// 100,000).
func (s *Sync) Add(entries ...Entry) error {
	keys := make([]netip.Prefix, len(entries))
	for i, e := range entries {
		p, ok := canon(e.Prefix)
		if !ok {
			return fmt.Errorf("%w: %v", ErrInvalidPrefix, e.Prefix)
		}
		keys[i] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if ok, err := s.addDisjointLocked(keys, entries); ok {
		return err
	}
	for i, e := range entries {
		s.setWantLocked(keys[i], e.Expires)
	}
	return s.applyLocked(false)
}

// addDisjointLocked is Add's fast path for prefixes that overlap nothing
// wanted, which is what automatic bans of new sources are: it sends just
// their ranges instead of diffing every wanted entry against the mirror,
// so that the user-space work of a ban arriving alone does not grow with
// the number banned already. It reports false, changing nothing, when it
// does not apply (a key is wanted already, or overlaps a wanted prefix, or
// the mirror is not trusted); the caller then takes the full path.
// Otherwise it reports true and the outcome: a batch the kernel refuses is
// retried by the full path, after a fresh read of the sets. The ranges it
// adds are not merged with adjacent ones of equal expiry; the next full
// apply does that.
func (s *Sync) addDisjointLocked(keys []netip.Prefix, entries []Entry) (bool, error) {
	if !s.mirror {
		return false, nil
	}
	for _, k := range keys {
		if s.overlapsWantLocked(k) {
			return false, nil
		}
	}
	for i, e := range entries {
		s.setWantLocked(keys[i], e.Expires)
	}
	// From want, so that a key given twice gets the expiry the full path
	// would give it (the last); keys overlapping each other are flattened
	// here.
	list := make([]Entry, len(keys))
	for i, k := range keys {
		list[i] = Entry{Prefix: k, Expires: s.want[k]}
	}
	now := s.now()
	v4, v6, _ := normalize(list, now) // keys are canonical: nothing is bad
	if err := errors.Join(s.addRangesLocked(s.fams[0], v4, now), s.addRangesLocked(s.fams[1], v6, now)); err != nil {
		s.mirror = false
		return true, s.applyLocked(false)
	}
	return true, nil
}

// addRangesLocked sends ranges that overlap nothing in the mirror, in
// chunks.
func (s *Sync) addRangesLocked(f *family, rs []rng, now time.Time) error {
	var batch []op
	n := 0
	for _, r := range rs {
		tmo := s.timeout(r.exp, now)
		ke := kelem{hi: r.hi, hasEnd: r.hi != f.max, exp: forever}
		if tmo > 0 {
			ke.exp = now.Add(tmo).UnixNano()
		}
		o := op{lo: r.lo, ke: ke, add: true, tmo: tmo}
		if n > 0 && n+o.weight() > s.chunk {
			if err := s.sendLocked(f, batch); err != nil {
				return err
			}
			batch, n = batch[:0], 0
		}
		batch = append(batch, o)
		n += o.weight()
	}
	if len(batch) == 0 {
		return nil
	}
	return s.sendLocked(f, batch)
}

// overlapsWantLocked reports whether p (canonical) is wanted already or
// overlaps a wanted prefix: one containing it (looked up at each length
// that is wanted at all), or possibly one inside it (any wanted prefix
// longer than p counts, without looking further).
func (s *Sync) overlapsWantLocked(p netip.Prefix) bool {
	fi, bits := famIndex(p), p.Bits()
	n := &s.nlen[fi]
	for l := bits + 1; l < len(n); l++ {
		if n[l] > 0 {
			return true
		}
	}
	for l := 0; l <= bits; l++ {
		if n[l] == 0 {
			continue
		}
		q, err := p.Addr().Prefix(l)
		if err != nil {
			return true
		}
		if _, ok := s.want[q]; ok {
			return true
		}
	}
	return false
}

func famIndex(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

// setWantLocked, deleteWantLocked and replaceWantLocked change the wanted
// list and keep nlen.
func (s *Sync) setWantLocked(p netip.Prefix, exp time.Time) {
	if _, ok := s.want[p]; !ok {
		s.nlen[famIndex(p)][p.Bits()]++
	}
	s.want[p] = exp
}

func (s *Sync) deleteWantLocked(p netip.Prefix) {
	if _, ok := s.want[p]; ok {
		s.nlen[famIndex(p)][p.Bits()]--
		delete(s.want, p)
	}
}

func (s *Sync) replaceWantLocked(m map[netip.Prefix]time.Time) {
	s.want = m
	s.nlen = [2][129]int{}
	for p := range m {
		s.nlen[famIndex(p)][p.Bits()]++
	}
}

// Remove drops prefixes from the wanted list and updates the kernel. A
// prefix that is not listed is ignored; addresses it covers stay blocked if
// another listed prefix covers them.
func (s *Sync) Remove(prefixes ...netip.Prefix) error {
	keys := make([]netip.Prefix, len(prefixes))
	for i, p := range prefixes {
		q, ok := canon(p)
		if !ok {
			return fmt.Errorf("%w: %v", ErrInvalidPrefix, p)
		}
		keys[i] = q
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, k := range keys {
		s.deleteWantLocked(k)
	}
	return s.applyLocked(false)
}

// Reconcile replaces the wanted list with want and makes the kernel sets
// equal to it: it ensures the table exists, reads the sets over netlink
// (see Options.ReadEvery), adds missing ranges, deletes extra ones, and re-adds any element whose
// remaining kernel lifetime is under half of what it should be (or longer
// than it should be). Invalid prefixes are skipped and reported in the
// returned error after the rest is applied.
func (s *Sync) Reconcile(want []Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	m := make(map[netip.Prefix]time.Time, len(want))
	bad := 0
	for _, e := range want {
		p, ok := canon(e.Prefix)
		if !ok {
			bad++
			continue
		}
		if old, dup := m[p]; dup && expKey(old) > expKey(e.Expires) {
			continue
		}
		m[p] = e.Expires
	}
	s.replaceWantLocked(m)
	if err := s.ensureLocked(); err != nil {
		return err
	}
	fresh := s.every < 0 || !s.mirror || s.now().Sub(s.readAt) >= s.every
	err := s.applyLocked(fresh)
	if bad > 0 {
		err = errors.Join(err, fmt.Errorf("%w: %d entries skipped", ErrInvalidPrefix, bad))
	}
	return err
}

// Run reconciles at once and then every interval until ctx ends, taking
// the wanted entries from want each time. Failures are logged and retried
// at the next tick.
func (s *Sync) Run(ctx context.Context, want func() []Entry, every time.Duration) {
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.Reconcile(want()); err != nil {
			s.log.Warn("reconcile failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// applyLocked brings the kernel to s.want. With fresh, the mirror is read
// from the kernel first; otherwise a failed batch reloads it and retries
// once (the kernel may have expired or lost elements on its own).
func (s *Sync) applyLocked(fresh bool) error {
	now := s.now()
	list := make([]Entry, 0, len(s.want))
	for p, exp := range s.want {
		list = append(list, Entry{Prefix: p, Expires: exp})
	}
	v4, v6, _ := normalize(list, now) // keys are canonical: nothing is bad
	var err error
	for try := 0; try < 2; try++ {
		if fresh || !s.mirror {
			if err = s.loadLocked(now); err != nil {
				return err
			}
		}
		err = errors.Join(s.applyFamilyLocked(s.fams[0], v4, now), s.applyFamilyLocked(s.fams[1], v6, now))
		if err == nil {
			return nil
		}
		s.mirror = false
		if fresh {
			break
		}
	}
	return err
}

// loadLocked reads both sets from the kernel into the mirror.
func (s *Sync) loadLocked(now time.Time) error {
	for _, f := range s.fams {
		els, err := s.conn.GetSetElements(f.set)
		if err != nil {
			s.mirror = false
			return fmt.Errorf("kernelbl: read set %s (run Ensure first?): %w", f.set.Name, err)
		}
		f.kern = rangesFromElements(els, f.v4, f.max, now)
	}
	s.mirror, s.readAt = true, now
	return nil
}

// rangesFromElements pairs interval starts with the element that follows
// them: a start covers up to the next element's key minus one, or to the
// end of the address space when it is the last.
func rangesFromElements(els []nftables.SetElement, v4 bool, maxAddr u128, now time.Time) map[u128]kelem {
	type el struct {
		k   u128
		end bool
		exp int64
	}
	list := make([]el, 0, len(els))
	for _, e := range els {
		k, ok := keyU128(e.Key, v4)
		if !ok {
			continue
		}
		exp := int64(forever)
		if e.Timeout > 0 {
			exp = now.Add(e.Expires).UnixNano()
		}
		list = append(list, el{k: k, end: e.IntervalEnd, exp: exp})
	}
	// At an equal key the end of one range sorts before the start of the
	// next (adjacent ranges share that key).
	slices.SortFunc(list, func(a, b el) int {
		switch {
		case a.k.less(b.k):
			return -1
		case b.k.less(a.k):
			return 1
		case a.end == b.end:
			return 0
		case a.end:
			return -1
		}
		return 1
	})
	out := make(map[u128]kelem, len(list)/2+1)
	for i, e := range list {
		if e.end {
			continue
		}
		ke := kelem{hi: maxAddr, exp: e.exp}
		if i+1 < len(list) {
			ke.hi = list[i+1].k.dec()
			ke.hasEnd = list[i+1].end
		}
		out[e.k] = ke
	}
	return out
}

// op is one range to delete from or add to the kernel.
type op struct {
	lo  u128
	ke  kelem
	add bool
	tmo time.Duration // add: kernel timeout, 0 = none
}

// weight is the number of set elements o sends.
func (o op) weight() int {
	if o.ke.hasEnd {
		return 2
	}
	return 1
}

// applyFamilyLocked diffs want against the mirror and sends the difference
// in chunks. Deletions and additions of overlapping ranges go in the same
// batch, deletions first, so the set never holds overlaps and a replaced
// range is never absent.
func (s *Sync) applyFamilyLocked(f *family, want []rng, now time.Time) error {
	nowKey := now.UnixNano()
	var ops []op
	seen := make(map[u128]struct{}, len(want))
	for _, r := range want {
		seen[r.lo] = struct{}{}
		k, ok := f.kern[r.lo]
		if ok && k.hi == r.hi && s.fresh(k.exp, r.exp, nowKey) {
			continue
		}
		if ok {
			ops = append(ops, op{lo: r.lo, ke: k})
		}
		tmo := s.timeout(r.exp, now)
		ke := kelem{hi: r.hi, hasEnd: r.hi != f.max, exp: forever}
		if tmo > 0 {
			ke.exp = now.Add(tmo).UnixNano()
		}
		ops = append(ops, op{lo: r.lo, ke: ke, add: true, tmo: tmo})
	}
	for lo, k := range f.kern {
		if _, ok := seen[lo]; !ok {
			ops = append(ops, op{lo: lo, ke: k})
		}
	}
	if len(ops) == 0 {
		return nil
	}
	slices.SortFunc(ops, func(a, b op) int {
		switch {
		case a.lo.less(b.lo):
			return -1
		case b.lo.less(a.lo):
			return 1
		case a.add != b.add: // deletion of the same start first
			if a.add {
				return 1
			}
			return -1
		}
		return 0
	})
	// Cut ops into clusters of overlapping ranges; put deletions first in
	// each cluster and never split a cluster that fits in one batch.
	var batch []op
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.sendLocked(f, batch)
		batch, n = batch[:0], 0
		return err
	}
	for i := 0; i < len(ops); {
		j, hi := i+1, ops[i].ke.hi
		for j < len(ops) && !hi.less(ops[j].lo) {
			if hi.less(ops[j].ke.hi) {
				hi = ops[j].ke.hi
			}
			j++
		}
		cl := ops[i:j]
		slices.SortStableFunc(cl, func(a, b op) int {
			if a.add == b.add {
				return 0
			}
			if a.add {
				return 1
			}
			return -1
		})
		cw := 0
		for _, o := range cl {
			cw += o.weight()
		}
		if n > 0 && n+cw > s.chunk {
			if err := flush(); err != nil {
				return err
			}
		}
		for _, o := range cl { // a cluster larger than a batch is split
			if n > 0 && n+o.weight() > s.chunk {
				if err := flush(); err != nil {
					return err
				}
			}
			batch = append(batch, o)
			n += o.weight()
		}
		i = j
	}
	return flush()
}

// sendLocked sends ops as one transaction and updates the mirror.
func (s *Sync) sendLocked(f *family, ops []op) error {
	var del, add []nftables.SetElement
	for _, o := range ops {
		els := []nftables.SetElement{{Key: o.lo.key(f.v4), Timeout: o.tmo}}
		if o.ke.hasEnd {
			els = append(els, nftables.SetElement{Key: o.ke.hi.inc().key(f.v4), IntervalEnd: true})
		}
		if o.add {
			add = append(add, els...)
		} else {
			del = append(del, els...)
		}
	}
	// Deletions go first in the batch so an overlapping addition sees them.
	if len(del) > 0 {
		if err := s.conn.SetDeleteElements(f.set, del); err != nil {
			return fmt.Errorf("kernelbl: %s: %w", f.set.Name, err)
		}
	}
	if len(add) > 0 {
		if err := s.conn.SetAddElements(f.set, add); err != nil {
			return fmt.Errorf("kernelbl: %s: %w", f.set.Name, err)
		}
	}
	if err := s.conn.Flush(); err != nil {
		return fmt.Errorf("kernelbl: update set %s (%d deletions, %d additions): %w", f.set.Name, len(del), len(add), err)
	}
	for _, o := range ops {
		if o.add {
			f.kern[o.lo] = o.ke
		} else if k, ok := f.kern[o.lo]; ok && k == o.ke {
			delete(f.kern, o.lo)
		}
	}
	return nil
}

// fresh reports whether a kernel element expiring at kexp may stay for a
// range that should expire at want: both forever, or the kernel's remaining
// lifetime is at least half the wanted one and not longer than the wanted
// one plus the jitter allowance.
func (s *Sync) fresh(kexp, want, now int64) bool {
	if kexp == forever || want == forever {
		return kexp == want
	}
	k, w := kexp-now, want-now
	if k < w/2 {
		return false
	}
	return k <= w+int64(s.maxJitter(time.Duration(w)))+int64(2*time.Second)
}

func (s *Sync) maxJitter(d time.Duration) time.Duration {
	j := time.Duration(float64(d) * s.jitter)
	return min(j, time.Minute)
}

// timeout returns the kernel timeout for a range expiring at exp: none for
// forever, else the remaining time rounded up to whole milliseconds, at
// least one second, plus jitter.
func (s *Sync) timeout(exp int64, now time.Time) time.Duration {
	if exp == forever {
		return 0
	}
	d := time.Duration(exp - now.UnixNano())
	if j := s.maxJitter(d); j > 0 {
		d += rand.N(j + 1)
	}
	d = (d + time.Millisecond - 1).Truncate(time.Millisecond)
	return max(d, time.Second)
}
