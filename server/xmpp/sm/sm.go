// Package sm implements stream management (XEP-0198, urn:xmpp:sm:3): acks
// in both directions and resumption of a session whose connection was lost.
//
// Inbound, the server's h counts a client's stanza only once it is durable:
// routed, and every Stanza.HoldAck taken on it (an archive's group commit)
// released without error. Holds may finish out of order; h advances over
// the longest prefix of finished stanzas, so acks stay in stream order.
// When a held write fails, h stops before that stanza for the rest of the
// session (and its resumptions): h is a count, it cannot skip a stanza, and
// acking anything after it would ack the failed one too. The module that
// took the hold answers the sender with a stanza error (mam does); the
// client resends what is unacked when it next resumes or reconnects, so a
// failure costs duplicates, never a loss.
//
// Outbound, every stanza the session is sent is counted and kept, as the
// last outbound filter (after client state indication has held back what
// it holds), until the client acks it.
//
// Hibernation (XEP-0198 section 5): a resumable session whose connection is
// lost stays bound, like Prosody's mod_smacks: presence is not broadcast as
// unavailable and stanzas routed to it are queued, so that the client,
// resuming within the window, gets what was sent while its socket was dead
// and nobody sees it flap. When the window ends without resumption, when
// a session with unacked stanzas ends any other way (a clean close, no
// resumption asked, replaced by a new binding, server shutdown), its
// unacked messages go to offline storage (the "message/offline" event, as
// for an account with no available resource), never silently dropped.
// They are not routed again: they were checked by policy and archived
// when they first arrived, and routing would archive them twice. Other
// unacked stanzas (presence, IQs, errors, chat states) are discarded, as
// the XEP advises: they mean nothing to a later session.
package sm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// NS is the stream management namespace.
const NS = "urn:xmpp:sm:3"

const nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"

// Stage is the outbound filter's name. FilterPriority makes it the last
// stage: it must count exactly what is written to the connection.
const (
	Stage          = "sm"
	FilterPriority = -1 << 20
)

// Tuning.
const (
	// requestEvery unacked stanzas sent, the server asks for an ack.
	requestEvery = 5
	// requestAfter a stanza is sent unacked, the server asks for an ack.
	requestAfter = 30 * time.Second
	// maxQueue bounds what a hibernated session keeps; past it, the session
	// ends early and its messages go to offline storage.
	maxQueue = 1000
	// goneFor (plus the window) is how long an ended session's h is kept
	// for a late <resume/>.
	goneFor = time.Minute
)

type stateKey struct{}

// Module is stream management.
type Module struct {
	h *xmpp.Host

	mu        sync.Mutex
	resumable map[string]*state // by stream id (previd)
	// gone keeps, for goneFor after a session ended, its user and
	// inbound h, so that a late <resume/> learns which of its stanzas the
	// server handled (<failed h=.../>, XEP-0198 section 5).
	gone map[string]goneSession
}

type goneSession struct {
	user string
	h    uint32
}

// New returns the stream management module.
func New() *Module {
	return &Module{resumable: make(map[string]*state), gone: make(map[string]goneSession)}
}

// Name implements xmpp.Module.
func (m *Module) Name() string { return "sm" }

// window is the resumption window now configured; it is read when used so
// that a reload changes it for the next session that loses its connection.
func (m *Module) window() time.Duration {
	return m.h.Config().StreamManagement.ResumeWindow.D()
}

// Register implements xmpp.Module.
func (m *Module) Register(h *xmpp.Host) error {
	m.h = h
	h.AddStreamFeature(func(*xmpp.Session) *elem.Element { return elem.New(NS, "sm") })
	h.AddOutboundFilter(Stage, FilterPriority, m.filter)
	h.HandleResume(NS, m)
	h.Hook("nonza/"+NS, 0, m.nonza)
	h.Hook("stanza/handled", 0, m.handled)
	h.Hook("session/hibernate", 0, m.hibernate)
	h.Hook("session/closed", 100, m.ended)
	h.Hook("session/replaced", 0, m.ended)
	h.Hook("server/shutdown", 0, m.shutdown)
	return nil
}

// state is one logical session's stream management, shared by the
// sessions (connections) that continue it.
type state struct {
	id   string // empty when not resumable
	user string

	mu  sync.Mutex
	cur *xmpp.Session // the connection now carrying the session

	// Outbound.
	queue        []*elem.Element // sent, not acked; oldest first
	sent         uint32          // stanzas counted out, mod 2^32
	sinceRequest int
	requestTimer *time.Timer

	// Inbound.
	h       uint32     // acked, mod 2^32
	pending []*inbound // handled, not yet durable, in stream order
	failed  bool       // a durable write failed: h never moves again
	ackOwed bool       // an <r/> was answered while stanzas were pending

	hibernated bool // no connection: output is queued, not written
	resuming   bool // a new connection is taking over
	expired    bool // the window ended: no resumption
	ended      bool // unbound; the queue went to offline storage
	expiry     *time.Timer
	resumeH    uint32 // the client's h from its <resume/>
}

