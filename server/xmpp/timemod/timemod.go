// Package timemod answers XEP-0202 entity time queries to the server. (The
// package is not called time so it does not shadow the standard library.)
package timemod

import (
	"context"
	"time"

	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// NS is the entity time namespace.
const NS = "urn:xmpp:time"

type module struct{}

// New returns the entity time module.
func New() xmpp.Module { return module{} }

func (module) Name() string { return "time" }

func (module) Register(h *xmpp.Host) error {
	h.AddFeature(NS)
	h.HandleIQ(xmpp.ToHost, "get", NS, func(context.Context, *xmpp.Stanza) (*elem.Element, error) {
		// The server speaks UTC whatever the host's zone: its clock is what
		// matters to clients, not where the machine stands.
		now := time.Now().UTC()
		return elem.New(NS, "time").Add(
			elem.New(NS, "tzo").AddText("+00:00"),
			elem.New(NS, "utc").AddText(now.Format("2006-01-02T15:04:05.000Z")),
		), nil
	})
	return nil
}
