package xmpp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// ErrSlowReader is the reason a session is dropped when its peer does not
// read what the server sends fast enough.
var ErrSlowReader = errors.New("peer is not reading; output buffer full")

// Session is one authenticated, bound client stream. Its methods are safe
// for concurrent use: any goroutine may Send to any session.
type Session struct {
	jid    jid.JID
	bare   string
	remote string
	conn   net.Conn
	raw    net.Conn // the TCP connection under conn, to hang up without TLS niceties
	limits *config.Limits

	writeMu sync.Mutex // serializes writes to conn: the flusher's and the final one

	mu        sync.Mutex
	pending   *bytes.Buffer // serialized stanzas waiting for the writer
	flushing  bool
	deferred  bool          // a reader's outBatch will start the flush
	held      bool          // output waits for release (see newSession)
	drained   chan struct{} // closed and replaced after every write
	closed    bool
	closeOnce sync.Once
	done      chan struct{}

	// Presence state, set by the presence module through SetPresence; the
	// core needs it to route messages to bare JIDs (RFC 6121 8.5.2).
	available bool
	priority  int
	presence  *elem.Element

	values map[any]any

	// filters is the router's outbound filter chain when the session was
	// bound; it is never modified afterwards.
	filters []outboundFilter

	// closeReason is what Close was first called with: a stream error
	// means the server ended the stream on purpose, so the session must
	// not wait for resumption.
	closeReason error
	// resumes is the session this one continues (stream resumption),
	// between negotiation and startSession.
	resumes  *Session
	resumeNS string // the namespace of the resume request
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// newSession returns a session whose output is held: what is sent queues
// up until release, so that the bind result can be queued first and the
// session registered with the router before the client can see it.
// OutboundFilter sees every element on its way to a client, in priority
// order, and returns false to hold it back (it may deliver it later with
// SendAfter) or drop it. Filters run on the sending goroutine, so they must
// be safe for concurrent use.
type OutboundFilter func(ctx context.Context, s *Session, el *elem.Element) bool

type outboundFilter struct {
	name     string
	priority int
	fn       OutboundFilter
}

func newSession(j jid.JID, conn net.Conn, limits *config.Limits) *Session {
	return &Session{jid: j, bare: j.Bare().String(), conn: conn, raw: conn, limits: limits, remote: conn.RemoteAddr().String(), done: make(chan struct{}), held: true}
}

// release lets held output flow.
func (s *Session) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = false
	if s.pending != nil && !s.flushing && !s.closed {
		s.flushing = true
		go s.flush()
	}
}

// JID is the session's full JID.
func (s *Session) JID() jid.JID { return s.jid }

// Bare is the session's bare JID as a string.
func (s *Session) Bare() string { return s.bare }

// Localpart is the account name.
func (s *Session) Localpart() string { return s.jid.Localpart() }

// RemoteAddr is the peer's address.
func (s *Session) RemoteAddr() string { return s.remote }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Available reports whether the session has sent available presence.
func (s *Session) Available() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.available
}

// Priority returns the priority from the last available presence.
func (s *Session) Priority() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.priority
}

// Presence returns the last broadcast presence (nil before the first).
func (s *Session) Presence() *elem.Element {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.presence
}

// SetPresence records the session's broadcast presence.
func (s *Session) SetPresence(p *elem.Element, available bool, priority int) {
	s.mu.Lock()
	s.presence, s.available, s.priority = p, available, priority
	s.mu.Unlock()
}

// Value returns a module's per-session value.
func (s *Session) Value(key any) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[key]
}

// SetValue stores a module's per-session value. Modules use unexported key
// types so they never see each other's state.
func (s *Session) SetValue(key, v any) {
	s.mu.Lock()
	if s.values == nil {
		s.values = make(map[any]any)
	}
	s.values[key] = v
	s.mu.Unlock()
}

// Send queues a stanza for the client. A writer goroutine exists only while
// there is something to write, so an idle session costs no goroutine beyond
// its reader.
//
// Backpressure: once a quarter of the output limit is queued, Send waits
// for the client to read, which slows whoever is sending to it (through
// their own reader) instead of dropping anything. A client that does not
// read for the write timeout, or lets the whole limit pile up, is
// disconnected; its unread stanzas are the only loss, as with any dead
// connection.
//
// When ctx is a stanza handler's, the write joins the handling reader's
// output batch (outBatch): it goes out once the reader has worked through
// what its client sent in one go.
func (s *Session) Send(ctx context.Context, el *elem.Element) error {
	return s.sendFrom(ctx, 0, el)
}