type inbound struct {
	done bool
	err  error
}

func stateOf(s *xmpp.Session) *state {
	if s == nil {
		return nil
	}
	st, _ := s.Value(stateKey{}).(*state)
	return st
}

// Sub subtracts counters modulo 2^32 (XEP-0198 section 4: h wraps).
func Sub(a, b uint32) uint32 { return a - b }

func fmtH(h uint32) string { return strconv.FormatUint(uint64(h), 10) }

func parseH(s string) (uint32, bool) {
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err == nil
}

func failed(cond string, h *uint32) *elem.Element {
	f := elem.New(NS, "failed")
	if h != nil {
		f.Set("h", fmtH(*h))
	}
	return f.Add(elem.New(nsStanzas, cond))
}

// nonza handles enable, r and a on a bound session.
func (m *Module) nonza(ctx context.Context, ev *xmpp.Event) bool {
	s := ev.Session
	el := ev.Stanza.El
	st := stateOf(s)
	switch el.Name.Local {
	case "enable":
		if st != nil {
			_ = s.Send(ctx, failed("unexpected-request", nil))
			return true
		}
		m.enable(ctx, s, el)
	case "r":
		if st == nil {
			_ = s.Send(ctx, failed("unexpected-request", nil))
			return true
		}
		st.mu.Lock()
		a := elem.New(NS, "a", "h", fmtH(st.h))
		st.ackOwed = len(st.pending) > 0
		_ = s.Send(ctx, a)
		st.mu.Unlock()
	case "a":
		if st == nil {
			return true
		}
		h, ok := parseH(el.Get("h"))
		if !ok {
			s.Close(&xmpp.StreamError{Condition: "undefined-condition", Text: "stream management: <a/> without a valid h"})
			return true
		}
		st.mu.Lock()
		err := st.ack(h)
		st.mu.Unlock()
		if err != nil {
			s.Close(err)
		}
	case "resume":
		_ = s.Send(ctx, failed("unexpected-request", nil))
	default:
		return false
	}
	return true
}

func (m *Module) enable(ctx context.Context, s *xmpp.Session, el *elem.Element) {
	st := &state{user: s.Localpart(), cur: s}
	resume := el.Get("resume") == "true" || el.Get("resume") == "1"
	enabled := elem.New(NS, "enabled")
	if window := m.window(); resume && window > 0 {
		st.id = randomID()
		enabled.Set("id", st.id)
		enabled.Set("resume", "true")
		enabled.Set("max", strconv.Itoa(int(window/time.Second)))
		m.mu.Lock()
		m.resumable[st.id] = st
		m.mu.Unlock()
	}
	// Counting starts after <enabled/>: a sender that sees the state waits
	// for the lock until <enabled/> is queued ahead of its stanza.
	st.mu.Lock()
	s.SetValue(stateKey{}, st)
	_ = s.Send(ctx, enabled)
	st.mu.Unlock()
}

// ack drops what the client acknowledges with h; st.mu is held.
func (st *state) ack(h uint32) error {
	acked := Sub(st.sent, uint32(len(st.queue)))
	n := Sub(h, acked)
	if n > uint32(len(st.queue)) {
		return &xmpp.StreamError{Condition: "undefined-condition",
			Text: "stream management: handled count too high (h=" + fmtH(h) + ", sent " + fmtH(st.sent) + ")"}
	}
	st.dropAcked(int(n))
	return nil
}

func (st *state) dropAcked(n int) {
	if n == 0 {
		return
	}
	clear(st.queue[:n])
	st.queue = st.queue[n:]
	if len(st.queue) == 0 {
		st.queue = nil
		if st.requestTimer != nil {
			st.requestTimer.Stop()
			st.requestTimer = nil
		}
	}
}

