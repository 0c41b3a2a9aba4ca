package sippolicy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// failCounter is a MemoryCounter whose operations fail while fail is set.
type failCounter struct {
	*MemoryCounter
	fail atomic.Bool
}

var errBackend = errors.New("backend down")

func (f *failCounter) Acquire(keys []string, limits []int) (bool, int, error) {
	if f.fail.Load() {
		return false, 0, errBackend
	}
	return f.MemoryCounter.Acquire(keys, limits)
}

func (f *failCounter) Add(keys []string) error {
	if f.fail.Load() {
		return errBackend
	}
	return f.MemoryCounter.Add(keys)
}

func (f *failCounter) Release(keys []string) error {
	if f.fail.Load() {
		return errBackend
	}
	return f.MemoryCounter.Release(keys)
}

func (f *failCounter) Count(key string) (int, error) {
	if f.fail.Load() {
		return 0, errBackend
	}
	return f.MemoryCounter.Count(key)
}

// callsFixture is the test tenants (brand acme: 2 calls; acme-hq: 5,
// alice a roadwarrior with 1 call, bob with 3; acme-shop no limit; brand
// beta no limit) and a Calls over a MemoryCounter.
type callsFixture struct {
	t              *testing.T
	ts             *Tenants
	hq, shop, beta *Company
	ctr            *failCounter
	calls          *Calls
	next           int
}

func newCallsFixture(t *testing.T, cfg CallsConfig) *callsFixture {
	t.Helper()
	f := &callsFixture{t: t, ts: newTenants(t, testTenantsConfig()), ctr: &failCounter{MemoryCounter: NewMemoryCounter()}}
	f.hq, f.shop, f.beta = company(t, f.ts, "hq.acme.example"), company(t, f.ts, "shop.acme.example"), company(t, f.ts, "pbx.beta.example")
	var err error
	if f.calls, err = NewCalls(cfg, f.ctr); err != nil {
		t.Fatalf("NewCalls: %v", err)
	}
	return f
}

func (f *callsFixture) id() []byte {
	f.next++
	return fmt.Appendf(nil, "call-%d@192.0.2.1", f.next)
}

// invite sends a fresh INVITE and checks the verdict.
func (f *callsFixture) invite(call Call, take bool, want CallVerdict) []byte {
	f.t.Helper()
	id := f.id()
	f.inviteID(id, call, take, want)
	return id
}

func (f *callsFixture) inviteID(id []byte, call Call, take bool, want CallVerdict) {
	f.t.Helper()
	v, err := f.calls.Invite(t0, id, call, take)
	if err != nil || v != want {
		f.t.Fatalf("Invite %s: %v, %v; want %v", id, v, err, want)
	}
}

// counts returns the brand, company and roadwarrior counts of hq/alice.
func (f *callsFixture) counts(rw string) []int {
	f.t.Helper()
	keys := []string{"brand/acme", "company/acme-hq"}
	if rw != "" {
		keys = append(keys, "rw/acme-hq/"+rw)
	}
	out := make([]int, len(keys))
	for i, k := range keys {
		out[i], _ = f.ctr.MemoryCounter.Count(k)
	}
	return out
}

func (f *callsFixture) wantCounts(rw string, want ...int) {
	f.t.Helper()
	if got := f.counts(rw); !slices.Equal(got, want) {
		f.t.Fatalf("counts (brand, company, rw %q) %v, want %v", rw, got, want)
	}
}

func ext(co *Company) Call { return Call{Company: co, External: true} }

func rw(co *Company, user string) Call {
	return Call{Company: co, Roadwarrior: []byte(user), RoadwarriorLimit: co.Roadwarrior([]byte(user))}
}

func TestCallsConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  CallsConfig
		want []string
	}{
		{"zero means defaults", CallsConfig{}, nil},
		{"explicit", CallsConfig{MaxDuration: time.Hour, PendingTimeout: time.Minute, MaxCalls: 10}, nil},
		{"max duration too short", CallsConfig{MaxDuration: time.Second}, []string{"max_duration 1s"}},
		{"max duration too long", CallsConfig{MaxDuration: 31 * 24 * time.Hour}, []string{"max_duration 744h"}},
		{"pending negative", CallsConfig{PendingTimeout: -1}, []string{"pending_timeout -1ns"}},
		{"pending too long", CallsConfig{PendingTimeout: 2 * time.Hour}, []string{"pending_timeout 2h"}},
		{"max calls", CallsConfig{MaxCalls: -1}, []string{"max_calls -1"}},
		{"max calls too high", CallsConfig{MaxCalls: 1 << 25}, []string{"max_calls 33554432"}},
		{"every problem at once", CallsConfig{MaxDuration: -1, PendingTimeout: -1, MaxCalls: -1}, []string{"max_duration", "pending_timeout", "max_calls"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			c, nerr := NewCalls(tt.cfg, NewMemoryCounter())
			if (err == nil) != (nerr == nil) || (nerr == nil) != (c != nil) {
				t.Fatalf("Validate %v, NewCalls %v, %v: disagree", err, c, nerr)
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tt.want) {
				t.Errorf("%d problems, want %d: %v", n, len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := NewCalls(CallsConfig{}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("nil Counter: %v", err)
	}
}

func TestCallsLimits(t *testing.T) {
	t.Run("brand 2 company 5: the third external call is over the brand", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		f.invite(ext(f.hq), true, Admit)
		f.invite(ext(f.shop), true, Admit)
		f.invite(ext(f.hq), true, OverBrand)
		f.invite(ext(f.shop), false, OverBrand) // a bare INVITE is checked too
		f.wantCounts("", 2, 1)
		// Internal calls are tracked but not limited.
		for range 10 {
			f.invite(Call{Company: f.hq}, true, Admit)
		}
		f.wantCounts("", 2, 1)
		if f.calls.Len() != 12 {
			t.Fatalf("Len %d, want 12", f.calls.Len())
		}
	})
	t.Run("company limit under a larger brand limit", func(t *testing.T) {
		cfg := testTenantsConfig()
		cfg.Brands[0].MaxCalls = 10
		cfg.Brands[0].Companies[0].MaxCalls = 2
		f := newCallsFixture(t, CallsConfig{})
		f.ts = newTenants(t, cfg)
		hq, shop := company(t, f.ts, "hq.acme.example"), company(t, f.ts, "shop.acme.example")
		f.invite(ext(hq), true, Admit)
		f.invite(ext(hq), true, Admit)
		f.invite(ext(hq), true, OverCompany)
		f.invite(Call{Company: hq, External: true, Incoming: true}, true, OverCompany) // incoming counts too
		for range 8 {
			f.invite(ext(shop), true, Admit)
		}
		f.invite(ext(shop), true, OverBrand)
		f.invite(ext(hq), true, OverBrand) // brand first
		f.wantCounts("", 10, 2)
	})
	t.Run("0 means no limit, but counts", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		for range 500 {
			f.invite(ext(f.beta), true, Admit)
		}
		for k, want := range map[string]int{"brand/beta": 500, "company/beta-1": 500} {
			if n, _ := f.ctr.Count(k); n != want {
				t.Errorf("%s = %d, want %d", k, n, want)
			}
		}
	})
	t.Run("roadwarrior", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		a := f.invite(rw(f.hq, "alice"), true, Admit)
		f.invite(rw(f.hq, "alice"), true, OverRoadwarrior)
		f.invite(rw(f.hq, "alice"), false, OverRoadwarrior)
		f.wantCounts("alice", 0, 0, 1) // an internal call takes only the roadwarrior slot
		for range 3 {
			f.invite(rw(f.hq, "bob"), true, Admit)
		}
		f.invite(rw(f.hq, "bob"), true, OverRoadwarrior)
		f.invite(rw(f.hq, "carol"), true, OverRoadwarrior)                                 // not a roadwarrior: fail closed
		f.invite(Call{Company: f.hq, Roadwarrior: []byte("alice")}, true, OverRoadwarrior) // limit not given
		f.invite(Call{Company: f.hq, Roadwarrior: []byte(strings.Repeat("a", 129)), RoadwarriorLimit: 3}, true, OverRoadwarrior)
		// Incoming calls are not a roadwarrior's calls from outside.
		in := rw(f.hq, "alice")
		in.Incoming = true
		f.invite(in, true, Admit)
		f.wantCounts("alice", 0, 0, 1)
		// Ending alice's call frees her slot.
		f.calls.Ended(t0, a)
		f.wantCounts("alice", 0, 0, 0)
		f.invite(rw(f.hq, "alice"), true, Admit)
	})
	t.Run("external roadwarrior call: brand, company, roadwarrior in that order", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		call := rw(f.hq, "alice")
		call.External = true
		f.invite(call, true, Admit)
		f.wantCounts("alice", 1, 1, 1)
		f.invite(call, true, OverRoadwarrior)
		f.invite(ext(f.shop), true, Admit)
		f.invite(call, true, OverBrand)
		f.wantCounts("alice", 2, 1, 1)
	})
}

