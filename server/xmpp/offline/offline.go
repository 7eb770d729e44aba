// Package offline stores messages for accounts with no available resource
// and delivers them on the next initial presence (XEP-0160).
package offline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

const (
	nsOffline    = "msgoffline"
	nsDelay      = "urn:xmpp:delay"
	nsChatStates = "http://jabber.org/protocol/chatstates"
)

// Module is offline storage.
type Module struct {
	h *xmpp.Host
}

// New returns the offline module.
func New() *Module { return &Module{} }

// Name implements xmpp.Module.
func (m *Module) Name() string { return "offline" }

// Register implements xmpp.Module.
func (m *Module) Register(h *xmpp.Host) error {
	m.h = h
	h.AddFeature(nsOffline)
	h.Hook("message/offline", 0, m.store)
	h.Hook("presence/initial", 0, m.deliver)
	return nil
}

// worthKeeping skips messages that only say "typing…" and the like: they
// mean nothing later.
func worthKeeping(el *elem.Element) bool {
	for _, c := range el.Elements() {
		if c.Name.Space != nsChatStates {
			return true
		}
	}
	return false
}

func (m *Module) store(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	if !worthKeeping(st.El) {
		return true
	}
	user := st.To.Localpart()
	if user == "" && st.Origin != nil {
		user = st.Origin.Localpart()
	}
	el := st.El.Copy()
	el.RemoveChildren(nsDelay, "delay")
	el.Add(elem.New(nsDelay, "delay", "from", m.h.Domain(), "stamp", time.Now().UTC().Format("2006-01-02T15:04:05.000Z")))
	// The write is durable (fsynced) before this returns, so nothing the
	// server accepted is lost to a crash.
	limit := m.h.Config().Limits.MaxOfflineMessages
	err := m.h.Store.PushOffline(ctx, user, []byte(el.String()), limit)
	switch {
	case errors.Is(err, store.ErrQueueFull):
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "wait", Condition: "resource-constraint",
			Text: fmt.Sprintf("%s is offline and their queue of %d stored messages is full; try again later",
				st.To.Bare().String(), limit)})
	case err != nil:
		m.h.Log.Error("store offline message", "user", user, "err", err)
		// Stream management must not count this stanza as handled: an ack
		// would tell the sender it is stored (disk full, issue 5 item 9).
		st.HoldAck()(fmt.Errorf("store offline message for %s: %w", user, err))
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "wait", Condition: "resource-constraint",
			Text: "the server could not store this message; try again later"})
	}
	return true
}

// deliver sends the stored messages to the resource that just became
// available with a non-negative priority.
func (m *Module) deliver(ctx context.Context, ev *xmpp.Event) bool {
	sess := ev.Session
	if sess.Priority() < 0 {
		return false
	}
	user := sess.Localpart()
	if n, err := m.h.Store.CountOffline(ctx, user); err != nil || n == 0 {
		return false
	}
	msgs, err := m.h.Store.PopOffline(ctx, user)
	if err != nil {
		m.h.Log.Error("read offline messages", "user", user, "err", err)
		return false
	}
	for i, raw := range msgs {
		el, err := parse(raw)
		if err != nil {
			m.h.Log.Error("stored offline message unreadable", "user", user, "err", err)
			continue
		}
		if err := sess.Send(ctx, el); err != nil {
			// The session died: keep what was not handed over.
			for _, rest := range msgs[i:] {
				_ = m.h.Store.PushOffline(ctx, user, rest, 0)
			}
			return false
		}
	}
	return false
}

func parse(raw []byte) (*elem.Element, error) {
	// Stored stanzas were written inside a jabber:client stream; give them
	// that context back so their namespace reads the same.
	doc := "<stream xmlns='" + elem.NSClient + "'>" + string(raw)
	d := elem.NewDecoder(strings.NewReader(doc), elem.Limits{MaxBytes: len(doc) + 1, MaxDepth: 1000})
	if _, err := d.ReadHeader(); err != nil {
		return nil, err
	}
	return d.ReadElement()
}
