// Package e2ee enforces the server's end-to-end encryption policy on
// one-to-one messages (DESIGN.md decision 5): with "required", a message
// whose body is not accompanied by an OMEMO or OpenPGP payload bounces to
// its sender with policy-violation and goes nowhere else (not delivered,
// not stored offline, not archived, not carbon-copied); with "optional" it
// is delivered and the sender gets a notice; "off" checks nothing.
//
// The decision itself is Decide, a pure function of the policy and the
// stanza, so that rooms can apply the same rule to groupchat messages.
package e2ee

import (
	"context"
	"fmt"
	"sync"

	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Namespaces of the encrypted payloads that satisfy the policy.
const (
	NSOMEMOLegacy = "eu.siacs.conversations.axolotl" // OMEMO 0.3 (Conversations, Monal, Dino, Gajim)
	NSOMEMO2      = "urn:xmpp:omemo:2"
	NSOpenPGP     = "urn:xmpp:openpgp:0" // XEP-0373
)

// FormType is the FORM_TYPE of the XEP-0128 extended disco#info form in
// which the server domain advertises its policy; field "policy" holds
// required, optional or off.
const FormType = "https://github.com/merveilles/hearth/e2ee"

const nsData = "jabber:x:data"

// Policy is a server or room setting.
type Policy string

// Policies.
const (
	Required Policy = "required"
	Optional Policy = "optional"
	Off      Policy = "off"
)

// Action is what to do with a message.
type Action int

// Actions.
const (
	Deliver Action = iota // nothing to object to
	Warn                  // deliver, and tell the sender it was plaintext
	Bounce                // refuse with policy-violation
)

// BounceText is the human-readable text of the policy-violation error.
const BounceText = "This server requires end-to-end encryption: a message with a body must be encrypted " +
	"with OMEMO or OpenPGP. Your message was not delivered; turn on encryption for this chat and send it again."

// WarnText is the notice sent with "optional" after a plaintext message.
const WarnText = "Your message to %s was delivered without end-to-end encryption, so this server could read it. " +
	"Turn on OMEMO in your client to keep your conversations private."

// Encrypted reports whether a message carries an OMEMO (either namespace)
// or OpenPGP payload.
func Encrypted(msg *elem.Element) bool {
	for _, c := range msg.Elements() {
		switch {
		case c.Name.Local == "encrypted" && (c.Name.Space == NSOMEMOLegacy || c.Name.Space == NSOMEMO2):
			return true
		case c.Name.Local == "openpgp" && c.Name.Space == NSOpenPGP:
			return true
		}
	}
	return false
}

// Plaintext reports whether a message has a body without an encrypted
// payload. Receipts, chat states, markers and other bodiless messages are
// not plaintext: they carry no conversation text. Nor is a room invitation
// (XEP-0249 direct, or XEP-0045 mediated): clients add a generated body
// ("alice invites you to …") for readers that do not understand it, and
// bouncing it would make inviting someone to an encrypted room impossible.
func Plaintext(msg *elem.Element) bool {
	if msg.Child(elem.NSClient, "body") == nil || Encrypted(msg) {
		return false
	}
	if msg.Child(nsConference, "x") != nil {
		return false
	}
	if x := msg.Child(nsMUCUser, "x"); x != nil && (x.Child(nsMUCUser, "invite") != nil || x.Child(nsMUCUser, "decline") != nil) {
		return false
	}
	return true
}

const (
	nsConference = "jabber:x:conference"
	nsMUCUser    = "http://jabber.org/protocol/muc#user"
)

// Decide applies policy p to a message a user sends. Errors are never
// refused: bouncing an error could loop. Whom the message is for (a
// conversation partner or a room) is for the caller to know.
func Decide(p Policy, msg *elem.Element) Action {
	if p == Off || p == "" || msg.Name.Local != "message" || xmpp.IsError(msg) || !Plaintext(msg) {
		return Deliver
	}
	if p == Optional {
		return Warn
	}
	return Bounce
}

// PolicyViolation is the error a refused message bounces with.
func PolicyViolation() *xmpp.StanzaError {
	return &xmpp.StanzaError{Type: "modify", Condition: "policy-violation", Text: BounceText}
}

// hookPriority runs the check after blocking (1000) and before anything
// that delivers, stores or copies a message (carbons, archive).
const hookPriority = 900

type module struct {
	h *xmpp.Host
}

// New returns the module for the configured policy.
func New() xmpp.Module { return &module{} }

func (*module) Name() string { return "e2ee" }

func (m *module) Register(h *xmpp.Host) error {
	m.h = h
	h.Hook("disco/info/host", 0, m.discoInfo)
	// Hooked whatever the policy: a reload may turn it on or off, and
	// with "off" the check returns before looking at the message.
	h.Hook("stanza/outgoing", hookPriority, m.outgoing)
	return nil
}

// policy is the server's policy now: read per message from the live
// configuration, so that a reload applies to sessions already bound.
func (m *module) policy() Policy {
	if p := Policy(m.h.Config().E2EE.Policy); p != "" {
		return p
	}
	return Required
}

// discoInfo advertises the policy. It must not depend on the requester:
// the answer is hashed into the server's caps.
func (m *module) discoInfo(_ context.Context, ev *xmpp.Event) bool {
	if ev.Stanza.El.Get("node") != "" {
		return false // a node some other module describes
	}
	ev.Stanza.El.Add(elem.New(nsData, "x", "type", "result").Add(
		elem.New(nsData, "field", "var", "FORM_TYPE", "type", "hidden").Add(elem.New(nsData, "value").AddText(FormType)),
		elem.New(nsData, "field", "var", "policy").Add(elem.New(nsData, "value").AddText(string(m.policy()))),
	))
	return false
}

// warnedKey is the per-session set of recipients already warned about, so
// that "optional" does not answer every plaintext message with a notice.
type warnedKey struct{}

type warned struct {
	mu   sync.Mutex
	seen map[string]bool
}

// maxWarned bounds the per-session memory of warned recipients.
const maxWarned = 256

func (m *module) outgoing(ctx context.Context, ev *xmpp.Event) bool {
	p := m.policy()
	if p == Off {
		return false
	}
	st := ev.Stanza
	if st.Kind() != "message" || st.Type() == "groupchat" || st.To.Domainpart() == m.h.Config().RoomsDomain() {
		// Rooms apply their own policy, to private messages between
		// occupants too (a room may be marked plaintext).
		return false
	}
	// One-to-one means to an account: a message to the server or to a
	// service (no localpart) is not a conversation with a person. No 'to'
	// is the sender's own account.
	if st.To.Domainpart() != "" && st.To.Localpart() == "" {
		return false
	}
	switch Decide(p, st.El) {
	case Bounce:
		m.h.Bounce(ctx, st, PolicyViolation())
		return true
	case Warn:
		m.warn(ctx, st)
	}
	return false
}

func (m *module) warn(ctx context.Context, st *xmpp.Stanza) {
	s := st.Origin
	if s == nil {
		return
	}
	to := st.To.Bare().String()
	if to == "" {
		to = s.Bare()
	}
	w, _ := s.Value(warnedKey{}).(*warned)
	if w == nil {
		w = &warned{seen: make(map[string]bool)}
		s.SetValue(warnedKey{}, w)
	}
	w.mu.Lock()
	first := !w.seen[to] && len(w.seen) < maxWarned
	if first {
		w.seen[to] = true
	}
	w.mu.Unlock()
	if !first {
		return
	}
	// A headline from the server domain: clients show it as a notice from
	// the server, it is not stored offline or archived, and it is not a
	// chat message that could itself need encryption.
	notice := elem.New(elem.NSClient, "message", "from", m.h.Domain(), "to", s.JID().String(), "type", "headline")
	notice.Add(elem.New(elem.NSClient, "body").AddText(fmt.Sprintf(WarnText, to)))
	_ = s.Send(ctx, notice)
}
