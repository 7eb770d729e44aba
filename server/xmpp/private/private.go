// Package private implements private XML storage (XEP-0049): a user keeps
// arbitrary XML fragments on the server, keyed by the fragment's root
// element name and namespace.
package private

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// NS is the private storage namespace.
const NS = "jabber:iq:private"

const kind = "private"

// maxKeys bounds how many distinct fragments one user may keep; each is
// already bounded by the stanza size limit.
const maxKeys = 64

type module struct{ h *xmpp.Host }

// New returns the private XML storage module.
func New() xmpp.Module { return &module{} }

func (*module) Name() string { return "private" }

func (m *module) Register(h *xmpp.Host) error {
	m.h = h
	// XEP-0049 has no disco feature of its own; clients just try it.
	h.HandleIQ(xmpp.ToSelf, "get", NS, m.get)
	h.HandleIQ(xmpp.ToSelf, "set", NS, m.set)
	forbidden := func(context.Context, *xmpp.Stanza) (*elem.Element, error) {
		return nil, xmpp.ErrForbidden("private XML belongs to its owner alone")
	}
	h.HandleIQ(xmpp.ToBare, "get", NS, forbidden)
	h.HandleIQ(xmpp.ToBare, "set", NS, forbidden)
	h.HandleIQ(xmpp.ToHost, "get", NS, forbidden)
	h.HandleIQ(xmpp.ToHost, "set", NS, forbidden)
	return nil
}

func notAcceptable(text string) *xmpp.StanzaError {
	return &xmpp.StanzaError{Type: "modify", Condition: "not-acceptable", Text: text}
}

// keyOf names a fragment and refuses the namespaces XEP-0049 reserves for
// the protocol itself (data there would shadow real protocol elements).
func keyOf(e *elem.Element) (string, error) {
	ns := e.Name.Space
	if ns == "" || ns == elem.NSClient || strings.HasPrefix(ns, "jabber:") || ns == "vcard-temp" {
		return "", notAcceptable("the namespace " + ns + " is reserved")
	}
	return e.Name.Local + " " + ns, nil
}

func (m *module) get(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	children := iq.Payload().Elements()
	if len(children) != 1 {
		return nil, notAcceptable("ask for exactly one element")
	}
	want := children[0]
	k, err := keyOf(want)
	if err != nil {
		return nil, err
	}
	q := elem.New(NS, "query")
	user := iq.From.Localpart()
	raw, err := m.h.Store.GetUserData(ctx, user, kind, k)
	if errors.Is(err, store.ErrNotFound) {
		// Nothing stored: the request comes back empty (XEP-0049 3.2).
		return q.Add(elem.New(want.Name.Space, want.Name.Local)), nil
	}
	if err != nil {
		return nil, fmt.Errorf("load private %q of %s: %w", k, user, err)
	}
	stored, err := m.decode(raw)
	if err != nil {
		return nil, fmt.Errorf("decode private %q of %s: %w", k, user, err)
	}
	q.Children = stored.Children
	return q, nil
}

func (m *module) set(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	children := iq.Payload().Elements()
	if len(children) == 0 {
		return nil, notAcceptable("there is nothing to store")
	}
	// Several fragments may share a key; they are stored together, in order.
	byKey := map[string]*elem.Element{}
	var order []string
	for _, c := range children {
		k, err := keyOf(c)
		if err != nil {
			return nil, err
		}
		if byKey[k] == nil {
			byKey[k] = elem.New(NS, "query")
			order = append(order, k)
		}
		byKey[k].Add(c)
	}
	user := iq.From.Localpart()
	existing, err := m.h.Store.ListUserData(ctx, user, kind)
	if err != nil {
		return nil, fmt.Errorf("list private data of %s: %w", user, err)
	}
	n := len(existing)
	for _, k := range order {
		if _, ok := existing[k]; !ok {
			n++
		}
	}
	if n > maxKeys {
		return nil, &xmpp.StanzaError{Type: "wait", Condition: "resource-constraint", Text: fmt.Sprintf("at most %d kinds of private data may be stored", maxKeys)}
	}
	for _, k := range order {
		if err := m.h.Store.PutUserData(ctx, user, kind, k, []byte(byKey[k].String())); err != nil {
			return nil, fmt.Errorf("store private %q of %s: %w", k, user, err)
		}
	}
	// Bookmark conversion (XEP-0411) follows changes through this event.
	m.h.Fire(ctx, "private/updated", &xmpp.Event{Stanza: iq, Session: iq.Origin})
	return nil, nil
}

func (m *module) decode(raw []byte) (*elem.Element, error) {
	d := elem.NewDecoder(bufio.NewReader(strings.NewReader(string(raw))), elem.Limits{
		MaxBytes: len(raw) + 64, MaxDepth: m.h.Config().Limits.MaxDepth + 1,
	})
	return d.ReadElement()
}
