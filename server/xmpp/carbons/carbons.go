// Package carbons implements message carbons (XEP-0280): a user's
// resources that enabled carbons get a copy of the chat messages their
// other resources send (sent carbons) and of those delivered to another of
// their resources (received carbons), so every device shows the whole
// conversation.
package carbons

import (
	"context"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Namespaces.
const (
	NS        = "urn:xmpp:carbons:2"
	nsForward = "urn:xmpp:forward:0"
	nsHints   = "urn:xmpp:hints"
	nsMUCUser = "http://jabber.org/protocol/muc#user"
)

// Payloads that make a message of type normal worth copying (XEP-0280
// section 6): the things an IM client shows or acts on.
var imPayloads = map[string]bool{
	"eu.siacs.conversations.axolotl":        true,
	"urn:xmpp:omemo:2":                      true,
	"urn:xmpp:openpgp:0":                    true,
	"http://jabber.org/protocol/chatstates": true,
	"urn:xmpp:receipts":                     true,
	"urn:xmpp:chat-markers:0":               true,
	"jabber:x:conference":                   true, // direct MUC invitation
}

// sentPriority runs after the hooks that can stop a message (blocking at
// 1000, the E2EE policy at 900): a refused message must not be copied.
const sentPriority = -100

// enabledKey marks a session that enabled carbons.
type enabledKey struct{}

type module struct{ h *xmpp.Host }

// New returns the carbons module.
func New() xmpp.Module { return &module{} }

func (*module) Name() string { return "carbons" }

func (m *module) Register(h *xmpp.Host) error {
	m.h = h
	h.AddFeature(NS)
	h.HandleIQ(xmpp.ToSelf, "set", NS, m.set)
	h.Hook("stanza/outgoing", sentPriority, m.sent)
	h.Hook("message/delivered", 0, m.received)
	return nil
}

func (m *module) set(_ context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	if iq.Origin == nil {
		return nil, xmpp.ErrBadRequest("carbons are enabled by a client for its own session")
	}
	switch iq.Payload().Name.Local {
	case "enable":
		iq.Origin.SetValue(enabledKey{}, true)
	case "disable":
		iq.Origin.SetValue(enabledKey{}, false)
	default:
		return nil, xmpp.ErrBadRequest("expected <enable/> or <disable/>")
	}
	return nil, nil
}

func enabled(s *xmpp.Session) bool {
	on, _ := s.Value(enabledKey{}).(bool)
	return on
}

// Eligible reports whether a message may be copied, by the rules of XEP-0280
// section 6 and the hints of sections 7 and XEP-0334: chat messages, and
// normal messages with a body or an IM payload; never groupchat, headline
// or error, never a carbon itself, never one marked <private/> or
// <no-copy/>.
func Eligible(msg *elem.Element) bool {
	if msg.Name.Local != "message" {
		return false
	}
	if msg.Child(NS, "private") != nil || msg.Child(nsHints, "no-copy") != nil ||
		msg.Child(NS, "sent") != nil || msg.Child(NS, "received") != nil {
		return false
	}
	switch msg.Get("type") {
	case "chat":
		return true
	case "", "normal":
		if msg.Child(elem.NSClient, "body") != nil {
			return true
		}
		for _, c := range msg.Elements() {
			if imPayloads[c.Name.Space] {
				return true
			}
			if c.Name.Space == nsMUCUser && c.Child(nsMUCUser, "invite") != nil {
				return true
			}
		}
	}
	return false
}

// sent copies a message a local client sends to the user's other
// carbons-enabled resources.
func (m *module) sent(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	origin := st.Origin
	if origin == nil || st.Kind() != "message" || !Eligible(st.El) {
		return false
	}
	// A message to one's own account is delivered to the resources by the
	// ordinary rules; copying it as well would show it twice.
	if st.To.Equal(jid.JID{}) || st.To.Bare().String() == origin.Bare() {
		return false
	}
	var fwd *elem.Element
	for _, s := range m.h.Sessions(origin.Localpart()) {
		if s == origin || !enabled(s) {
			continue
		}
		if fwd == nil {
			// A copy: the original goes on through the router, whose
			// modules (the archive) may still change it.
			fwd = st.El.Copy()
		}
		_ = s.Send(ctx, wrap("sent", origin.Bare(), s.JID().String(), fwd))
	}
	return false
}

// received copies a message delivered to one of a user's resources to the
// user's other carbons-enabled resources.
func (m *module) received(ctx context.Context, ev *xmpp.Event) bool {
	st, got := ev.Stanza, ev.Session
	if got == nil || !Eligible(st.El) {
		return false
	}
	if st.From.Bare().String() == got.Bare() {
		return false // to oneself: see sent
	}
	toBare := st.To.Resourcepart() == ""
	if !toBare && st.El.Child(nsMUCUser, "x") != nil {
		// A private message from a room occupant reached the resource
		// that joined the room; the others are not in it.
		return false
	}
	var fwd *elem.Element
	for _, s := range m.h.Sessions(got.Localpart()) {
		if s == got || !enabled(s) {
			continue
		}
		if toBare && s.Available() && s.Priority() >= 0 && s.Priority() == got.Priority() {
			continue // received the message itself (message/delivered)
		}
		if fwd == nil {
			fwd = st.El.Copy()
		}
		_ = s.Send(ctx, wrap("received", got.Bare(), s.JID().String(), fwd))
	}
	return false
}

// wrap builds a carbon (XEP-0280 sections 5 and 7): a message from the
// user's bare JID forwarding the original.
func wrap(kind, from, to string, orig *elem.Element) *elem.Element {
	typ := orig.Get("type")
	if typ == "" {
		typ = "normal"
	}
	c := elem.New(elem.NSClient, "message", "from", from, "to", to, "type", typ)
	return c.Add(elem.New(NS, kind).Add(elem.New(nsForward, "forwarded").Add(orig)))
}
