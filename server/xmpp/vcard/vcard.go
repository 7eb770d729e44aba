// Package vcard stores and serves vcard-temp profiles (XEP-0054).
//
// After a user stores a new vCard the module fires "vcard/updated" with the
// request as ev.Stanza, so avatar conversion (XEP-0398) and presence
// avatar hashes (XEP-0153) can follow without this package knowing them.
package vcard

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

// NS is the vcard-temp namespace.
const NS = "vcard-temp"

// kind and key name the document in the user data store.
const (
	kind = "vcard"
	key  = "vcard-temp"
)

type module struct{ h *xmpp.Host }

// New returns the vcard-temp module.
func New() xmpp.Module { return &module{} }

func (*module) Name() string { return "vcard" }

func (m *module) Register(h *xmpp.Host) error {
	m.h = h
	h.AddFeature(NS)
	h.HandleIQ(xmpp.ToSelf, "get", NS, m.getSelf)
	h.HandleIQ(xmpp.ToSelf, "set", NS, m.set)
	h.HandleIQ(xmpp.ToBare, "get", NS, m.getOther)
	h.HandleIQ(xmpp.ToBare, "set", NS, func(context.Context, *xmpp.Stanza) (*elem.Element, error) {
		return nil, xmpp.ErrForbidden("you may only change your own vCard")
	})
	return nil
}

func (m *module) getSelf(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	return m.load(ctx, iq.From.Localpart())
}

func (m *module) getOther(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	user := iq.To.Localpart()
	if !m.h.AccountExists(ctx, user) {
		return nil, xmpp.ErrServiceUnavailable()
	}
	return m.load(ctx, user)
}

// load returns the stored vCard or, when the user has none, an empty one
// (XEP-0054 section 3.1 allows either; clients handle the empty one best).
func (m *module) load(ctx context.Context, user string) (*elem.Element, error) {
	raw, err := m.h.Store.GetUserData(ctx, user, kind, key)
	if errors.Is(err, store.ErrNotFound) {
		return elem.New(NS, "vCard"), nil
	}
	if err != nil {
		return nil, fmt.Errorf("load vcard of %s: %w", user, err)
	}
	// What is stored was accepted as one stanza, so the stanza limits bound
	// it here too.
	d := elem.NewDecoder(bufio.NewReader(strings.NewReader(string(raw))), elem.Limits{
		MaxBytes: len(raw) + 64, MaxDepth: m.h.Config().Limits.MaxDepth,
	})
	v, err := d.ReadElement()
	if err != nil {
		return nil, fmt.Errorf("decode stored vcard of %s: %w", user, err)
	}
	return v, nil
}

func (m *module) set(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	v := iq.Payload()
	if v.Name.Local != "vCard" {
		return nil, xmpp.ErrBadRequest("the payload must be a vCard element")
	}
	raw := v.String()
	if len(raw) > m.h.Config().Limits.MaxStanzaBytes {
		return nil, &xmpp.StanzaError{Type: "modify", Condition: "not-acceptable", Text: "the vCard is too large"}
	}
	user := iq.From.Localpart()
	if err := m.h.Store.PutUserData(ctx, user, kind, key, []byte(raw)); err != nil {
		return nil, fmt.Errorf("store vcard of %s: %w", user, err)
	}
	m.h.Fire(ctx, "vcard/updated", &xmpp.Event{Stanza: iq, Session: iq.Origin})
	return nil, nil
}
