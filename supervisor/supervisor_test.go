package supervisor

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type restart struct {
	name    string
	attempt int
	wait    time.Duration
	err     error
}

func recorder() (func(string, int, time.Duration, error), func() []restart) {
	var mu sync.Mutex
	var got []restart
	return func(name string, attempt int, wait time.Duration, err error) {
			mu.Lock()
			got = append(got, restart{name, attempt, wait, err})
			mu.Unlock()
		}, func() []restart {
			mu.Lock()
			defer mu.Unlock()
			return append([]restart(nil), got...)
		}
}

func TestRestartsWithExponentialBackoff(t *testing.T) {
	onRestart, restarts := recorder()
	sup := Supervisor{MinBackoff: 20 * time.Millisecond, MaxBackoff: 80 * time.Millisecond, StableAfter: time.Hour, OnRestart: onRestart}
	var runs atomic.Int32
	var starts []time.Time
	var mu sync.Mutex
	healthy := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		sup.Run(ctx, Service{Name: "flaky", Run: func(ctx context.Context) error {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			if runs.Add(1) <= 5 {
				return errors.New("boom")
			}
			close(healthy)
			<-ctx.Done()
			return nil
		}})
		close(done)
	}()
	select {
	case <-healthy:
	case <-time.After(5 * time.Second):
		t.Fatal("service never came back")
	}
	cancel()
	<-done

	got := restarts()
	want := []time.Duration{20, 40, 80, 80, 80}
	if len(got) != len(want) {
		t.Fatalf("restarts = %+v, want %d", got, len(want))
	}
	for i, r := range got {
		if r.name != "flaky" || r.attempt != i+1 || r.wait != want[i]*time.Millisecond || r.err == nil || r.err.Error() != "boom" {
			t.Errorf("restart %d = %+v, want attempt %d wait %v error boom", i, r, i+1, want[i]*time.Millisecond)
		}
	}
	// The waits really happen between runs.
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < want[i-1]*time.Millisecond {
			t.Errorf("run %d started %v after the previous one, want at least %v", i+1, gap, want[i-1]*time.Millisecond)
		}
	}
}

func TestPanicAndUnaskedReturnAreFailures(t *testing.T) {
	onRestart, restarts := recorder()
	sup := Supervisor{MinBackoff: time.Millisecond, OnRestart: onRestart}
	var n atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		sup.Run(ctx, Service{Name: "bad", Run: func(ctx context.Context) error {
			switch n.Add(1) {
			case 1:
				panic("kaboom")
			case 2:
				return nil // stopped although nobody asked
			}
			cancel()
			<-ctx.Done()
			return nil
		}})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("supervisor did not stop")
	}
	got := restarts()
	if len(got) != 2 {
		t.Fatalf("restarts = %+v, want 2", got)
	}
	if got[0].err == nil || !strings.Contains(got[0].err.Error(), "panic: kaboom") {
		t.Errorf("first failure = %v, want the panic", got[0].err)
	}
	if got[1].err == nil || !strings.Contains(got[1].err.Error(), "without being asked") {
		t.Errorf("second failure = %v, want an unasked return", got[1].err)
	}
}

func TestBackoffResetsAfterStableRun(t *testing.T) {
	onRestart, restarts := recorder()
	sup := Supervisor{MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Second, StableAfter: 50 * time.Millisecond, OnRestart: onRestart}
	var n atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		sup.Run(ctx, Service{Name: "s", Run: func(ctx context.Context) error {
			switch n.Add(1) {
			case 1, 2:
				return errors.New("quick failure")
			case 3:
				time.Sleep(80 * time.Millisecond) // longer than StableAfter
				return errors.New("late failure")
			}
			cancel()
			return nil
		}})
		close(done)
	}()
	<-done
	got := restarts()
	if len(got) != 3 {
		t.Fatalf("restarts = %+v, want 3", got)
	}
	if got[1].wait != 20*time.Millisecond || got[2].wait != 10*time.Millisecond || got[2].attempt != 1 {
		t.Errorf("waits = %v, %v (attempt %d), want 20ms then a reset to 10ms, attempt 1", got[1].wait, got[2].wait, got[2].attempt)
	}
}

func TestCleanStopWaitsForEveryService(t *testing.T) {
	var sup Supervisor
	ctx, cancel := context.WithCancel(context.Background())
	var stopped atomic.Int32
	started := make(chan struct{}, 3)
	svc := func(name string) Service {
		return Service{Name: name, Run: func(ctx context.Context) error {
			started <- struct{}{}
			<-ctx.Done()
			time.Sleep(30 * time.Millisecond) // a component that takes a moment to close
			stopped.Add(1)
			return nil
		}}
	}
	done := make(chan struct{})
	go func() { sup.Run(ctx, svc("a"), svc("b"), svc("c")); close(done) }()
	for range 3 {
		<-started
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if got := stopped.Load(); got != 3 {
		t.Fatalf("Run returned with %d of 3 services stopped", got)
	}
}

func TestStopDuringBackoff(t *testing.T) {
	sup := Supervisor{MinBackoff: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	failed := make(chan struct{})
	done := make(chan struct{})
	go func() {
		sup.Run(ctx, Service{Name: "x", Run: func(context.Context) error { close(failed); return errors.New("no") }})
		close(done)
	}()
	<-failed
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a pending restart kept the supervisor from stopping")
	}
}
