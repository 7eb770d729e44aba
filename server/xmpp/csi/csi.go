// Package csi implements client state indication (XEP-0352): while a
// client says it is inactive (a phone in a pocket), the server holds back
// what it would only wake up for needlessly — presence updates and chat
// states — and sends them when the client becomes active again, or right
// before something that matters (a message with content, an IQ).
//
// Only ephemeral traffic is held: presence updates (the latest per sender)
// and chat-state-only messages. If the connection dies while they are
// held, they are lost as a presence broadcast to a dead socket would be;
// nothing that is stored or acknowledged is ever held here.
package csi

import (
	"context"
	"sync"

	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// NS is the CSI namespace.
const NS = "urn:xmpp:csi:0"

// Stage is the name of the outbound filter; FilterPriority puts it before
// stream management, which must count only what is really sent.
const (
	Stage          = "csi"
	FilterPriority = 100
)

// MaxHeld bounds what one inactive session holds; past it, the queue is
// flushed rather than grown.
const MaxHeld = 200

const (
	nsChatStates = "http://jabber.org/protocol/chatstates"
	nsHints      = "urn:xmpp:hints"
	nsSID        = "urn:xmpp:sid:0"
	nsCarbons    = "urn:xmpp:carbons:2"
	nsForward    = "urn:xmpp:forward:0"
)

// Payload namespaces of an encrypted message (OMEMO, OpenPGP): important
// even when the body is missing.
var encrypted = map[string]bool{
	"eu.siacs.conversations.axolotl": true,
	"urn:xmpp:omemo:2":               true,
	"urn:xmpp:openpgp:0":             true,
}

type stateKey struct{}

// state is one session's indication and held queue.
type state struct {
	mu       sync.Mutex
	inactive bool
	// draining is set while one goroutine sends the held queue; everything
	// sent meanwhile joins the queue, so order is kept.
	draining bool
	held     []*elem.Element
}

type module struct{}

// New returns the CSI module.
func New() xmpp.Module { return &module{} }

func (*module) Name() string { return "csi" }

func (m *module) Register(h *xmpp.Host) error {
	h.AddStreamFeature(func(*xmpp.Session) *elem.Element { return elem.New(NS, "csi") })
	h.Hook("nonza/"+NS, 0, m.nonza)
	h.AddOutboundFilter(Stage, FilterPriority, filter)
	return nil
}

func (m *module) nonza(ctx context.Context, ev *xmpp.Event) bool {
	s := ev.Session
	if s == nil {
		return false
	}
	st, _ := s.Value(stateKey{}).(*state)
	switch ev.Stanza.El.Name.Local {
	case "inactive":
		if st == nil {
			st = &state{}
			s.SetValue(stateKey{}, st)
		}
		st.mu.Lock()
		st.inactive = true
		st.mu.Unlock()
	case "active":
		if st == nil {
			return true
		}
		st.mu.Lock()
		st.inactive = false
		if st.draining || len(st.held) == 0 {
			st.mu.Unlock()
			return true
		}
		st.draining = true
		st.mu.Unlock()
		st.drain(ctx, s)
	default:
		return false // unknown element: the core ends the stream
	}
	return true
}

// filter runs on every element sent to a session.
func filter(ctx context.Context, s *xmpp.Session, el *elem.Element) bool {
	st, _ := s.Value(stateKey{}).(*state)
	if st == nil || el.Name.Space != elem.NSClient {
		// Never used CSI, or a nonza (stream management acks).
		return true
	}
	st.mu.Lock()
	switch {
	case st.draining:
		st.add(el)
		st.mu.Unlock()
		return false
	case !st.inactive:
		st.mu.Unlock()
		return true
	case holdable(el):
		st.add(el)
		if len(st.held) <= MaxHeld {
			st.mu.Unlock()
			return false
		}
	case important(el):
		st.held = append(st.held, el)
	default:
		// Neither noise nor urgent (a receipt, a subscription request):
		// it goes now and wakes nobody for what is held.
		st.mu.Unlock()
		return true
	}
	st.draining = true
	st.mu.Unlock()
	st.drain(ctx, s)
	return false
}

// add queues el, replacing an earlier held presence from the same sender:
// only the latest one matters. st.mu must be held.
func (st *state) add(el *elem.Element) {
	if el.Name.Local == "presence" {
		from := el.Get("from")
		for i, h := range st.held {
			if h.Name.Local == "presence" && h.Get("from") == from && holdable(h) {
				st.held = append(st.held[:i], st.held[i+1:]...)
				break
			}
		}
	}
	st.held = append(st.held, el)
}

// drain sends the held queue, in order, past this stage; the caller has
// set st.draining.
func (st *state) drain(ctx context.Context, s *xmpp.Session) {
	for {
		st.mu.Lock()
		batch := st.held
		st.held = nil
		if len(batch) == 0 {
			st.draining = false
			st.mu.Unlock()
			return
		}
		st.mu.Unlock()
		for _, el := range batch {
			_ = s.SendAfter(ctx, Stage, el)
		}
	}
}

// unwrapCarbon returns the message a carbon (XEP-0280) forwards, or el:
// a copy is as important, or as noisy, as the original.
func unwrapCarbon(el *elem.Element) *elem.Element {
	if el.Name.Local != "message" {
		return el
	}
	for _, kind := range []string{"sent", "received"} {
		if f := el.Child(nsCarbons, kind); f != nil {
			if f = f.Child(nsForward, "forwarded"); f != nil {
				if m := f.Child(elem.NSClient, "message"); m != nil {
					return m
				}
			}
		}
	}
	return el
}

// holdable reports whether el is noise an inactive client can wait for:
// a presence update, or a message (or carbon of one) that only carries a
// chat state.
func holdable(el *elem.Element) bool {
	el = unwrapCarbon(el)
	switch el.Name.Local {
	case "presence":
		t := el.Get("type")
		return t == "" || t == "unavailable"
	case "message":
		if el.Get("type") == "error" {
			return false
		}
		state := false
		for _, c := range el.Elements() {
			switch {
			case c.Name.Space == nsChatStates:
				state = true
			case c.Name.Space == nsHints, c.Name.Space == nsSID,
				c.Name.Space == elem.NSClient && c.Name.Local == "thread":
			default:
				return false
			}
		}
		return state
	}
	return false
}

// important reports whether el must reach the client now: any IQ, or a
// message with a body or an encrypted payload.
func important(el *elem.Element) bool {
	el = unwrapCarbon(el)
	switch el.Name.Local {
	case "iq":
		return true
	case "message":
		for _, c := range el.Elements() {
			if (c.Name.Space == elem.NSClient && c.Name.Local == "body") || encrypted[c.Name.Space] {
				return true
			}
		}
	}
	return false
}
