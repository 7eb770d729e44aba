// Package roster implements roster management (RFC 6121 section 2) with
// roster versioning (XEP-0237).
//
// Subscription states change in the presence module; it announces each
// change with a "roster/push" event, and this module delivers the push to
// every resource that has asked for the roster.
package roster

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

// NS is the roster namespace.
const NS = "jabber:iq:roster"

// nsVer is the roster versioning stream feature.
const nsVer = "urn:xmpp:features:rosterver"

type interestedKey struct{}

// Module is the roster feature.
type Module struct {
	h *xmpp.Host
}

// New returns the roster module.
func New() *Module { return &Module{} }

// Name implements xmpp.Module.
func (m *Module) Name() string { return "roster" }

// Register implements xmpp.Module.
func (m *Module) Register(h *xmpp.Host) error {
	m.h = h
	h.AddStreamFeature(func(*xmpp.Session) *elem.Element { return elem.New(nsVer, "ver") })
	h.HandleIQ(xmpp.ToSelf, "get", NS, m.get)
	h.HandleIQ(xmpp.ToSelf, "set", NS, m.set)
	h.Hook("roster/push", 0, m.onPush)
	return nil
}

// ItemElement renders a stored item as a roster <item/>.
func ItemElement(it store.RosterItem) *elem.Element {
	e := elem.New(NS, "item", "jid", it.JID, "name", it.Name, "subscription", it.Subscription)
	if it.Ask {
		e.Set("ask", "subscribe")
	}
	if it.Approved {
		e.Set("approved", "true")
	}
	for _, g := range it.Groups {
		e.Add(elem.New(NS, "group").AddText(g))
	}
	return e
}

func (m *Module) get(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	user := iq.From.Localpart()
	iq.Origin.SetValue(interestedKey{}, true)
	ver, items, err := m.h.Store.Roster(ctx, user)
	if err != nil {
		return nil, err
	}
	verStr := strconv.FormatUint(ver, 10)
	if q := iq.Payload(); q.Get("ver") != "" && q.Get("ver") == verStr {
		// XEP-0237: nothing changed since the client's copy.
		return nil, nil
	}
	q := elem.New(NS, "query", "ver", verStr)
	for _, it := range items {
		if it.InRoster {
			q.Add(ItemElement(it))
		}
	}
	return q, nil
}

func (m *Module) set(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	q := iq.Payload()
	items := q.Elements()
	if len(items) != 1 || items[0].Name.Local != "item" {
		return nil, xmpp.ErrBadRequest("a roster set carries exactly one item")
	}
	item := items[0]
	contact, err := jid.Parse(item.Get("jid"))
	if err != nil {
		return nil, &xmpp.StanzaError{Type: "modify", Condition: "jid-malformed", Text: "the item's jid is not valid"}
	}
	contact = contact.Bare()
	user := iq.From.Localpart()
	if contact.Equal(iq.From.Bare()) {
		return nil, xmpp.NewError("cancel", "not-allowed", "you cannot add yourself to your roster")
	}
	if item.Get("subscription") == "remove" {
		return nil, m.remove(ctx, iq.From, contact)
	}
	groups, err := parseGroups(item)
	if err != nil {
		return nil, err
	}
	name := item.Get("name")
	if len(name) > 1024 {
		return nil, xmpp.NewError("modify", "not-acceptable", "the name is too long")
	}
	if err := m.checkSize(ctx, user, contact.String()); err != nil {
		return nil, err
	}
	var stored store.RosterItem
	ver, err := m.h.Store.UpdateRosterItem(ctx, user, contact.String(), func(it *store.RosterItem) (bool, bool, error) {
		it.Name, it.Groups, it.InRoster = name, groups, true
		stored = *it
		return true, true, nil
	})
	if err != nil {
		return nil, err
	}
	m.Push(ctx, user, ver, stored)
	return nil, nil
}