func TestCallsLifecycle(t *testing.T) {
	t.Run("failed after a 407 releases the pending slot", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		id := f.invite(ext(f.hq), true, Admit) // credentials, stale nonce
		f.wantCounts("", 1, 1)
		f.calls.Failed(t0, id) // 407
		f.wantCounts("", 0, 0)
		if f.calls.Len() != 0 {
			t.Fatal("failed call still tracked")
		}
		f.inviteID(id, ext(f.hq), true, Admit) // the retry
		f.wantCounts("", 1, 1)
	})
	t.Run("bare INVITE, 407, authenticated retry, answer, BYE", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		id := f.invite(ext(f.hq), false, Admit)
		f.wantCounts("", 0, 0)
		f.inviteID(id, ext(f.hq), false, Admit) // retransmission
		f.calls.Failed(t0, id)
		f.inviteID(id, ext(f.hq), true, Admit)
		f.inviteID(id, ext(f.hq), true, Admit) // retransmission: not twice
		f.wantCounts("", 1, 1)
		f.calls.Answered(t0, id)
		f.calls.Answered(t0, id) // 2xx retransmission
		f.wantCounts("", 1, 1)
		f.calls.Failed(t0, id) // a re-INVITE failed: the call stays
		f.wantCounts("", 1, 1)
		f.inviteID(id, ext(f.hq), true, Admit) // a stray INVITE: nothing taken
		f.wantCounts("", 1, 1)
		f.calls.Ended(t0, id)
		f.wantCounts("", 0, 0)
		f.calls.Ended(t0, id) // BYE retransmission
		f.wantCounts("", 0, 0)
		if f.calls.Len() != 0 {
			t.Fatal("ended call still tracked")
		}
	})
	t.Run("repeated INVITE with credentials takes once, even without a 407 in between", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		id := f.invite(ext(f.hq), false, Admit)
		f.inviteID(id, ext(f.hq), true, Admit)
		f.inviteID(id, ext(f.hq), true, Admit)
		f.wantCounts("", 1, 1)
	})
	t.Run("the authenticated retry is checked again", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		id := f.invite(ext(f.hq), false, Admit)
		f.invite(ext(f.hq), true, Admit)
		f.invite(ext(f.shop), true, Admit)
		f.inviteID(id, ext(f.hq), true, OverBrand)
		if f.calls.Len() != 2 {
			t.Fatalf("refused retry still tracked: Len %d", f.calls.Len())
		}
		f.wantCounts("", 2, 1)
	})
	t.Run("the retry's call replaces the bare INVITE's", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		id := f.invite(Call{Company: f.hq}, false, Admit)
		f.inviteID(id, rw(f.hq, "alice"), true, Admit)
		f.wantCounts("alice", 0, 0, 1)
		f.calls.Ended(t0, id)
		f.wantCounts("alice", 0, 0, 0)
	})
	t.Run("a bare INVITE answered without challenge takes its slots then", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		a := f.invite(ext(f.hq), false, Admit)
		b := f.invite(ext(f.hq), false, Admit)
		c := f.invite(ext(f.hq), false, Admit)
		f.calls.Answered(t0, a)
		f.calls.Answered(t0, b)
		f.calls.Answered(t0, c) // up: counted even over the limit
		f.wantCounts("", 3, 3)
		f.invite(ext(f.hq), false, OverBrand)
		f.calls.Ended(t0, a)
		f.calls.Ended(t0, b)
		f.wantCounts("", 1, 1)
		f.invite(ext(f.hq), true, Admit)
	})
	t.Run("CANCEL of a pending call", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		id := f.invite(ext(f.hq), true, Admit)
		f.calls.Ended(t0, id)
		f.wantCounts("", 0, 0)
	})
	t.Run("unknown Call-IDs are ignored", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		id := f.invite(ext(f.hq), true, Admit)
		for _, other := range [][]byte{nil, []byte("x"), append(id, 'x')} {
			f.calls.Answered(t0, other)
			f.calls.Failed(t0, other)
			f.calls.Ended(t0, other)
		}
		f.wantCounts("", 1, 1)
		if f.calls.Len() != 1 {
			t.Fatal("call lost")
		}
	})
	t.Run("a Call without a company is refused", func(t *testing.T) {
		f := newCallsFixture(t, CallsConfig{})
		for _, call := range []Call{{}, {Company: &Company{Name: "forged"}}} {
			if v, err := f.calls.Invite(t0, f.id(), call, true); err == nil || v == Admit {
				t.Fatalf("Invite(%+v) = %v, %v", call, v, err)
			}
		}
		if f.calls.Len() != 0 {
			t.Fatal("tracked")
		}
	})
}

