package xmpp

import (
	"context"
	"errors"
	"net"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/xmpp/elem"
)

// startSession registers a bound session with the router.
func (s *Server) startSession(ctx context.Context, c *conn, sess *Session) {
	// The auth deadline ends here; from now on the session's writer sets
	// write deadlines, and nothing is being written yet (output is held).
	_ = c.netConn.SetDeadline(time.Time{})
	if prev := sess.resumes; prev != nil {
		s.resumeSession(ctx, prev, sess)
		return
	}
	if old := s.router.bind(sess); old != nil {
		// RFC 6120 7.7.2.2: the newer session wins; the old one is told why.
		old.Close(&StreamError{Condition: "conflict", Text: "replaced by a new connection with the same resource"})
		s.router.Fire(ctx, "session/replaced", &Event{Session: old})
	}
	// Only now may the queued bind result reach the client: a client that
	// knows its JID can be sent to, so the router must know it first.
	sess.release()
	s.log.Debug("session bound", "jid", sess.JID().String(), "remote", sess.RemoteAddr())
	s.router.Fire(ctx, "session/bound", &Event{Session: sess})
}

// resumeSession puts sess in the place of prev, the session it continues:
// same JID, module values and presence; prev's connection, if the server
// has not noticed it is gone, is closed.
func (s *Server) resumeSession(ctx context.Context, prev, sess *Session) {
	sess.resumes = nil
	sess.inherit(prev)
	if old := s.router.bind(sess); old != nil && old != prev {
		old.Close(&StreamError{Condition: "conflict", Text: "replaced by a resumed session with the same resource"})
		s.router.Fire(ctx, "session/replaced", &Event{Session: old})
	}
	prev.Close(&StreamError{Condition: "conflict", Text: "the session was resumed on another connection"})
	if r := s.router.resumer(sess.resumeNS); r != nil {
		r.Resumed(ctx, prev, sess)
	}
	sess.release()
	s.log.Debug("session resumed", "jid", sess.JID().String(), "remote", sess.RemoteAddr())
	s.router.Fire(ctx, "session/resumed", &Event{Session: sess})
}

// endSession closes the stream, then tells the modules: their work (a
// last-activity write, presence broadcasts) must not delay the client's
// </stream:stream>.
func (s *Server) endSession(ctx context.Context, sess *Session, err error) {
	rerr := readError(err)
	var se *StreamError
	if s.mayHibernate(sess, err, rerr) && s.router.Fire(ctx, "session/hibernate", &Event{Session: sess}) {
		// Still bound: a module keeps it for resumption and ends it with
		// Host.EndSession.
		sess.Close(nil)
		sess.markDone()
		s.log.Debug("session hibernated", "jid", sess.JID().String(), "reason", err)
		return
	}
	unbound := s.router.unbind(sess)
	if errors.As(rerr, &se) {
		sess.Close(se)
	} else {
		sess.Close(nil)
	}
	if unbound {
		s.router.Fire(ctx, "session/closed", &Event{Session: sess})
	}
	sess.markDone()
	s.log.Debug("session ended", "jid", sess.JID().String(), "reason", err)
}

// mayHibernate reports whether a session ended by losing its connection,
// rather than by a clean close from either side, and is still the one bound
// to its JID: only such a session may wait to be resumed.
func (s *Server) mayHibernate(sess *Session, err, rerr error) bool {
	var se *StreamError
	if errors.As(rerr, &se) || errors.Is(err, elem.ErrStreamClosed) || sess.closedOnPurpose() {
		return false
	}
	return s.router.bound(sess)
}

