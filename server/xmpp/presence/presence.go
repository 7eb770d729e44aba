// Package presence implements presence and subscriptions (RFC 6121
// sections 3 and 4): broadcast, probes, directed presence and the
// subscription state machine, with a cap on pending requests.
package presence

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Module is the presence feature.
type Module struct {
	h *xmpp.Host
}

// New returns the presence module.
func New() *Module { return &Module{} }

// Name implements xmpp.Module.
func (m *Module) Name() string { return "presence" }

type directedKey struct{}

// directed remembers who got directed presence from a session, so they are
// told when it goes offline (RFC 6121 4.6.3).
type directed map[string]bool

// Register implements xmpp.Module.
func (m *Module) Register(h *xmpp.Host) error {
	m.h = h
	h.Hook("stanza/outgoing", 0, m.outgoing)
	h.Hook("presence/self", 0, m.self)
	h.Hook("presence/bare", 0, m.inboundBare)
	h.Hook("presence/full", 0, m.inboundFull)
	h.Hook("presence/host", 0, func(context.Context, *xmpp.Event) bool { return true })
	h.Hook("session/closed", 0, m.closed)
	return nil
}

func presenceEl(from, to, typ string) *elem.Element {
	return elem.New(elem.NSClient, "presence", "from", from, "to", to, "type", typ)
}

// outgoing handles presence a local client addresses to someone else.
func (m *Module) outgoing(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	if st.Kind() != "presence" || st.To.Equal(jid.JID{}) || st.To.Equal(st.From.Bare()) {
		return false
	}
	switch st.Type() {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		m.outboundSubscription(ctx, st)
		return true
	case "probe":
		return true // only servers probe
	case "", "unavailable":
		d, _ := st.Origin.Value(directedKey{}).(directed)
		if st.Type() == "" {
			if d == nil {
				d = directed{}
				st.Origin.SetValue(directedKey{}, d)
			}
			if len(d) < 1000 {
				d[st.To.String()] = true
			}
		} else if d != nil {
			delete(d, st.To.String())
		}
	}
	return false
}

func (m *Module) update(ctx context.Context, user string, contact jid.JID, fn func(it *store.RosterItem) (bool, bool, error)) (store.RosterItem, bool) {
	var out store.RosterItem
	changed := false
	ver, err := m.h.Store.UpdateRosterItem(ctx, user, contact.Bare().String(), func(it *store.RosterItem) (bool, bool, error) {
		keep, ch, err := fn(it)
		out, changed = *it, ch
		if !keep {
			out.Subscription = "remove"
		}
		return keep, ch, err
	})
	if err != nil {
		m.h.Log.Error("roster update failed", "user", user, "contact", contact.String(), "err", err)
		return out, false
	}
	if changed && (out.InRoster || out.Subscription == "remove") {
		m.push(ctx, user, ver, out)
	}
	return out, changed
}

// push announces a changed item; the roster module delivers it.
func (m *Module) push(ctx context.Context, user string, ver uint64, it store.RosterItem) {
	const ns = "jabber:iq:roster"
	q := elem.New(ns, "query", "ver", strconv.FormatUint(ver, 10))
	item := elem.New(ns, "item", "jid", it.JID, "name", it.Name, "subscription", it.Subscription)
	if it.Subscription == "remove" {
		item = elem.New(ns, "item", "jid", it.JID, "subscription", "remove")
	}
	if it.Ask && it.Subscription != "remove" {
		item.Set("ask", "subscribe")
	}
	for _, g := range it.Groups {
		item.Add(elem.New(ns, "group").AddText(g))
	}
	q.Add(item)
	to, _ := jid.New(user, m.h.Domain(), "")
	m.h.Fire(ctx, "roster/push", &xmpp.Event{Stanza: &xmpp.Stanza{El: q, To: to}})
}

