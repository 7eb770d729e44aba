package xmpp

import (
	"bytes"
	"errors"
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
	limits *config.Limits

	mu        sync.Mutex
	pending   *bytes.Buffer // serialized stanzas waiting for the writer
	flushing  bool
	closed    bool
	closeOnce sync.Once
	done      chan struct{}

	// Presence state, set by the presence module through SetPresence; the
	// core needs it to route messages to bare JIDs (RFC 6121 8.5.2).
	available bool
	priority  int
	presence  *elem.Element

	values map[any]any
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func newSession(j jid.JID, conn net.Conn, limits *config.Limits) *Session {
	return &Session{jid: j, bare: j.Bare().String(), conn: conn, limits: limits, remote: conn.RemoteAddr().String(), done: make(chan struct{})}
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

// Send queues a stanza for the client. It never blocks on the network: a
// writer goroutine exists only while there is something to write, so an idle
// session costs no goroutine beyond its reader. A client that lets more than
// the output limit pile up is disconnected.
func (s *Session) Send(el *elem.Element) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	if s.pending == nil {
		s.pending = bufPool.Get().(*bytes.Buffer)
	}
	el.WriteTo(s.pending, elem.NSClient)
	if s.pending.Len() > s.limits.MaxOutputBytes {
		s.mu.Unlock()
		s.Close(ErrSlowReader)
		return ErrSlowReader
	}
	if !s.flushing {
		s.flushing = true
		go s.flush()
	}
	s.mu.Unlock()
	return nil
}

func (s *Session) flush() {
	for {
		s.mu.Lock()
		buf := s.pending
		s.pending = nil
		if buf == nil || s.closed {
			s.flushing = false
			s.mu.Unlock()
			if buf != nil {
				buf.Reset()
				bufPool.Put(buf)
			}
			return
		}
		s.mu.Unlock()
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.limits.WriteTimeout.D()))
		_, err := s.conn.Write(buf.Bytes())
		buf.Reset()
		bufPool.Put(buf)
		if err != nil {
			s.mu.Lock()
			s.flushing = false
			s.mu.Unlock()
			s.Close(err)
			return
		}
	}
}

// Close ends the session: pending output is flushed (within the write
// timeout), the stream is closed and the connection shut. streamErr, if it
// is a *StreamError, is sent first.
func (s *Session) Close(reason error) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		buf := s.pending
		s.pending = nil
		s.closed = true
		flushing := s.flushing
		s.mu.Unlock()
		go func() {
			// Let an in-flight writer finish rather than interleave with it.
			for i := 0; flushing && i < 100; i++ {
				time.Sleep(10 * time.Millisecond)
				s.mu.Lock()
				flushing = s.flushing
				s.mu.Unlock()
			}
			out := new(bytes.Buffer)
			if buf != nil {
				out.Write(buf.Bytes())
			}
			var se *StreamError
			if errors.As(reason, &se) {
				se.element().WriteTo(out, elem.NSClient)
			}
			out.WriteString("</stream:stream>")
			_ = s.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = s.conn.Write(out.Bytes())
			closeWrite(s.conn)
			// Give the peer a moment to close its side (RFC 6120 4.4).
			_ = s.conn.SetReadDeadline(time.Now().Add(time.Second))
			select {
			case <-s.done:
			case <-time.After(time.Second):
			}
			s.conn.Close()
		}()
	})
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