func TestCallsExpire(t *testing.T) {
	f := newCallsFixture(t, CallsConfig{MaxDuration: time.Hour, PendingTimeout: time.Minute})
	pending := f.invite(ext(f.hq), true, Admit)
	bare := f.invite(Call{Company: f.beta}, false, Admit)
	up := f.invite(rw(f.hq, "alice"), true, Admit)
	f.calls.Answered(t0.Add(30*time.Second), up)
	f.wantCounts("alice", 1, 1, 1)
	if n := f.calls.Expire(t0.Add(time.Minute - 1)); n != 0 {
		t.Fatalf("Expire before the pending timeout: %d", n)
	}
	if n := f.calls.Expire(t0.Add(time.Minute)); n != 2 {
		t.Fatalf("Expire at the pending timeout: %d, want 2", n)
	}
	f.wantCounts("alice", 0, 0, 1)
	// The answered call is counted from its answer.
	if n := f.calls.Expire(t0.Add(30*time.Second + time.Hour - 1)); n != 0 {
		t.Fatalf("Expire before MaxDuration: %d", n)
	}
	if n := f.calls.Expire(t0.Add(30*time.Second + time.Hour)); n != 1 {
		t.Fatalf("Expire at MaxDuration: %d, want 1", n)
	}
	f.wantCounts("alice", 0, 0, 0)
	if f.calls.Len() != 0 || f.ctr.Len() != 0 {
		t.Fatalf("left: %d calls, %d counter keys", f.calls.Len(), f.ctr.Len())
	}
	// Late messages of expired calls change nothing.
	f.calls.Answered(t0, pending)
	f.calls.Ended(t0, bare)
	if f.calls.Len() != 0 || f.ctr.Len() != 0 {
		t.Fatal("expired calls came back")
	}
	// A clock that steps back expires nothing.
	f.invite(ext(f.hq), true, Admit)
	if n := f.calls.Expire(t0.Add(-time.Hour)); n != 0 {
		t.Fatalf("Expire in the past: %d", n)
	}
}

func TestCallsCounterErrors(t *testing.T) {
	f := newCallsFixture(t, CallsConfig{})
	held := f.invite(ext(f.hq), true, Admit)
	bare := f.invite(ext(f.hq), false, Admit)
	internal := f.invite(Call{Company: f.hq}, false, Admit)
	f.ctr.fail.Store(true)
	for _, take := range []bool{true, false} {
		v, err := f.calls.Invite(t0, f.id(), ext(f.hq), take)
		if !errors.Is(err, errBackend) || v != 0 {
			t.Fatalf("take %v: %v, %v; want the zero verdict and the Counter's error", take, v, err)
		}
	}
	// The authenticated retry of a bare INVITE fails closed and is forgotten.
	if v, err := f.calls.Invite(t0, bare, ext(f.hq), true); !errors.Is(err, errBackend) || v == Admit {
		t.Fatalf("retry: %v, %v", v, err)
	}
	// A call that needs no count does not need the Counter.
	f.invite(Call{Company: f.hq}, true, Admit)
	if f.calls.Len() != 3 {
		t.Fatalf("Len %d, want 3", f.calls.Len())
	}
	if f.calls.CounterErrors() != 0 {
		t.Fatal("Invite errors counted: they are returned")
	}
	f.calls.Ended(t0, held)        // Release fails
	f.calls.Answered(t0, internal) // no slots: no Counter call
	b2 := []byte("bare-2")
	f.ctr.fail.Store(false)
	f.inviteID(b2, ext(f.hq), false, Admit)
	f.ctr.fail.Store(true)
	f.calls.Answered(t0, b2) // Add fails
	if n := f.calls.CounterErrors(); n != 2 {
		t.Fatalf("CounterErrors %d, want 2", n)
	}
	f.ctr.fail.Store(false)
	// The count the failed Release left stays (nothing more can be done);
	// the call whose Add failed holds nothing, so its end releases nothing.
	f.wantCounts("", 1, 1)
	f.calls.Ended(t0, b2)
	f.wantCounts("", 1, 1)
}