// outboundSubscription is RFC 6121 3.1.2, 3.2.2, 3.3.2 and 3.4.2: the
// user's side of a subscription change, then the stanza goes on stamped
// with the bare JID.
func (m *Module) outboundSubscription(ctx context.Context, st *xmpp.Stanza) {
	user := st.From.Localpart()
	contact := st.To.Bare()
	typ := st.Type()
	switch typ {
	case "subscribe":
		if _, err := m.h.Store.RosterItem(ctx, user, contact.String()); err != nil {
			if _, items, err := m.h.Store.Roster(ctx, user); err == nil && len(items) >= m.h.Config().Limits.MaxRosterItems {
				m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "wait", Condition: "resource-constraint", Text: "your roster is full"})
				return
			}
		}
		m.update(ctx, user, contact, func(it *store.RosterItem) (bool, bool, error) {
			if it.Subscription == "to" || it.Subscription == "both" {
				return true, false, nil
			}
			ch := !it.Ask || !it.InRoster
			it.Ask, it.InRoster = true, true
			return true, ch, nil
		})
	case "subscribed":
		it, changed := m.update(ctx, user, contact, func(it *store.RosterItem) (bool, bool, error) {
			switch {
			case it.PendingIn && (it.Subscription == "none" || it.Subscription == "to"):
				it.PendingIn = false
				if it.Subscription == "none" {
					it.Subscription = "from"
				} else {
					it.Subscription = "both"
				}
				it.InRoster = true
				return true, true, nil
			case it.Subscription == "none" || it.Subscription == "to":
				// Pre-approval (RFC 6121 3.4): remembered, not yet a subscription.
				if !it.InRoster || it.Approved {
					return true, false, nil
				}
				it.Approved = true
				return true, true, nil
			}
			return true, false, nil
		})
		if !changed || (it.Subscription != "from" && it.Subscription != "both") {
			return
		}
		m.route(ctx, st, contact)
		// The new subscriber gets our current presence (RFC 6121 3.1.5).
		for _, s := range m.h.Sessions(user) {
			if p := s.Presence(); p != nil && s.Available() {
				out := p.Copy()
				out.Set("from", s.JID().String())
				out.Set("to", contact.String())
				m.h.Route(ctx, out)
			}
		}
		return
	case "unsubscribe":
		m.update(ctx, user, contact, cancelTo)
	case "unsubscribed":
		it, changed := m.update(ctx, user, contact, cancelFrom)
		_ = it
		if changed {
			// RFC 6121 3.2.2: the former subscriber sees us go offline.
			m.sendUnavailable(ctx, user, contact.String())
		}
	}
	m.route(ctx, st, contact)
}

// sendUnavailable tells a contact that every available resource of user
// is gone, as when a subscription ends.
func (m *Module) sendUnavailable(ctx context.Context, user, contact string) {
	for _, s := range m.h.Sessions(user) {
		if s.Available() {
			m.h.Route(ctx, presenceEl(s.JID().String(), contact, "unavailable"))
		}
	}
}

// cancelTo ends the user's subscription to a contact's presence (RFC 6121
// 3.3): the contact unsubscribed us, or we unsubscribed.
func cancelTo(it *store.RosterItem) (keep, changed bool, err error) {
	old := it.Subscription
	switch it.Subscription {
	case "to":
		it.Subscription = "none"
	case "both":
		it.Subscription = "from"
	}
	changed = old != it.Subscription || it.Ask
	it.Ask = false
	return it.InRoster || it.PendingIn, changed, nil
}

// cancelFrom ends a contact's subscription to the user's presence (RFC
// 6121 3.2), including a pending request or a pre-approval.
func cancelFrom(it *store.RosterItem) (keep, changed bool, err error) {
	old := it.Subscription
	switch it.Subscription {
	case "from":
		it.Subscription = "none"
	case "both":
		it.Subscription = "to"
	}
	changed = old != it.Subscription || it.PendingIn || it.Approved
	it.PendingIn, it.Approved = false, false
	return it.InRoster, changed, nil
}

// route forwards a subscription stanza from the user's bare JID.
func (m *Module) route(ctx context.Context, st *xmpp.Stanza, contact jid.JID) {
	out := st.El.Copy()
	out.Set("from", st.From.Bare().String())
	out.Set("to", contact.String())
	m.h.Route(ctx, out)
}

// subscribers returns the bare JIDs that receive the user's presence.
func (m *Module) roster(ctx context.Context, user string) []store.RosterItem {
	_, items, err := m.h.Store.Roster(ctx, user)
	if err != nil {
		m.h.Log.Error("read roster", "user", user, "err", err)
	}
	return items
}

func parsePriority(p *elem.Element) int {
	v := strings.TrimSpace(p.ChildText(elem.NSClient, "priority"))
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < -128 || n > 127 {
		return 0
	}
	return n
}

