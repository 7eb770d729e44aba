package xmpp

import (
	"context"
	"errors"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/xmpp/elem"
)

// runSession registers a bound session with the router and reads its
// stanzas until the stream ends.
func (s *Server) runSession(ctx context.Context, c *conn, sess *Session) {
	// The auth deadline ends here; from now on the session's writer sets
	// write deadlines, and nothing is being written yet (output is held).
	_ = c.netConn.SetDeadline(time.Time{})
	if old := s.router.bind(sess); old != nil {
		// RFC 6120 7.7.2.2: the newer session wins; the old one is told why.
		old.Close(&StreamError{Condition: "conflict", Text: "replaced by a new connection with the same resource"})
	}
	// Only now may the queued bind result reach the client: a client that
	// knows its JID can be sent to, so the router must know it first.
	sess.release()
	s.log.Debug("session bound", "jid", sess.JID().String(), "remote", sess.RemoteAddr())
	s.router.Fire(ctx, "session/bound", &Event{Session: sess})

	err := s.readLoop(ctx, c, sess)

	if s.router.unbind(sess) {
		s.router.Fire(ctx, "session/closed", &Event{Session: sess})
	}
	rerr := readError(err)
	var se *StreamError
	if errors.As(rerr, &se) {
		sess.Close(se)
	} else {
		sess.Close(nil)
	}
	sess.markDone()
	s.log.Debug("session ended", "jid", sess.JID().String(), "reason", err)
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
	for {
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
		if err := s.handleStanza(ctx, sess, e); err != nil {
			return err
		}
	}
}

func (s *Server) handleStanza(ctx context.Context, sess *Session, e *elem.Element) error {
	// RFC 6120 8.1.2.1: the server stamps 'from'; a client may only name
	// itself.
	if f := e.Get("from"); f != "" {
		fj, err := jid.Parse(f)
		if err != nil || !(fj.Equal(sess.JID()) || fj.Equal(sess.JID().Bare())) {
			return &StreamError{Condition: "invalid-from", Text: "a client may only send as itself"}
		}
	}
	e.Set("from", sess.JID().String())
	to, err := ParseJID(e.Get("to"))
	st := &Stanza{El: e, From: sess.JID(), To: to, Origin: sess}
	if err != nil {
		s.router.Bounce(ctx, st, &StanzaError{Type: "modify", Condition: "jid-malformed", Text: "the 'to' address is not a valid JID"})
		return nil
	}
	if e.Name.Local == "iq" && e.Child(NSSession, "session") != nil && e.Get("type") == "set" {
		// Session establishment (RFC 3921) is a no-op kept for old clients.
		_ = sess.Send(ResultReply(e, nil).Set("from", ""))
		return nil
	}
	s.router.FromClient(ctx, st)
	return nil
}
