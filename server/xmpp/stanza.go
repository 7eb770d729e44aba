package xmpp

import (
	"encoding/xml"
	"sync"

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

	holds *ackHolds
}

// ackHolds counts the durable writes a stanza is waiting for.
type ackHolds struct {
	mu      sync.Mutex
	pending int
	sealed  bool // routing is over: no new holds, done may close
	err     error
	done    chan struct{}
}

func (h *ackHolds) maybeDone() {
	if h.sealed && h.pending == 0 {
		close(h.done)
		h.pending = -1 // closed
	}
}

// HoldAck tells the stream layer that this stanza is not durable yet: a
// module that stores it asynchronously (group commits) calls release once
// the write is on disk, or failed. Stream management acknowledges a stanza
// only after every hold on it is released without error. Holds must be
// taken while the stanza is being routed, before Durable is called.
func (s *Stanza) HoldAck() (release func(error)) {
	if s.holds == nil {
		s.holds = &ackHolds{done: make(chan struct{})}
	}
	h := s.holds
	h.mu.Lock()
	h.pending++
	h.mu.Unlock()
	var once sync.Once
	return func(err error) {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if err != nil && h.err == nil {
				h.err = err
			}
			h.pending--
			h.maybeDone()
		})
	}
}

// Durable ends the holding phase and returns a channel closed once every
// write held with HoldAck has finished (nil if there were none), and a
// function giving the first error, to be read after the channel is closed.
func (s *Stanza) Durable() (<-chan struct{}, func() error) {
	if s.holds == nil {
		return nil, func() error { return nil }
	}
	h := s.holds
	h.mu.Lock()
	h.sealed = true
	h.maybeDone()
	h.mu.Unlock()
	return h.done, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.err
	}
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
		r.Children = append(r.Children, el.Children...)
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