// self handles presence with no 'to': the user's broadcast (RFC 6121 4.2,
// 4.4, 4.5).
func (m *Module) self(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	sess := st.Origin
	if sess == nil {
		return true
	}
	typ := st.Type()
	if typ != "" && typ != "unavailable" {
		return true
	}
	user := sess.Localpart()
	wasAvailable := sess.Available()
	available := typ == ""
	p := st.El.Copy()
	p.Set("to", "")
	sess.SetPresence(p, available, parsePriority(p))
	if !available && !wasAvailable {
		return true
	}
	items := m.roster(ctx, user)
	initial := available && !wasAvailable
	if initial {
		bare := sess.Bare()
		for _, it := range items {
			if it.Subscription == "to" || it.Subscription == "both" {
				m.h.Route(ctx, presenceEl(bare, it.JID, "probe"))
			}
		}
		// The new resource learns about the account's other resources.
		for _, o := range m.h.Sessions(user) {
			if o != sess && o.Available() {
				op := o.Presence().Copy()
				op.Set("from", o.JID().String())
				op.Set("to", sess.JID().String())
				_ = sess.Send(ctx, op)
			}
		}
	}
	m.broadcast(ctx, sess, p, items)
	if !available {
		m.sendDirectedUnavailable(ctx, sess, p)
	}
	if initial {
		m.redeliverPending(ctx, sess, items)
		m.h.Fire(ctx, "presence/initial", &xmpp.Event{Session: sess})
	}
	return true
}

func (m *Module) broadcast(ctx context.Context, sess *xmpp.Session, p *elem.Element, items []store.RosterItem) {
	from := sess.JID().String()
	for _, it := range items {
		if it.Subscription == "from" || it.Subscription == "both" {
			out := p.Copy()
			out.Set("from", from)
			out.Set("to", it.JID)
			m.h.Route(ctx, out)
		}
	}
	for _, o := range m.h.Sessions(sess.Localpart()) {
		if o.Available() || o == sess {
			out := p.Copy()
			out.Set("from", from)
			out.Set("to", o.JID().String())
			_ = o.Send(ctx, out)
		}
	}
}

func (m *Module) sendDirectedUnavailable(ctx context.Context, sess *xmpp.Session, p *elem.Element) {
	d, _ := sess.Value(directedKey{}).(directed)
	for to := range d {
		out := p.Copy()
		out.Set("type", "unavailable")
		out.Set("from", sess.JID().String())
		out.Set("to", to)
		m.h.Route(ctx, out)
	}
	sess.SetValue(directedKey{}, directed(nil))
}

// redeliverPending gives a newly available resource the subscription
// requests still waiting for an answer (RFC 6121 3.1.3).
func (m *Module) redeliverPending(ctx context.Context, sess *xmpp.Session, items []store.RosterItem) {
	for _, it := range items {
		if it.PendingIn {
			_ = sess.Send(ctx, presenceEl(it.JID, sess.Bare(), "subscribe"))
		}
	}
}

func (m *Module) closed(ctx context.Context, ev *xmpp.Event) bool {
	sess := ev.Session
	if !sess.Available() {
		return false
	}
	p := presenceEl("", "", "unavailable")
	sess.SetPresence(p, false, 0)
	m.broadcast(ctx, sess, p, m.roster(ctx, sess.Localpart()))
	m.sendDirectedUnavailable(ctx, sess, p)
	return false
}

// availableSessions are the resources that receive presence sent to the
// bare JID.
func (m *Module) availableSessions(user string) []*xmpp.Session {
	var out []*xmpp.Session
	for _, s := range m.h.Sessions(user) {
		if s.Available() {
			out = append(out, s)
		}
	}
	return out
}

func deliver(ctx context.Context, sessions []*xmpp.Session, el *elem.Element) {
	for _, s := range sessions {
		_ = s.Send(ctx, el)
	}
}

