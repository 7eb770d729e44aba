package e2ee_test

import (
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/e2ee"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

func policy(p string) servertest.Option {
	return func(c *config.Config) { c.E2EE.Policy = p }
}

func body(text string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		return e.Name.Local == "message" && e.Get("type") != "error" && e.ChildText("", "body") == text
	}
}

func online(c *servertest.Client) {
	c.SendRaw("<presence/>")
	c.Expect(func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("from") == c.JID.String() })
}

const omemo = `<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><key rid='2'>a2V5</key><iv>aXY=</iv></header><payload>cGF5</payload></encrypted>`

func start(t *testing.T, p string) (*servertest.Server, *servertest.Client, *servertest.Client) {
	s := servertest.Start(t, policy(p))
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "phone")
	b := s.Dial(t, "bob", "pb", "laptop")
	online(a)
	online(b)
	return s, a, b
}

func TestRequiredBouncesPlaintext(t *testing.T) {
	s, a, b := start(t, "required")
	a.SendRaw("<message id='p1' to='bob@localhost' type='chat'><body>secret plans</body></message>")
	e := a.Expect(servertest.IsKind("message", "error"))
	if servertest.ErrorCondition(e) != "policy-violation" || e.Get("id") != "p1" {
		t.Fatalf("got %s, want a policy-violation bounce of p1", e)
	}
	if text := e.Child("", "error").ChildText("", "text"); !strings.Contains(text, "OMEMO") {
		t.Errorf("error text %q does not tell the user what to do", text)
	}
	if e.Get("from") != "bob@localhost" {
		t.Errorf("bounce from %q, want the recipient bob@localhost", e.Get("from"))
	}
	b.ExpectNone(300*time.Millisecond, body("secret plans"))

	// To a full JID, and with type normal, the same.
	a.SendRaw("<message id='p2' to='" + b.JID.String() + "'><body>normal plaintext</body></message>")
	if e := a.Expect(servertest.IsKind("message", "error")); servertest.ErrorCondition(e) != "policy-violation" {
		t.Fatalf("got %s", e)
	}

	// A plaintext message to an offline contact is not stored offline.
	s.AddUser(t, "carol", "pc")
	a.SendRaw("<message id='p3' to='carol@localhost' type='chat'><body>for later</body></message>")
	if e := a.Expect(servertest.IsKind("message", "error")); servertest.ErrorCondition(e) != "policy-violation" {
		t.Fatalf("got %s", e)
	}
	c := s.Dial(t, "carol", "pc", "")
	online(c)
	c.ExpectNone(500*time.Millisecond, body("for later"))
}

func TestRequiredPassesEncryptedAndBodiless(t *testing.T) {
	_, a, b := start(t, "required")
	// OMEMO with the customary fallback body.
	a.SendRaw("<message id='o1' to='bob@localhost' type='chat'>" + omemo + "<body>I sent you an OMEMO encrypted message.</body></message>")
	got := b.Expect(body("I sent you an OMEMO encrypted message."))
	if got.Child(e2ee.NSOMEMOLegacy, "encrypted") == nil {
		t.Errorf("delivered without its payload: %s", got)
	}
	// OMEMO 2 and OpenPGP.
	a.SendRaw("<message to='bob@localhost' type='chat'><encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'/><payload>eA==</payload></encrypted><body>omemo2</body></message>")
	b.Expect(body("omemo2"))
	a.SendRaw("<message to='bob@localhost' type='chat'><openpgp xmlns='urn:xmpp:openpgp:0'>eA==</openpgp><body>pgp</body></message>")
	b.Expect(body("pgp"))
	// Receipts, chat states and markers have no body.
	a.SendRaw("<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	b.Expect(func(e *elem.Element) bool {
		return e.Child("http://jabber.org/protocol/chatstates", "composing") != nil
	})
	a.SendRaw("<message to='bob@localhost'><received xmlns='urn:xmpp:receipts' id='o1'/></message>")
	b.Expect(func(e *elem.Element) bool { return e.Child("urn:xmpp:receipts", "received") != nil })
	a.ExpectNone(300*time.Millisecond, servertest.IsKind("message", "error"))
}