// SendAfter continues the delivery of an element that the outbound filter
// named stage held back (as client state indication does while a client is
// inactive): the filters after it still see the element.
func (s *Session) SendAfter(ctx context.Context, stage string, el *elem.Element) error {
	for i, f := range s.filters {
		if f.name == stage {
			return s.sendFrom(ctx, i+1, el)
		}
	}
	return s.sendFrom(ctx, len(s.filters), el)
}

func (s *Session) sendFrom(ctx context.Context, i int, el *elem.Element) error {
	for ; i < len(s.filters); i++ {
		if !s.filters[i].fn(ctx, s, el) {
			return nil
		}
	}
	return s.write(outBatchFrom(ctx), el)
}

// flushDeferred starts the flush an outBatch deferred.
func (s *Session) flushDeferred() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deferred = false
	if s.pending != nil && !s.flushing && !s.held && !s.closed {
		s.flushing = true
		go s.flush()
	}
}

// write queues serialized output for the connection. With a batch, the
// flush waits for the batch's end unless a quarter of the limit is queued.
func (s *Session) write(batch *outBatch, el *elem.Element) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	if s.pending == nil {
		s.pending = bufPool.Get().(*bytes.Buffer)
	}
	el.WriteTo(s.pending, elem.NSClient)
	n := s.pending.Len()
	if n > s.limits.MaxOutputBytes {
		s.mu.Unlock()
		s.Close(ErrSlowReader)
		return ErrSlowReader
	}
	small := n <= s.limits.MaxOutputBytes/4
	full := false
	if !s.flushing && !s.held && !s.deferred {
		var deferred bool
		if small {
			deferred, full = batch.add(s)
		}
		if deferred {
			s.deferred = true
		} else {
			s.flushing = true
			go s.flush()
		}
	}
	if small {
		s.mu.Unlock()
		if full {
			batch.release()
		}
		return nil
	}
	if s.deferred && !s.flushing && !s.held {
		// Another reader's batch holds this session's flush: start it
		// now rather than wait for that batch to end.
		s.flushing = true
		go s.flush()
	}
	if batch != nil {
		// The wait may be long: what the batch holds must not wait with it.
		s.mu.Unlock()
		batch.release()
		s.mu.Lock()
	}
	return s.waitForSpace()
}

// maxSenderWait bounds how long a sender waits for a slow reader.
const maxSenderWait = 5 * time.Second

// waitForSpace is called with s.mu held and returns with it released.
func (s *Session) waitForSpace() error {
	// The wait holds up whoever is sending, so it is short: a reader that
	// cannot take a quarter of its output limit within it is too slow to
	// keep, and others must not stall behind it.
	timer := time.NewTimer(min(s.limits.WriteTimeout.D(), maxSenderWait))
	defer timer.Stop()
	for {
		if s.closed {
			s.mu.Unlock()
			return net.ErrClosed
		}
		if s.pending == nil || s.pending.Len() <= s.limits.MaxOutputBytes/4 {
			s.mu.Unlock()
			return nil
		}
		if s.drained == nil {
			s.drained = make(chan struct{})
		}
		ch := s.drained
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.done:
			return net.ErrClosed
		case <-timer.C:
			s.Close(ErrSlowReader)
			return ErrSlowReader
		}
		s.mu.Lock()
	}
}

// signalDrained wakes senders waiting for space; s.mu must be held.
func (s *Session) signalDrained() {
	if s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
}

