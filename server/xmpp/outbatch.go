package xmpp

import (
	"context"
	"net"
	"sync"
	"time"
)

// outBatch gathers the sessions that a reader's stanzas gave output to,
// so that the output is written when the reader has worked through what
// the client sent in one go instead of once per stanza.
//
// A client that sends 16 messages in one TCP segment used to cost its
// peer 16 TLS records, 16 write system calls and 16 flusher goroutines;
// now it costs one of each. The delay is the time the reader takes for the
// rest of its buffered input, never a wait for more: the batch is let go
// before the reader reads the socket again or waits for a slow peer's
// space, and it is held through the reader's rate-limit waits for at most
// maxBatchHold.
type outBatch struct {
	mu       sync.Mutex
	open     bool
	sessions []*Session
	held     time.Duration // rate-limit waits of the reader while open
}

// maxBatchHold bounds how long a reader slowed by its read rate limit may
// hold its batch: a client sending at the limit waits a little before each
// stanza, and releasing before every wait would undo the batching exactly
// when the server is busiest.
const maxBatchHold = 5 * time.Millisecond

// maxBatchSessions bounds the sessions one batch defers. Past it the
// batch is let go at once: a room message gives one copy to each of
// hundreds of occupants, there is nothing to gather, and the copies
// deferred last would be written last.
const maxBatchSessions = 16

type outBatchKey struct{}

func withOutBatch(ctx context.Context) (context.Context, *outBatch) {
	b := &outBatch{}
	return context.WithValue(ctx, outBatchKey{}, b), b
}

func outBatchFrom(ctx context.Context) *outBatch {
	b, _ := ctx.Value(outBatchKey{}).(*outBatch)
	return b
}

// begin opens the batch: the reader has input to work through.
func (b *outBatch) begin() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.open = true
	b.mu.Unlock()
}

// add defers s's flush to the end of the batch. It reports false when the
// batch is not open (a goroutine that kept the reader's context, or the
// reader about to block): the caller flushes at once. full reports that
// the batch just reached maxBatchSessions and closed: the caller must
// release it once it holds no session lock.
func (b *outBatch) add(s *Session) (deferred, full bool) {
	if b == nil {
		return false, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return false, false
	}
	if len(b.sessions) >= maxBatchSessions {
		b.open = false
		return false, true
	}
	b.sessions = append(b.sessions, s)
	return true, false
}

// hold counts a rate-limit wait of d and reports whether the batch should
// be let go before it.
func (b *outBatch) hold(d time.Duration) bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held += d
	return b.held > maxBatchHold
}

// release closes the batch and starts the flushes it deferred.
func (b *outBatch) release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	sessions := b.sessions
	b.sessions = nil
	b.open = false
	b.held = 0
	b.mu.Unlock()
	for i, s := range sessions {
		s.flushDeferred()
		sessions[i] = nil
	}
	if cap(sessions) <= 64 {
		b.mu.Lock()
		if b.sessions == nil {
			b.sessions = sessions[:0]
		}
		b.mu.Unlock()
	}
}

// socketReads is the connection under TLS. Before each read from the
// socket it calls before: TLS reads the socket only once it has worked
// through every record it already holds, which is when a reader's output
// batch ends. Only the session's reader goroutine reads, so before needs
// no lock.
type socketReads struct {
	net.Conn
	before func()
}

func (r *socketReads) Read(b []byte) (int, error) {
	if r.before != nil {
		r.before()
	}
	return r.Conn.Read(b)
}