// inboundBare handles presence reaching a local account's bare JID.
func (m *Module) inboundBare(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	user := st.To.Localpart()
	if !m.exists(ctx, user) {
		if st.Type() == "subscribe" || st.Type() == "probe" {
			// RFC 6121 3.1.3 (1) / 4.3.2: no such user.
			m.h.Route(ctx, presenceEl(st.To.String(), st.From.Bare().String(), "unsubscribed"))
		}
		return true
	}
	switch st.Type() {
	case "subscribe":
		m.inboundSubscribe(ctx, st)
	case "subscribed":
		_, changed := m.update(ctx, user, st.From, func(it *store.RosterItem) (bool, bool, error) {
			if !it.Ask || !it.InRoster {
				return true, false, nil
			}
			it.Ask = false
			if it.Subscription == "none" {
				it.Subscription = "to"
			} else if it.Subscription == "from" {
				it.Subscription = "both"
			}
			return true, true, nil
		})
		if changed {
			deliver(ctx, m.availableSessions(user), st.El)
		}
	case "unsubscribe":
		_, changed := m.update(ctx, user, st.From, cancelFrom)
		if changed {
			deliver(ctx, m.availableSessions(user), st.El)
			// RFC 6121 3.3.3: the former subscriber sees us go offline.
			m.sendUnavailable(ctx, user, st.From.Bare().String())
		}
	case "unsubscribed":
		_, changed := m.update(ctx, user, st.From, cancelTo)
		if changed {
			deliver(ctx, m.availableSessions(user), st.El)
		}
	case "probe":
		m.answerProbe(ctx, st)
	default:
		// Available, unavailable and error presence go to every resource.
		deliver(ctx, m.availableSessions(user), st.El)
	}
	return true
}

func (m *Module) exists(ctx context.Context, user string) bool {
	return len(m.h.Sessions(user)) > 0 || m.h.AccountExists(ctx, user)
}

func (m *Module) inboundSubscribe(ctx context.Context, st *xmpp.Stanza) {
	user := st.To.Localpart()
	contact := st.From.Bare()
	it, err := m.h.Store.RosterItem(ctx, user, contact.String())
	if err == nil && (it.Subscription == "from" || it.Subscription == "both") {
		// Already subscribed: answer for the user (RFC 6121 3.1.3 (2)).
		m.h.Route(ctx, presenceEl(st.To.String(), contact.String(), "subscribed"))
		return
	}
	if err == nil && it.Approved {
		m.update(ctx, user, contact, func(it *store.RosterItem) (bool, bool, error) {
			it.Approved = false
			if it.Subscription == "none" {
				it.Subscription = "from"
			} else {
				it.Subscription = "both"
			}
			return true, true, nil
		})
		m.h.Route(ctx, presenceEl(st.To.String(), contact.String(), "subscribed"))
		return
	}
	if err != nil || !it.PendingIn {
		if n := m.pendingCount(ctx, user); n >= m.h.Config().Limits.MaxPendingSubscriptions {
			m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "wait", Condition: "resource-constraint",
				Text: fmt.Sprintf("%s has too many unanswered subscription requests", st.To.String())})
			return
		}
	}
	m.update(ctx, user, contact, func(it *store.RosterItem) (bool, bool, error) {
		ch := !it.PendingIn
		it.PendingIn = true
		return true, ch, nil
	})
	out := presenceEl(contact.String(), st.To.String(), "subscribe")
	out.Children = append(out.Children, st.El.Children...)
	deliver(ctx, m.availableSessions(user), out)
}

func (m *Module) pendingCount(ctx context.Context, user string) int {
	n := 0
	for _, it := range m.roster(ctx, user) {
		if it.PendingIn {
			n++
		}
	}
	return n
}

// answerProbe sends the user's presence to a subscribed prober (RFC 6121
// 4.3.2).
func (m *Module) answerProbe(ctx context.Context, st *xmpp.Stanza) {
	user := st.To.Localpart()
	it, err := m.h.Store.RosterItem(ctx, user, st.From.Bare().String())
	if err != nil || (it.Subscription != "from" && it.Subscription != "both") {
		return
	}
	sent := false
	for _, s := range m.availableSessions(user) {
		out := s.Presence().Copy()
		out.Set("from", s.JID().String())
		out.Set("to", st.From.String())
		m.h.Route(ctx, out)
		sent = true
	}
	if !sent {
		m.h.Route(ctx, presenceEl(st.To.String(), st.From.String(), "unavailable"))
	}
}

// inboundFull handles presence to a full JID: subscription stanzas are
// treated as if sent to the bare JID, the rest go to that resource only.
func (m *Module) inboundFull(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	switch st.Type() {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe":
		bare := *st
		bare.To = st.To.Bare()
		return m.inboundBare(ctx, &xmpp.Event{Stanza: &bare})
	}
	if s := m.h.Session(st.To); s != nil {
		_ = s.Send(ctx, st.El)
	}
	return true
}
