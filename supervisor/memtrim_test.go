package supervisor

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// The trimmer drops start-up code pages once after start and again each
// time a burst of work is over, not on every quiet tick.
func TestMemoryTrimmerReleasesCodeAfterStartAndAfterEachBurst(t *testing.T) {
	var releases atomic.Int32
	m := memoryTrimmer{
		every: 20 * time.Millisecond, quietTicks: 2, quietBytes: 1 << 20, minGain: 1 << 40,
		release: func() (int64, error) { releases.Add(1); return 4096, nil },
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor := func(n int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for releases.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d releases, want %d", releases.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(1)
	time.Sleep(10 * m.every) // quiet ticks alone release nothing more
	if n := releases.Load(); n != 1 {
		t.Fatalf("%d releases while quiet since start, want 1", n)
	}

	var keep [][]byte
	for range 8 { // a burst: well over quietBytes within one tick
		keep = append(keep, make([]byte, 1<<20))
	}
	_ = keep
	waitFor(2)
	time.Sleep(10 * m.every)
	if n := releases.Load(); n != 2 {
		t.Fatalf("%d releases after one burst, want 2", n)
	}
}
