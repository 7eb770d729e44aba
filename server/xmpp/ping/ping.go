// Package ping answers XEP-0199 pings addressed to the server.
package ping

import (
	"context"

	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// NS is the ping namespace.
const NS = "urn:xmpp:ping"

type module struct{}

// New returns the ping module.
func New() xmpp.Module { return module{} }

func (module) Name() string { return "ping" }

func (module) Register(h *xmpp.Host) error {
	h.AddFeature(NS)
	pong := func(context.Context, *xmpp.Stanza) (*elem.Element, error) { return nil, nil }
	h.HandleIQ(xmpp.ToHost, "get", NS, pong)
	// A ping without 'to' is handled by the server on the account's behalf
	// (RFC 6120 10.3.3); some clients keep their connection alive that way.
	h.HandleIQ(xmpp.ToSelf, "get", NS, pong)
	return nil
}