// checkSize refuses growing a roster past the configured maximum.
func (m *Module) checkSize(ctx context.Context, user, contact string) error {
	if _, err := m.h.Store.RosterItem(ctx, user, contact); err == nil {
		return nil
	}
	_, items, err := m.h.Store.Roster(ctx, user)
	if err != nil {
		return err
	}
	if limit := m.h.Config().Limits.MaxRosterItems; len(items) >= limit {
		return &xmpp.StanzaError{Type: "wait", Condition: "resource-constraint",
			Text: fmt.Sprintf("your roster is full (%d contacts)", limit)}
	}
	return nil
}

func parseGroups(item *elem.Element) ([]string, error) {
	var groups []string
	seen := map[string]bool{}
	for _, g := range item.Elements() {
		if g.Name.Local != "group" {
			continue
		}
		name := strings.TrimSpace(g.Text())
		if name == "" {
			return nil, xmpp.NewError("modify", "not-acceptable", "a group name cannot be empty")
		}
		if seen[name] {
			return nil, xmpp.ErrBadRequest("the same group is listed twice")
		}
		if len(name) > 1024 {
			return nil, xmpp.NewError("modify", "not-acceptable", "a group name is too long")
		}
		seen[name] = true
		groups = append(groups, name)
	}
	return groups, nil
}

// remove deletes a contact, cancelling subscriptions both ways as RFC 6121
// 2.5.2 requires.
func (m *Module) remove(ctx context.Context, user, contact jid.JID) error {
	var old store.RosterItem
	found := false
	ver, err := m.h.Store.UpdateRosterItem(ctx, user.Localpart(), contact.String(), func(it *store.RosterItem) (bool, bool, error) {
		old = *it
		found = it.InRoster || it.PendingIn
		return false, found, nil
	})
	if err != nil {
		return err
	}
	if !found {
		return xmpp.ErrItemNotFound()
	}
	bare := user.Bare().String()
	if old.Subscription == "to" || old.Subscription == "both" || old.Ask {
		m.h.Route(ctx, elem.New(elem.NSClient, "presence", "from", bare, "to", contact.String(), "type", "unsubscribe"))
	}
	if old.Subscription == "from" || old.Subscription == "both" || old.PendingIn {
		m.h.Route(ctx, elem.New(elem.NSClient, "presence", "from", bare, "to", contact.String(), "type", "unsubscribed"))
		// RFC 6121 3.2.2: cancelling their subscription also tells them we
		// are gone.
		for _, s := range m.h.Sessions(user.Localpart()) {
			if s.Available() {
				m.h.Route(ctx, elem.New(elem.NSClient, "presence", "from", s.JID().String(), "to", contact.String(), "type", "unavailable"))
			}
		}
	}
	old.Subscription = "remove"
	old.Ask = false
	m.Push(ctx, user.Localpart(), ver, old)
	return nil
}

// Push sends a roster push for one item to every interested resource.
func (m *Module) Push(ctx context.Context, user string, ver uint64, it store.RosterItem) {
	q := elem.New(NS, "query", "ver", strconv.FormatUint(ver, 10))
	if it.Subscription == "remove" {
		q.Add(elem.New(NS, "item", "jid", it.JID, "subscription", "remove"))
	} else {
		q.Add(ItemElement(it))
	}
	m.pushQuery(ctx, user, q)
}

func (m *Module) pushQuery(ctx context.Context, user string, q *elem.Element) {
	for _, s := range m.h.Sessions(user) {
		if v, _ := s.Value(interestedKey{}).(bool); !v {
			continue
		}
		iq := elem.New(elem.NSClient, "iq", "type", "set", "id", "push"+strconv.FormatUint(pushID(), 36), "to", s.JID().String())
		_ = s.Send(ctx, iq.Add(q.Copy()))
	}
}

// onPush handles "roster/push" from the presence module: ev.Stanza.To is
// the account, ev.Stanza.El the <query ver=…><item/></query>.
func (m *Module) onPush(ctx context.Context, ev *xmpp.Event) bool {
	if ev.Stanza == nil || ev.Stanza.El == nil {
		return false
	}
	m.pushQuery(ctx, ev.Stanza.To.Localpart(), ev.Stanza.El)
	return true
}
