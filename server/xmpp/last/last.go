// Package last implements last activity (XEP-0012): the server's uptime,
// and how long ago an offline account logged out, for those allowed to see
// that account's presence.
package last

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// NS is the last activity namespace.
const NS = "jabber:iq:last"

const (
	kind = "last"
	key  = "logout"
)

// record is what is kept of a user's last logout.
type record struct {
	Time   time.Time `json:"time"`
	Status string    `json:"status,omitempty"`
}

type module struct {
	h       *xmpp.Host
	started time.Time
}

// New returns the last activity module.
func New() xmpp.Module { return &module{} }

func (*module) Name() string { return "last" }

func (m *module) Register(h *xmpp.Host) error {
	m.h = h
	m.started = time.Now()
	h.AddFeature(NS)
	h.HandleIQ(xmpp.ToHost, "get", NS, func(context.Context, *xmpp.Stanza) (*elem.Element, error) {
		return query(time.Since(m.started), ""), nil
	})
	// Asking about oneself: one is online, by definition.
	h.HandleIQ(xmpp.ToSelf, "get", NS, func(context.Context, *xmpp.Stanza) (*elem.Element, error) {
		return query(0, ""), nil
	})
	h.HandleIQ(xmpp.ToBare, "get", NS, m.account)
	h.Hook("session/closed", 0, m.closed)
	return nil
}

func query(d time.Duration, status string) *elem.Element {
	return elem.New(NS, "query", "seconds", strconv.FormatInt(int64(d/time.Second), 10)).AddText(status)
}

func (m *module) account(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	user := iq.To.Localpart()
	if !m.h.AccountExists(ctx, user) {
		return nil, xmpp.ErrServiceUnavailable()
	}
	// RFC 6121 / XEP-0012 section 4: only those subscribed to the user's
	// presence may learn when the user was last around.
	item, err := m.h.Store.RosterItem(ctx, user, iq.From.Bare().String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, xmpp.ErrForbidden("you are not subscribed to this user's presence")
	case err != nil:
		return nil, fmt.Errorf("roster of %s: %w", user, err)
	case item.Subscription != "from" && item.Subscription != "both":
		return nil, xmpp.ErrForbidden("you are not subscribed to this user's presence")
	}
	if len(m.h.Sessions(user)) > 0 {
		return query(0, ""), nil
	}
	raw, err := m.h.Store.GetUserData(ctx, user, kind, key)
	if errors.Is(err, store.ErrNotFound) {
		// Never logged out since this was recorded: nothing to tell.
		return nil, xmpp.ErrServiceUnavailable()
	}
	if err != nil {
		return nil, fmt.Errorf("last activity of %s: %w", user, err)
	}
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("decode last activity of %s: %w", user, err)
	}
	d := time.Since(r.Time)
	if d < 0 {
		d = 0
	}
	return query(d, r.Status), nil
}

// closed records the logout when the account's last session ends.
func (m *module) closed(ctx context.Context, ev *xmpp.Event) bool {
	s := ev.Session
	if s == nil || len(m.h.Sessions(s.Localpart())) > 0 {
		return false
	}
	r := record{Time: time.Now().UTC()}
	// The status of a final unavailable presence is the user's goodbye
	// (XEP-0012 section 5); an available presence's status is not.
	if p := s.Presence(); p != nil && p.Get("type") == "unavailable" {
		r.Status = p.ChildText(elem.NSClient, "status")
	}
	raw, err := json.Marshal(r)
	if err == nil {
		err = m.h.Store.PutUserData(context.WithoutCancel(ctx), s.Localpart(), kind, key, raw)
	}
	if err != nil {
		m.h.Log.Error("record last activity", "user", s.Localpart(), "err", err)
	}
	return false
}
