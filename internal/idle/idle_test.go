package idle

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs a Gate and stops it at the end of the test.
func start(t *testing.T) *Gate {
	t.Helper()
	g, err := New()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(context.Background()) }()
	t.Cleanup(func() {
		g.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("Run = %v, want ErrClosed", err)
		}
	})
	return g
}

// TestIdleLetsAllGoInOrder: on an idle process every waiter is let go, in
// the order they came (one scheduler thread, so that both orders can be
// observed).
func TestIdleLetsAllGoInOrder(t *testing.T) {
	g := start(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !g.Wait(ctx) {
		t.Fatal("a lone waiter was not let go")
	}
	var (
		mu         sync.Mutex
		came, went []int
		wg         sync.WaitGroup
	)
	const n = 50
	for i := range n {
		wg.Go(func() {
			mu.Lock()
			came = append(came, i)
			mu.Unlock()
			if g.Wait(ctx) {
				mu.Lock()
				went = append(went, i)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(went) != n {
		t.Fatalf("%d of %d waiters let go", len(went), n)
	}
	if !slices.Equal(came, went) {
		t.Errorf("came in the order %v, let go in the order %v", came, went)
	}
	if w := g.Waiting(); w != 0 {
		t.Errorf("Waiting = %d after all went", w)
	}
}

// TestQueuedWorkFirst: with one scheduler thread, goroutines that were
// runnable when Wait was called all run before the waiter is let go; an
// ordinary hand-off over a channel would have run the waiter next.
func TestQueuedWorkFirst(t *testing.T) {
	g := start(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for round := range 5 {
		time.Sleep(2 * time.Millisecond) // the scheduler idles and polls: a fresh start
		const n = 100
		var ran [n]atomic.Bool
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { ran[i].Store(true) })
		}
		if !g.Wait(ctx) {
			t.Fatal("waiter not let go")
		}
		missed := 0
		for i := range n {
			if !ran[i].Load() {
				missed++
			}
		}
		wg.Wait()
		if missed > 0 {
			t.Fatalf("round %d: let go while %d of %d queued goroutines had not run", round, missed, n)
		}
	}
}

// TestCancelledWaiterIsSkipped: a waiter whose context ends gets false and
// costs the others nothing: the next one is let go.
func TestCancelledWaiterIsSkipped(t *testing.T) {
	g, err := New() // not running: nobody is let go until Run starts
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if g.Wait(ctx) {
		t.Fatal("let go without Run")
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(context.Background()) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if !g.Wait(wctx) {
		t.Error("the waiter after a cancelled one was not let go")
	}
	g.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Run = %v", err)
	}
}

// TestClose: Close lets the waiters go with false, later waits return false
// at once, Run returns, and a second Run or Close is harmless.
func TestClose(t *testing.T) {
	g, err := New()
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan bool, 3)
	for range 3 {
		go func() { res <- g.Wait(context.Background()) }()
	}
	for g.Waiting() < 3 {
		runtime.Gosched()
	}
	g.Close()
	for range 3 {
		if <-res {
			t.Error("a waiter got true from a closed gate")
		}
	}
	if g.Wait(context.Background()) {
		t.Error("Wait after Close = true")
	}
	if err := g.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v", err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestRunEndsWithContext: Run returns ctx's error when it ends and the
// gate is closed.
func TestRunEndsWithContext(t *testing.T) {
	g, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if g.Wait(context.Background()) {
		t.Error("Wait after Run ended = true")
	}
}

// BenchmarkWaitIdle is the cost of one Wait on an idle process: a pipe
// write, a poller wake-up and a pipe read.
func BenchmarkWaitIdle(b *testing.B) {
	g, err := New()
	if err != nil {
		b.Fatal(err)
	}
	go g.Run(context.Background())
	defer g.Close()
	ctx := context.Background()
	for b.Loop() {
		if !g.Wait(ctx) {
			b.Fatal("not let go")
		}
	}
}
