// Package message delivers messages to local accounts by the rules of RFC
// 6121 section 8.5.
package message

import (
	"context"

	"github.com/merveilles/hearth/server/xmpp"
)

// Module is the message delivery feature.
type Module struct {
	h *xmpp.Host
}

// New returns the message module.
func New() *Module { return &Module{} }

// Name implements xmpp.Module.
func (m *Module) Name() string { return "message" }

// Register implements xmpp.Module.
func (m *Module) Register(h *xmpp.Host) error {
	m.h = h
	h.Hook("message/bare", 0, m.toBare)
	h.Hook("message/self", 0, m.toBare)
	h.Hook("message/full", 0, m.toFull)
	return nil
}

// toBare delivers to the available resources with the highest non-negative
// priority (RFC 6121 8.5.2.1.1), or hands the message to offline storage.
func (m *Module) toBare(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	user := st.To.Localpart()
	if user == "" && st.Origin != nil {
		user = st.Origin.Localpart()
	}
	typ := st.Type()
	sessions := m.h.Sessions(user)
	if len(sessions) == 0 && !m.h.AccountExists(ctx, user) {
		// RFC 6121 8.5.1: no such account.
		if typ != "error" && typ != "headline" && typ != "groupchat" {
			m.h.Bounce(ctx, st, xmpp.ErrServiceUnavailable())
		}
		return true
	}
	if typ == "groupchat" {
		m.h.Bounce(ctx, st, xmpp.ErrServiceUnavailable())
		return true
	}
	best := -1
	var targets []*xmpp.Session
	for _, s := range sessions {
		if !s.Available() {
			continue
		}
		p := s.Priority()
		if p < 0 {
			continue
		}
		if typ == "headline" {
			// Headlines go to every non-negative resource (8.5.2.1.2).
			targets = append(targets, s)
			continue
		}
		switch {
		case p > best:
			best, targets = p, append(targets[:0], s)
		case p == best:
			targets = append(targets, s)
		}
	}
	if len(targets) > 0 {
		for _, s := range targets {
			_ = s.Send(ctx, st.El)
		}
		m.delivered(ctx, st, targets[0])
		return true
	}
	switch typ {
	case "headline", "error":
		return true
	}
	if !m.h.Fire(ctx, "message/offline", ev) {
		m.h.Bounce(ctx, st, xmpp.ErrServiceUnavailable())
	}
	return true
}

// toFull delivers to one resource, falling back to bare-JID rules for chat
// and normal messages when it is gone (RFC 6121 8.5.3.2).
func (m *Module) toFull(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	if s := m.h.Session(st.To); s != nil {
		_ = s.Send(ctx, st.El)
		m.delivered(ctx, st, s)
		return true
	}
	switch st.Type() {
	case "groupchat":
		m.h.Bounce(ctx, st, xmpp.ErrServiceUnavailable())
		return true
	case "headline", "error":
		return true
	}
	bare := *st
	bare.To = st.To.Bare()
	return m.toBare(ctx, &xmpp.Event{Stanza: &bare, Session: ev.Session})
}

// delivered fires "message/delivered" once a message has been handed to
// local sessions, for modules that react to delivery (carbons). ev.Session
// is a resource that received it; when ev.Stanza.To is a bare JID, every
// available resource with that resource's (non-negative) priority received
// it too, except for headlines, which went to every non-negative resource.
func (m *Module) delivered(ctx context.Context, st *xmpp.Stanza, s *xmpp.Session) {
	m.h.Fire(ctx, "message/delivered", &xmpp.Event{Stanza: st, Session: s})
}