func TestOptionalDeliversAndWarnsOnce(t *testing.T) {
	_, a, b := start(t, "optional")
	a.SendRaw("<message to='bob@localhost' type='chat'><body>plain 1</body></message>")
	b.Expect(body("plain 1"))
	n := a.Expect(servertest.IsKind("message", "headline"))
	if n.Get("from") != "localhost" || !strings.Contains(n.ChildText("", "body"), "bob@localhost") {
		t.Fatalf("notice %s: want a headline from the server naming the recipient", n)
	}
	a.SendRaw("<message to='bob@localhost' type='chat'><body>plain 2</body></message>")
	b.Expect(body("plain 2"))
	a.ExpectNone(300*time.Millisecond, servertest.IsKind("message", "headline"))
	a.ExpectNone(0, servertest.IsKind("message", "error"))
}

func TestOffDeliversPlaintextSilently(t *testing.T) {
	_, a, b := start(t, "off")
	a.SendRaw("<message to='bob@localhost' type='chat'><body>plain</body></message>")
	b.Expect(body("plain"))
	a.ExpectNone(300*time.Millisecond, servertest.IsKind("message", ""))
}

func TestDiscoAdvertisesPolicy(t *testing.T) {
	for _, p := range []string{"required", "optional", "off"} {
		t.Run(p, func(t *testing.T) {
			s := servertest.Start(t, policy(p))
			s.AddUser(t, "alice", "pa")
			a := s.Dial(t, "alice", "pa", "")
			res := a.IQ("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
			var got string
			for _, x := range res.Child("", "query").Elements() {
				if x.Name.Local != "x" {
					continue
				}
				var formType, val string
				for _, f := range x.Elements() {
					switch f.Get("var") {
					case "FORM_TYPE":
						formType = f.ChildText("", "value")
					case "policy":
						val = f.ChildText("", "value")
					}
				}
				if formType == e2ee.FormType {
					got = val
				}
			}
			if got != p {
				t.Fatalf("policy in disco#info = %q, want %q: %s", got, p, res)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	plain := elem.New(elem.NSClient, "message", "type", "chat").Add(elem.New(elem.NSClient, "body").AddText("x"))
	enc := plain.Copy().Add(elem.New(e2ee.NSOMEMO2, "encrypted"))
	errMsg := plain.Copy().Set("type", "error")
	bodiless := elem.New(elem.NSClient, "message").Add(elem.New("urn:xmpp:chat-markers:0", "displayed"))
	directInvite := plain.Copy().Add(elem.New("jabber:x:conference", "x", "jid", "room@rooms.localhost"))
	mediatedInvite := plain.Copy().Add(elem.New("http://jabber.org/protocol/muc#user", "x").Add(elem.New("http://jabber.org/protocol/muc#user", "invite", "to", "bob@localhost")))
	mucUserNoInvite := plain.Copy().Add(elem.New("http://jabber.org/protocol/muc#user", "x"))
	for _, c := range []struct {
		p    e2ee.Policy
		msg  *elem.Element
		want e2ee.Action
	}{
		{e2ee.Required, plain, e2ee.Bounce},
		{e2ee.Required, enc, e2ee.Deliver},
		{e2ee.Required, errMsg, e2ee.Deliver},
		{e2ee.Required, bodiless, e2ee.Deliver},
		{e2ee.Required, directInvite, e2ee.Deliver},
		{e2ee.Required, mediatedInvite, e2ee.Deliver},
		{e2ee.Required, mucUserNoInvite, e2ee.Bounce},
		{e2ee.Optional, plain, e2ee.Warn},
		{e2ee.Optional, enc, e2ee.Deliver},
		{e2ee.Off, plain, e2ee.Deliver},
	} {
		if got := e2ee.Decide(c.p, c.msg); got != c.want {
			t.Errorf("Decide(%s, %s) = %d, want %d", c.p, c.msg, got, c.want)
		}
	}
}

// A refused message reaches nobody: not the user's other resources as a
// carbon either.
func TestBouncedMessageIsNotCarbonCopied(t *testing.T) {
	s, a, b := start(t, "required")
	a2 := s.Dial(t, "alice", "pa", "tablet")
	online(a2)
	if res := a2.IQ("<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>"); res.Get("type") != "result" {
		t.Fatalf("enable carbons: %s", res)
	}
	a.SendRaw("<message id='p1' to='bob@localhost' type='chat'><body>no copies</body></message>")
	a.Expect(servertest.IsKind("message", "error"))
	a2.ExpectNone(300*time.Millisecond, func(e *elem.Element) bool { return strings.Contains(e.String(), "no copies") })
	b.ExpectNone(0, body("no copies"))
	// An encrypted one is copied.
	a.SendRaw("<message id='o1' to='bob@localhost' type='chat'>" + omemo + "<body>copied</body></message>")
	a2.Expect(func(e *elem.Element) bool { return e.Child("urn:xmpp:carbons:2", "sent") != nil })
}