// TestCallsSpoofedRoadwarrior: bare INVITEs anyone can forge in a
// roadwarrior's name do not use the roadwarrior's slot.
func TestCallsSpoofedRoadwarrior(t *testing.T) {
	f := newCallsFixture(t, CallsConfig{MaxCalls: 500})
	for range 1000 {
		f.invite(rw(f.hq, "alice"), false, Admit)
	}
	f.wantCounts("alice", 0, 0, 0)
	id := f.invite(rw(f.hq, "alice"), false, Admit) // alice's own call: challenged
	f.calls.Failed(t0, id)
	f.inviteID(id, rw(f.hq, "alice"), true, Admit) // and authenticated
	f.calls.Answered(t0, id)
	f.wantCounts("alice", 0, 0, 1)
	// With alice's real call up, her limit is reached: INVITEs in her name
	// from outside are refused before the PBX sees them.
	f.invite(rw(f.hq, "alice"), false, OverRoadwarrior)
	if f.calls.Len() > 500 {
		t.Fatalf("Len %d over MaxCalls", f.calls.Len())
	}
}

func TestCallsTableFull(t *testing.T) {
	f := newCallsFixture(t, CallsConfig{MaxCalls: 3})
	a := f.invite(ext(f.beta), true, Admit)
	b := f.invite(ext(f.beta), false, Admit)
	c := f.invite(Call{Company: f.beta}, false, Admit)
	// Full: a new call evicts the oldest bare INVITE (b), then c.
	d := f.invite(ext(f.beta), true, Admit)
	f.calls.Answered(t0, d)
	e := f.invite(ext(f.beta), false, Admit)
	if f.calls.Len() != 3 {
		t.Fatalf("Len %d, want 3", f.calls.Len())
	}
	f.calls.Answered(t0, b) // evicted: untracked
	f.calls.Answered(t0, c)
	if n, _ := f.ctr.Count("brand/beta"); n != 2 {
		t.Fatalf("brand/beta = %d, want 2 (a, d)", n)
	}
	// e is the only one that can go; a new taking call replaces it.
	g := f.invite(ext(f.beta), true, Admit)
	// Now every entry holds slots: fail closed.
	f.invite(ext(f.beta), true, TableFull)
	f.invite(Call{Company: f.beta}, false, TableFull)
	// Known Call-IDs still work when full.
	f.inviteID(a, ext(f.beta), true, Admit)
	f.calls.Answered(t0, e) // evicted
	if n, _ := f.ctr.Count("brand/beta"); n != 3 {
		t.Fatalf("brand/beta = %d, want 3 (a, d, g)", n)
	}
	f.calls.Ended(t0, g)
	f.invite(ext(f.beta), false, Admit)
}

