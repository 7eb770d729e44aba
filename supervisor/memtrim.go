package supervisor

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// memoryTrimmer returns memory to the OS once a burst of work is over.
//
// Go's collector lets the heap grow to twice what is live before it
// collects, and keeps that memory. After a wave of logins the garbage
// they left stays resident however quiet the server becomes: on a small
// VPS with thousands of idle sessions that was a third of hearth's RSS. A
// forced collection costs one GC cycle, so it runs only when allocation has
// gone quiet and the memory to gain is worth it, at most once per burst;
// under steady load the normal pacing is untouched.
//
// At the same moments, and once shortly after start-up, it drops the
// mappings of executable pages nothing is using (releaseFilePages).
type memoryTrimmer struct {
	every      time.Duration
	quietBytes uint64                // allocation per interval below which we call it quiet
	minGain    uint64                // do not bother for less than this
	quietTicks int                   // intervals of quiet before trimming
	release    func() (int64, error) // releaseFilePages outside tests
	log        *slog.Logger
}

var trimMetrics = []string{
	"/gc/heap/allocs:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
}

func (m memoryTrimmer) run(ctx context.Context) error {
	samples := make([]metrics.Sample, len(trimMetrics))
	for i, n := range trimMetrics {
		samples[i].Name = n
	}
	read := func() (allocs, objects, idle uint64) {
		metrics.Read(samples)
		v := func(i int) uint64 {
			if samples[i].Value.Kind() == metrics.KindUint64 {
				return samples[i].Value.Uint64()
			}
			return 0
		}
		return v(0), v(1), v(2) + v(3)
	}
	lastAllocs, _, _ := read()
	trimmed := true // nothing to give back at start
	pagesReleased := false
	quiet := 0
	t := time.NewTicker(m.every)
	defer t.Stop()
	for first := true; ; first = false {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// The listeners are open well within the first interval; the
		// init and start-up code that ran before then is not needed again.
		if first {
			m.releasePages()
			pagesReleased = true
		}
		allocs, objects, idle := read()
		delta := allocs - lastAllocs
		lastAllocs = allocs
		if delta >= m.quietBytes {
			trimmed, pagesReleased, quiet = false, false, 0 // a burst: trim once it is over
			continue
		}
		// Quiet for a few intervals in a row: sessions that just went idle
		// have had time to drop their parse state (the XMPP layer does
		// that about 3 s after a client's last stanza).
		if quiet++; quiet < m.quietTicks {
			continue
		}
		// objects includes garbage not yet collected; what a collection
		// frees is unknown until it runs, so judge by heap size overall.
		if !trimmed && objects+idle >= m.minGain {
			start := time.Now()
			debug.FreeOSMemory()
			_, after, _ := read()
			m.log.Debug("returned memory to the OS after a burst", "heap_before", objects, "heap_after", after, "took", time.Since(start))
		}
		trimmed = true
		// After the collection: it walks every goroutine's stack through
		// the binary's tables and would fault them straight back in.
		if !pagesReleased {
			m.releasePages()
			pagesReleased = true
		}
	}
}

func (m memoryTrimmer) releasePages() {
	n, err := m.release()
	if err != nil {
		// Only RSS accounting is at stake; say so once per attempt.
		m.log.Debug("could not release file pages", "err", err)
		return
	}
	m.log.Debug("released read-only file pages", "mapped_bytes", n)
}