// filter counts and keeps every stanza sent to a session with stream
// management, writing it under the state's lock so that the queue's order
// is the order on the wire.
func (m *Module) filter(ctx context.Context, s *xmpp.Session, el *elem.Element) bool {
	st := stateOf(s)
	if st == nil || el.Name.Space != elem.NSClient {
		return true
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return true
	}
	// A copy: the sender may reuse its element after Send returns (the core
	// serializes it at once), and this one is read again on resumption.
	st.queue = append(st.queue, el.Copy())
	st.sent++
	if st.hibernated {
		if len(st.queue) > maxQueue && !st.resuming && !st.expired {
			st.expired = true
			go m.end(st)
		}
		return false
	}
	_ = st.cur.SendAfter(ctx, Stage, el)
	st.sinceRequest++
	switch {
	case st.sinceRequest >= requestEvery:
		st.request(ctx)
	case st.requestTimer == nil:
		st.requestTimer = time.AfterFunc(requestAfter, func() {
			st.mu.Lock()
			defer st.mu.Unlock()
			st.requestTimer = nil
			if len(st.queue) > 0 && !st.hibernated && !st.ended {
				st.request(ctx)
			}
		})
	}
	return false
}

// request asks the client for an ack; st.mu is held.
func (st *state) request(ctx context.Context) {
	st.sinceRequest = 0
	if st.requestTimer != nil {
		st.requestTimer.Stop()
		st.requestTimer = nil
	}
	_ = st.cur.SendAfter(ctx, Stage, elem.New(NS, "r"))
}

// handled counts an inbound stanza once it is durable.
func (m *Module) handled(_ context.Context, ev *xmpp.Event) bool {
	st := stateOf(ev.Session)
	if st == nil || ev.Stanza == nil {
		return false
	}
	done, errOf := ev.Stanza.Durable()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.failed {
		return false
	}
	if done == nil && len(st.pending) == 0 {
		st.h++
		return false
	}
	in := &inbound{done: done == nil}
	st.pending = append(st.pending, in)
	if done != nil {
		go func() {
			<-done
			err := errOf()
			st.mu.Lock()
			defer st.mu.Unlock()
			in.done, in.err = true, err
			m.advance(context.Background(), st) // the reader has moved on: write the ack now
		}()
	}
	return false
}

// advance counts the durable prefix of pending stanzas; st.mu is held.
func (m *Module) advance(ctx context.Context, st *state) {
	moved := false
	for len(st.pending) > 0 && st.pending[0].done && !st.failed {
		if err := st.pending[0].err; err != nil {
			m.h.Log.Warn("stream management: a stanza was not stored; h stops before it",
				"user", st.user, "h", st.h, "err", err)
			st.failed = true
			st.pending = nil
			break
		}
		st.pending[0] = nil
		st.pending = st.pending[1:]
		st.h++
		moved = true
	}
	if len(st.pending) == 0 {
		st.pending = nil
	}
	if moved && st.ackOwed && !st.hibernated && !st.ended {
		// The client asked while these were pending: tell it unasked.
		st.ackOwed = len(st.pending) > 0
		_ = st.cur.SendAfter(ctx, Stage, elem.New(NS, "a", "h", fmtH(st.h)))
	}
}