func TestCallsActive(t *testing.T) {
	f := newCallsFixture(t, CallsConfig{})
	if got := f.calls.Active(); len(got) != 0 {
		t.Fatalf("empty table: %v", got)
	}
	a := f.invite(ext(f.hq), true, Admit)
	b := f.invite(ext(f.hq), false, Admit)
	f.invite(Call{Company: f.hq}, true, Admit)
	f.invite(ext(f.beta), true, Admit)
	f.invite(rw(f.shop, "nobody"), true, OverRoadwarrior)
	want := []CallCount{
		{Company: "acme-hq", Brand: "acme", Active: 3, External: 1},
		{Company: "beta-1", Brand: "beta", Active: 1, External: 1},
	}
	if got := f.calls.Active(); !slices.Equal(got, want) {
		t.Fatalf("Active %+v, want %+v", got, want)
	}
	f.calls.Answered(t0, b)
	want[0].External = 2
	if got := f.calls.Active(); !slices.Equal(got, want) {
		t.Fatalf("after answer: %+v, want %+v", got, want)
	}
	f.calls.Ended(t0, a)
	f.calls.Ended(t0, b)
	want[0].Active, want[0].External = 1, 0
	if got := f.calls.Active(); !slices.Equal(got, want) {
		t.Fatalf("after end: %+v, want %+v", got, want)
	}
	f.calls.Expire(t0.Add(time.Hour))
	if got := f.calls.Active(); len(got) != 0 {
		t.Fatalf("after expiry: %v", got)
	}
	// Calls of a company from a reloaded Tenants add up under its name.
	f.invite(ext(f.hq), true, Admit)
	f.invite(ext(company(t, newTenants(t, testTenantsConfig()), "hq.acme.example")), true, Admit)
	if got := f.calls.Active(); !slices.Equal(got, []CallCount{{Company: "acme-hq", Brand: "acme", Active: 2, External: 2}}) {
		t.Fatalf("after reload: %+v", got)
	}
}

func TestCallsConcurrent(t *testing.T) {
	const (
		workers = 8
		perW    = 400
	)
	f := newCallsFixture(t, CallsConfig{MaxCalls: 1000})
	var admitted, over atomic.Int64
	var maxBrand atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perW {
				id := fmt.Appendf(nil, "w%d-%d", w, i)
				call := ext(f.hq)
				if i%3 == 0 {
					call = rw(f.hq, "bob")
				}
				take := i%2 == 0
				v, err := f.calls.Invite(t0, id, call, take)
				if err != nil {
					t.Error(err)
					return
				}
				switch v {
				case Admit:
					admitted.Add(1)
				case TableFull:
					t.Error("table full")
				default:
					over.Add(1)
				}
				if n, _ := f.ctr.Count("brand/acme"); int64(n) > maxBrand.Load() {
					maxBrand.Store(int64(n)) // racy max, good enough: any value over 2 is a bug
				}
				if v == Admit && !take {
					f.calls.Invite(t0, id, call, true)
				}
				if i%5 == 0 {
					f.calls.Answered(t0, id)
				}
				f.calls.Active()
				if i%7 != 0 {
					f.calls.Ended(t0, id)
				}
			}
		})
	}
	wg.Wait()
	if maxBrand.Load() > 2 {
		t.Errorf("brand count reached %d, limit 2", maxBrand.Load())
	}
	if admitted.Load() == 0 || over.Load() == 0 {
		t.Errorf("admitted %d, over %d: the test did not contend", admitted.Load(), over.Load())
	}
	f.calls.Expire(t0.Add(24 * time.Hour))
	if f.calls.Len() != 0 || f.ctr.Len() != 0 || len(f.calls.Active()) != 0 {
		t.Fatalf("left: %d calls, %d counter keys, %v", f.calls.Len(), f.ctr.Len(), f.calls.Active())
	}
}

func TestCallsAllocs(t *testing.T) {
	f := newCallsFixture(t, CallsConfig{})
	id := f.invite(ext(f.hq), true, Admit)
	unknown := []byte("unknown@192.0.2.1")
	call := ext(f.hq)
	if n := testing.AllocsPerRun(1000, func() {
		f.calls.Answered(t0, unknown)
		f.calls.Failed(t0, unknown)
		f.calls.Ended(t0, unknown)
		f.calls.Invite(t0, id, call, true) // retransmission
		f.calls.Answered(t0, id)           // 2xx retransmission
		f.calls.Failed(t0, id)             // a failed re-INVITE
	}); n != 0 {
		t.Errorf("%v allocs per run", n)
	}
}

func BenchmarkCalls(b *testing.B) {
	ts := newTenants(b, testTenantsConfig())
	beta := company(b, ts, "pbx.beta.example")
	calls, err := NewCalls(CallsConfig{}, NewMemoryCounter())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("invite_answer_bye", func(b *testing.B) {
		id := make([]byte, 0, 32)
		for i := 0; b.Loop(); i++ {
			id = fmt.Appendf(id[:0], "bench-%d", i)
			calls.Invite(t0, id, Call{Company: beta, External: true}, true)
			calls.Answered(t0, id)
			calls.Ended(t0, id)
		}
	})
}
