package xmpp

import (
	"encoding/xml"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Stanza is a stanza being routed: the element plus its parsed addresses and
// where it came from.
type Stanza struct {
	El   *elem.Element
	From jid.JID
	To   jid.JID // zero when the stanza had no 'to'
	// Origin is the local session that sent it; nil for stanzas the server
	// generates.
	Origin *Session
}

// Kind is message, presence or iq.
func (s *Stanza) Kind() string { return s.El.Name.Local }

// Type is the stanza's type attribute.
func (s *Stanza) Type() string { return s.El.Get("type") }

// ID is the stanza's id attribute.
func (s *Stanza) ID() string { return s.El.Get("id") }

// Payload is the first child of an IQ.
func (s *Stanza) Payload() *elem.Element { return s.El.FirstElement() }

func xmlLang(v string) xml.Attr {
	return xml.Attr{Name: xml.Name{Space: elem.NSXML, Local: "lang"}, Value: v}
}

// ErrorReply builds the error response to el (RFC 6120 8.3.1): addresses
// swapped, the original payload kept for messages and presence.
func ErrorReply(el *elem.Element, se *StanzaError) *elem.Element {
	r := &elem.Element{Name: el.Name}
	if id := el.Get("id"); id != "" {
		r.Set("id", id)
	}
	r.Set("from", el.Get("to"))
	r.Set("to", el.Get("from"))
	r.Set("type", "error")
	if el.Name.Local != "iq" {
		for _, c := range el.Children {
			r.Children = append(r.Children, c)
		}
	} else if p := el.FirstElement(); p != nil {
		r.Children = append(r.Children, p)
	}
	r.Children = append(r.Children, se.Element())
	return r
}

// ResultReply builds an IQ result for iq with an optional payload.
func ResultReply(iq *elem.Element, payload *elem.Element) *elem.Element {
	r := elem.New(elem.NSClient, "iq", "type", "result", "id", iq.Get("id"), "from", iq.Get("to"), "to", iq.Get("from"))
	return r.Add(payload)
}

// IsError reports whether the stanza is itself an error, which must never
// be answered with another error.
func IsError(el *elem.Element) bool { return el.Get("type") == "error" }
