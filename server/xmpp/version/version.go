// Package version answers XEP-0092 software version queries to the server.
package version

import (
	"context"

	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// NS is the software version namespace.
const NS = "jabber:iq:version"

type module struct{ version string }

// New returns the version module reporting version ("dev" when empty).
// The operating system is not disclosed: it helps attackers more than users.
func New(version string) xmpp.Module {
	if version == "" {
		version = "dev"
	}
	return module{version: version}
}

func (module) Name() string { return "version" }

func (m module) Register(h *xmpp.Host) error {
	h.AddFeature(NS)
	h.HandleIQ(xmpp.ToHost, "get", NS, func(context.Context, *xmpp.Stanza) (*elem.Element, error) {
		return elem.New(NS, "query").Add(
			elem.New(NS, "name").AddText("hearth"),
			elem.New(NS, "version").AddText(m.version),
		), nil
	})
	return nil
}