// rateLimiter is a token bucket over bytes read.
type rateLimiter struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newRateLimiter(perSecond, burst int) rateLimiter {
	return rateLimiter{rate: float64(perSecond), burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

// take spends n bytes and returns how long to wait before reading on.
func (r *rateLimiter) take(n int) time.Duration {
	if r.rate <= 0 {
		return 0
	}
	now := time.Now()
	r.tokens += now.Sub(r.last).Seconds() * r.rate
	if r.tokens > r.burst {
		r.tokens = r.burst
	}
	r.last = now
	r.tokens -= float64(n)
	if r.tokens >= 0 {
		return 0
	}
	return time.Duration(-r.tokens / r.rate * float64(time.Second))
}

func (s *Server) readLoop(ctx context.Context, c *conn, sess *Session) error {
	// A wait for the rate limit is not cut short when the session is
	// closed: it lasts at most one stanza's worth, and a goroutine per
	// session to watch for it would cost more than it saves.
	var batch *outBatch
	if c.tlsRaw != nil {
		ctx, batch = withOutBatch(ctx)
		c.tlsRaw.before = batch.release
		c.batch = batch
		defer batch.release()
	}
	for {
		if err := c.waitIdle(); err != nil {
			return err
		}
		e, err := c.readElement(ctx)
		if err != nil {
			return err
		}
		if e.Name.Space != elem.NSClient {
			// Non-stanza elements (e.g. stream management) belong to modules.
			if s.router.Fire(ctx, "nonza/"+e.Name.Space, &Event{Session: sess, Stanza: &Stanza{El: e, Origin: sess}}) {
				continue
			}
			return &StreamError{Condition: "unsupported-stanza-type", Text: "unexpected element " + e.Name.Local + " in " + e.Name.Space}
		}
		switch e.Name.Local {
		case "message", "presence", "iq":
		default:
			return &StreamError{Condition: "unsupported-stanza-type", Text: "unexpected element " + e.Name.Local}
		}
		batch.begin() // after any wait of readElement's, which let the batch go
		st, err := s.handleStanza(ctx, sess, e)
		if err != nil {
			return err
		}
		s.router.Fire(ctx, "stanza/handled", &Event{Session: sess, Stanza: st})
	}
}

func (s *Server) handleStanza(ctx context.Context, sess *Session, e *elem.Element) (*Stanza, error) {
	// RFC 6120 8.1.2.1: the server stamps 'from'; a client may only name
	// itself.
	if f := e.Get("from"); f != "" {
		fj, err := jid.Parse(f)
		if err != nil || !(fj.Equal(sess.JID()) || fj.Equal(sess.JID().Bare())) {
			return nil, &StreamError{Condition: "invalid-from", Text: "a client may only send as itself"}
		}
	}
	e.Set("from", sess.JID().String())
	to, err := ParseJID(e.Get("to"))
	st := &Stanza{El: e, From: sess.JID(), To: to, Origin: sess}
	if err != nil {
		s.router.Bounce(ctx, st, &StanzaError{Type: "modify", Condition: "jid-malformed", Text: "the 'to' address is not a valid JID"})
		return st, nil
	}
	if e.Name.Local == "iq" && e.Child(NSSession, "session") != nil && e.Get("type") == "set" {
		// Session establishment (RFC 3921) is a no-op kept for old clients.
		_ = sess.Send(ctx, ResultReply(e, nil).Set("from", ""))
		return st, nil
	}
	s.router.FromClient(ctx, st)
	return st, nil
}

// waitIdle returns once the client has sent something. Between stanzas
// with nothing buffered it reads normally for a moment, then parks on the
// raw socket on a shallow stack, and after a while drops its decoder.
func (c *conn) waitIdle() error {
	if c.br.Buffered() > 0 {
		return nil
	}
	// A client in a conversation usually sends again soon: wait a moment
	// in the ordinary read, which costs no extra system calls. (A timeout
	// does not poison the TLS connection.)
	_ = c.netConn.SetReadDeadline(time.Now().Add(activeWait))
	err := c.br.Peek1()
	_ = c.netConn.SetReadDeadline(time.Time{})
	if err == nil {
		return nil
	}
	if !isTimeout(err) {
		return err
	}
	// Park on the raw socket. After a quiet spell the session also drops
	// its XML decoder (about 2 KiB with its buffers and namespace stack);
	// most sessions are idle most of the time.
	_ = c.raw.SetReadDeadline(time.Now().Add(hibernateAfter))
	err = waitReadable(c.raw)
	_ = c.raw.SetReadDeadline(time.Time{})
	if err == nil || !isTimeout(err) {
		return err
	}
	c.dec = nil
	if err := waitReadable(c.raw); err != nil {
		return err
	}
	return c.wake()
}

// activeWait is how long a session waits for more input in the ordinary,
// deep read before parking on a shallow stack.
const activeWait = time.Second

// hibernateAfter is how long a session waits with nothing to read before it
// drops its decoder.
const hibernateAfter = 2 * time.Second

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// wake rebuilds the decoder of a hibernated session, in the namespace
// context of the stream it is continuing.
func (c *conn) wake() error {
	dec := elem.NewDecoder(&prefixReader{prefix: c.streamOpen, r: c.br}, c.limits())
	if _, err := dec.ReadHeader(); err != nil {
		return err
	}
	c.dec = dec
	return nil
}

// prefixReader yields prefix, then what r has.
type prefixReader struct {
	prefix string
	i      int
	r      *pooledReader
}

func (p *prefixReader) ReadByte() (byte, error) {
	if p.i < len(p.prefix) {
		b := p.prefix[p.i]
		p.i++
		return b, nil
	}
	return p.r.ReadByte()
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c, err := p.ReadByte()
	if err != nil {
		return 0, err
	}
	b[0] = c
	return 1, nil
}