func (s *Session) flush() {
	for {
		s.mu.Lock()
		buf := s.pending
		s.pending = nil
		s.signalDrained()
		if buf == nil || s.closed {
			s.flushing = false
			s.mu.Unlock()
			putBuf(buf)
			return
		}
		s.mu.Unlock()
		s.writeMu.Lock()
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.limits.WriteTimeout.D()))
		_, err := s.conn.Write(buf.Bytes())
		if err == nil {
			// No deadline while idle: crypto/tls writes on its own too (a
			// KeyUpdate answer), and an expired deadline would break it.
			_ = s.conn.SetWriteDeadline(time.Time{})
		}
		s.writeMu.Unlock()
		putBuf(buf)
		if err != nil {
			s.mu.Lock()
			s.flushing = false
			s.signalDrained()
			s.mu.Unlock()
			s.Close(err)
			return
		}
	}
}

// putBuf recycles an output buffer unless a burst made it big: pooled
// buffers live on in every idle session's future, so memory stays flat
// only if the pool holds small ones.
func putBuf(b *bytes.Buffer) {
	if b == nil || b.Cap() > 64<<10 {
		return
	}
	b.Reset()
	bufPool.Put(b)
}

// Close ends the session: pending output is flushed (within the write
// timeout), the stream is closed and the connection shut. reason, if it
// is a *StreamError, is sent first. A peer dropped for not reading
// (ErrSlowReader, a write timeout) gets no flush: it would not read it.
func (s *Session) Close(reason error) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		buf := s.pending
		s.pending = nil
		s.closed = true
		s.closeReason = reason
		s.signalDrained()
		s.mu.Unlock()
		go s.finish(buf, reason)
	})
}

// finish writes the end of the stream and closes the connection. It holds
// writeMu, so the closing tag never overtakes stanzas the flusher is still
// writing.
func (s *Session) finish(buf *bytes.Buffer, reason error) {
	var ne net.Error
	slow := errors.Is(reason, ErrSlowReader) || errors.As(reason, &ne) && ne.Timeout()
	out := new(bytes.Buffer)
	if slow {
		putBuf(buf)
		reason = &StreamError{Condition: "policy-violation", Text: "the server's output to you was not being read"}
		// Cut short a flusher stuck writing to a peer that does not read;
		// looping covers a flusher that sets its own deadline just after.
		for !s.writeMu.TryLock() {
			_ = s.conn.SetWriteDeadline(time.Now())
			time.Sleep(5 * time.Millisecond)
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	} else {
		if buf != nil {
			out.Write(buf.Bytes())
			putBuf(buf)
		}
		s.writeMu.Lock()
		_ = s.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	}
	var se *StreamError
	if errors.As(reason, &se) {
		se.element().WriteTo(out, elem.NSClient)
	}
	out.WriteString("</stream:stream>")
	_, err := s.conn.Write(out.Bytes())
	if err == nil && !slow {
		closeWrite(s.conn)
	}
	s.writeMu.Unlock()
	if err == nil && !slow {
		// Give the peer a moment to close its side (RFC 6120 4.4).
		_ = s.conn.SetReadDeadline(time.Now().Add(time.Second))
		select {
		case <-s.done:
			// The reader is gone: swallow what the peer still sends (the
			// rest of an oversized stanza, say), or closing would reset
			// the connection before the peer has read why.
			_, _ = io.Copy(io.Discard, io.LimitReader(s.raw, 1<<20))
		case <-time.After(time.Second):
		}
	}
	// The raw connection, not the TLS one: tls.Conn.Close would try to send
	// close_notify and wait on a peer that is not reading.
	if slow {
		// Reset rather than close: the kernel would otherwise keep what is
		// still queued for a peer that does not read (megabytes, for
		// minutes) and trickle it out.
		if tc, ok := s.raw.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	s.raw.Close()
}

func (s *Session) markDone() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

// closedOnPurpose reports whether the server ended the stream with a
// stream error (conflict, shutdown, policy), as opposed to losing the
// connection.
func (s *Session) closedOnPurpose() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var se *StreamError
	return errors.As(s.closeReason, &se)
}

// inherit takes over the module values and presence of the session this one
// resumes, so that modules see one session continuing on a new connection.
func (s *Session) inherit(old *Session) {
	old.mu.Lock()
	values := make(map[any]any, len(old.values))
	for k, v := range old.values {
		values[k] = v
	}
	p, avail, prio := old.presence, old.available, old.priority
	old.mu.Unlock()
	s.mu.Lock()
	s.values = values
	s.presence, s.available, s.priority = p, avail, prio
	s.mu.Unlock()
}