// hibernate keeps a resumable session bound when its connection is lost.
func (m *Module) hibernate(_ context.Context, ev *xmpp.Event) bool {
	st := stateOf(ev.Session)
	if st == nil || st.id == "" {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.cur != ev.Session || st.ended || st.expired {
		return false
	}
	st.hibernated = true
	if st.resuming {
		return true
	}
	if st.requestTimer != nil {
		st.requestTimer.Stop()
		st.requestTimer = nil
	}
	st.expiry = time.AfterFunc(m.window(), func() { m.expire(st) })
	return true
}

// expire ends a session that was not resumed within the window.
func (m *Module) expire(st *state) {
	st.mu.Lock()
	if !st.hibernated || st.resuming || st.expired || st.ended {
		st.mu.Unlock()
		return
	}
	st.expired = true
	st.mu.Unlock()
	m.end(st)
}

// end unbinds an expired session; "session/closed" then flushes it.
func (m *Module) end(st *state) {
	st.mu.Lock()
	cur := st.cur
	st.mu.Unlock()
	m.h.EndSession(context.Background(), cur)
}

// ended flushes a session that is over (closed, expired, replaced): its
// unacked messages go to offline storage.
func (m *Module) ended(ctx context.Context, ev *xmpp.Event) bool {
	st := stateOf(ev.Session)
	if st == nil {
		return false
	}
	st.mu.Lock()
	if st.cur != ev.Session || st.ended || st.resuming {
		st.mu.Unlock()
		return false
	}
	st.ended = true
	q := st.queue
	st.queue = nil
	h := st.h
	for _, t := range []*time.Timer{st.expiry, st.requestTimer} {
		if t != nil {
			t.Stop()
		}
	}
	st.mu.Unlock()
	if st.id != "" {
		m.mu.Lock()
		delete(m.resumable, st.id)
		m.gone[st.id] = goneSession{user: st.user, h: h}
		m.mu.Unlock()
		time.AfterFunc(m.window()+goneFor, func() {
			m.mu.Lock()
			delete(m.gone, st.id)
			m.mu.Unlock()
		})
	}
	m.toOffline(ctx, ev.Session, q)
	return false
}

// toOffline hands unacked messages to offline storage.
func (m *Module) toOffline(ctx context.Context, s *xmpp.Session, q []*elem.Element) {
	ctx = context.WithoutCancel(ctx)
	owner := s.JID().Bare()
	n := 0
	for _, el := range q {
		if !worthStoring(el) {
			continue
		}
		cp := el.Copy()
		from, err := xmpp.ParseJID(cp.Get("from"))
		if err != nil || from.Equal(jid.JID{}) {
			continue
		}
		cp.Set("to", owner.String())
		if !m.h.Fire(ctx, "message/offline", &xmpp.Event{Stanza: &xmpp.Stanza{El: cp, From: from, To: owner}}) {
			m.h.Log.Warn("stream management: no offline storage for an unacked message", "user", s.Localpart())
			continue
		}
		n++
	}
	if n > 0 {
		m.h.Log.Info("stream management: unacked messages sent to offline storage", "user", s.Localpart(), "count", n)
	}
}

// worthStoring: messages a person would miss, not errors, groupchat (the
// room has them) or headlines.
func worthStoring(el *elem.Element) bool {
	if el.Name.Local != "message" {
		return false
	}
	switch el.Get("type") {
	case "error", "groupchat", "headline":
		return false
	}
	return true
}

// shutdown ends hibernated sessions while the store is still open, so their
// messages reach offline storage.
func (m *Module) shutdown(context.Context, *xmpp.Event) bool {
	m.mu.Lock()
	var sts []*state
	for _, st := range m.resumable {
		sts = append(sts, st)
	}
	m.mu.Unlock()
	for _, st := range sts {
		st.mu.Lock()
		hib := st.hibernated && !st.resuming && !st.expired && !st.ended
		if hib {
			st.expired = true
		}
		st.mu.Unlock()
		if hib {
			m.end(st)
		}
	}
	return false
}

// Resume implements xmpp.Resumer: <resume previd h/> after authentication.
func (m *Module) Resume(_ context.Context, localpart string, el *elem.Element) (*xmpp.Session, *elem.Element) {
	if el.Name.Local != "resume" {
		// <enable/> before binding, say.
		return nil, failed("unexpected-request", nil)
	}
	h, ok := parseH(el.Get("h"))
	if !ok {
		return nil, failed("bad-request", nil)
	}
	m.mu.Lock()
	st := m.resumable[el.Get("previd")]
	g, wasGone := m.gone[el.Get("previd")]
	m.mu.Unlock()
	if st == nil || st.user != localpart {
		if wasGone && g.user == localpart {
			return nil, failed("item-not-found", &g.h)
		}
		return nil, failed("item-not-found", nil)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.expired || st.ended || st.resuming {
		h := st.h
		return nil, failed("item-not-found", &h)
	}
	if n := Sub(h, Sub(st.sent, uint32(len(st.queue)))); n > uint32(len(st.queue)) {
		sh := st.h
		return nil, failed("unexpected-request", &sh)
	}
	st.resuming = true
	// Until the new connection is in place, output is queued, not written
	// to the old one (which may not be known dead yet).
	st.hibernated = true
	st.resumeH = h
	if st.expiry != nil {
		st.expiry.Stop()
		st.expiry = nil
	}
	if st.requestTimer != nil {
		st.requestTimer.Stop()
		st.requestTimer = nil
	}
	return st.cur, nil
}

// Resumed implements xmpp.Resumer: the new connection carries the session;
// it gets <resumed/>, then what the client had not acked, in order.
func (m *Module) Resumed(ctx context.Context, old, s *xmpp.Session) {
	st := stateOf(s)
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	_ = st.ack(st.resumeH) // checked in Resume
	st.cur = s
	_ = s.SendAfter(ctx, Stage, elem.New(NS, "resumed", "previd", st.id, "h", fmtH(st.h)))
	for _, el := range st.queue {
		_ = s.SendAfter(ctx, Stage, el)
	}
	st.hibernated, st.resuming = false, false
	st.sinceRequest = len(st.queue)
	if len(st.queue) > 0 {
		st.request(ctx)
	}
	m.h.Log.Debug("stream management: resumed", "jid", s.JID().String(), "resent", len(st.queue))
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
