package carbons_test

import (
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/carbons"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

const quiet = 300 * time.Millisecond

func online(c *servertest.Client, priority int) {
	c.SendRaw(servertest.Sprintf("<presence><priority>%d</priority></presence>", priority))
	c.Expect(func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("from") == c.JID.String() })
}

func enable(t *testing.T, c *servertest.Client, on bool) {
	t.Helper()
	op := "disable"
	if on {
		op = "enable"
	}
	res := c.IQ("<iq type='set' id='cb-" + op + "'><" + op + " xmlns='urn:xmpp:carbons:2'/></iq>")
	if res.Get("type") != "result" {
		t.Fatalf("%s carbons: %s", op, res)
	}
}

func body(text string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		return e.Name.Local == "message" && e.ChildText("", "body") == text
	}
}

// carbon matches a carbon of kind (sent or received) whose forwarded
// message has the given body, and returns the forwarded message.
func carbon(kind, text string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		return forwarded(e, kind) != nil && forwarded(e, kind).ChildText("", "body") == text
	}
}

func forwarded(e *elem.Element, kind string) *elem.Element {
	if e.Name.Local != "message" {
		return nil
	}
	w := e.Child(carbons.NS, kind)
	if w == nil {
		return nil
	}
	f := w.Child("urn:xmpp:forward:0", "forwarded")
	if f == nil {
		return nil
	}
	return f.Child(elem.NSClient, "message")
}

// fromAccount reports whether a carbon comes from alice's bare JID, as
// XEP-0280 section 11 requires (clients must ignore others). mellium drops
// a 'from' that equals the account's bare JID, so "" means the same here;
// the wire form is checked with a raw client in TestCarbonOnTheWire.
func fromAccount(e *elem.Element) bool {
	f := e.Get("from")
	return f == "" || f == "alice@localhost"
}

type world struct {
	a1, a2, a3, b *servertest.Client
}

// setup: alice on three resources (a1 priority 5 and a2 priority 0 with
// carbons, a3 without), bob on one.
func setup(t *testing.T) world {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	w := world{
		a1: s.Dial(t, "alice", "pa", "phone"),
		a2: s.Dial(t, "alice", "pa", "laptop"),
		a3: s.Dial(t, "alice", "pa", "old"),
		b:  s.Dial(t, "bob", "pb", "desk"),
	}
	online(w.a1, 5)
	online(w.a2, 0)
	online(w.a3, 0)
	online(w.b, 0)
	enable(t, w.a1, true)
	enable(t, w.a2, true)
	return w
}

func TestSentCarbons(t *testing.T) {
	w := setup(t)
	w.a1.SendRaw("<message id='s1' to='bob@localhost' type='chat'><body>from the phone</body></message>")
	w.b.Expect(body("from the phone"))
	c := w.a2.Expect(carbon("sent", "from the phone"))
	if !fromAccount(c) || c.Get("to") != w.a2.JID.String() {
		t.Errorf("carbon addressed from %q to %q, want from the bare JID to the resource", c.Get("from"), c.Get("to"))
	}
	if f := forwarded(c, "sent"); f.Get("from") != w.a1.JID.String() || f.Get("to") != "bob@localhost" || f.Get("id") != "s1" {
		t.Errorf("forwarded message lost its addresses or id: %s", f)
	}
	w.a3.ExpectNone(quiet, carbon("sent", "from the phone"))
	w.a1.ExpectNone(0, carbon("sent", "from the phone"))
}

func TestReceivedCarbons(t *testing.T) {
	w := setup(t)
	// To a full JID: the other enabled resource gets a received carbon.
	w.b.SendRaw("<message to='" + w.a3.JID.String() + "' type='chat'><body>to the old one</body></message>")
	w.a3.Expect(body("to the old one"))
	w.a1.Expect(carbon("received", "to the old one"))
	c := w.a2.Expect(carbon("received", "to the old one"))
	if !fromAccount(c) {
		t.Errorf("carbon from %q, want alice@localhost", c.Get("from"))
	}
	if f := forwarded(c, "received"); f.Get("from") != w.b.JID.String() {
		t.Errorf("forwarded from %q, want bob's full JID", f.Get("from"))
	}

	// To the bare JID: delivered to the highest priority (a1); a2 gets a
	// carbon, a3 (not enabled) nothing.
	w.b.SendRaw("<message to='alice@localhost' type='chat'><body>to the bare</body></message>")
	w.a1.Expect(body("to the bare"))
	w.a2.Expect(carbon("received", "to the bare"))
	w.a1.ExpectNone(quiet, carbon("received", "to the bare"))
	w.a3.ExpectNone(0, body("to the bare"))
	w.a3.ExpectNone(0, carbon("received", "to the bare"))
}

func TestHintsAndIneligibleMessages(t *testing.T) {
	w := setup(t)
	w.a1.SendRaw("<message to='bob@localhost' type='chat'><body>private</body><private xmlns='urn:xmpp:carbons:2'/></message>")
	w.a1.SendRaw("<message to='bob@localhost' type='chat'><body>no-copy</body><no-copy xmlns='urn:xmpp:hints'/></message>")
	w.b.SendRaw("<message to='" + w.a1.JID.String() + "' type='headline'><body>headline</body></message>")
	w.b.SendRaw("<message to='" + w.a1.JID.String() + "' type='normal'><body>normal</body></message>")
	w.b.SendRaw("<message to='" + w.a1.JID.String() + "'><x xmlns='urn:example:nothing-im'/></message>")
	w.b.SendRaw("<message to='" + w.a1.JID.String() + "' type='chat'><body>private in</body><private xmlns='urn:xmpp:carbons:2'/></message>")
	w.b.Expect(body("private"))
	w.b.Expect(body("no-copy"))
	w.a1.Expect(body("headline"))
	w.a1.Expect(body("normal"))
	w.a1.Expect(body("private in"))
	// A normal message with a body is eligible; the others are not.
	w.a2.Expect(carbon("received", "normal"))
	w.a2.ExpectNone(quiet, func(e *elem.Element) bool {
		return forwarded(e, "sent") != nil || (forwarded(e, "received") != nil && forwarded(e, "received").ChildText("", "body") != "normal")
	})
}

func TestDisable(t *testing.T) {
	w := setup(t)
	enable(t, w.a2, false)
	w.a1.SendRaw("<message to='bob@localhost' type='chat'><body>after disable</body></message>")
	w.b.Expect(body("after disable"))
	w.a2.ExpectNone(quiet, carbon("sent", "after disable"))
}

func TestFeatureAdvertised(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "")
	res := a.IQ("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	for _, f := range res.Child("", "query").Elements() {
		if f.Name.Local == "feature" && f.Get("var") == carbons.NS {
			return
		}
	}
	t.Fatalf("disco#info lacks %s: %s", carbons.NS, res)
}

func TestEligible(t *testing.T) {
	msg := func(typ string, children ...*elem.Element) *elem.Element {
		return elem.New(elem.NSClient, "message", "type", typ).Add(children...)
	}
	bodyEl := elem.New(elem.NSClient, "body").AddText("x")
	for _, c := range []struct {
		name string
		m    *elem.Element
		want bool
	}{
		{"chat", msg("chat"), true},
		{"normal with body", msg("normal", bodyEl), true},
		{"normal without body", msg(""), false},
		{"normal receipt", msg("", elem.New("urn:xmpp:receipts", "received")), true},
		{"groupchat", msg("groupchat", bodyEl), false},
		{"headline", msg("headline", bodyEl), false},
		{"error", msg("error", bodyEl), false},
		{"carbon of a carbon", msg("chat", elem.New(carbons.NS, "sent")), false},
		{"private", msg("chat", bodyEl, elem.New(carbons.NS, "private")), false},
		{"no-copy", msg("chat", bodyEl, elem.New("urn:xmpp:hints", "no-copy")), false},
	} {
		if got := carbons.Eligible(c.m); got != c.want {
			t.Errorf("%s: Eligible = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCarbonOnTheWire(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	r := servertest.DialRaw(t, s.Addr)
	full := r.Login("alice", "pa", "raw", "")
	r.Write("<iq type='set' id='e1'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
	r.ReadUntil("/>")
	a := s.Dial(t, "alice", "pa", "phone")
	a.SendRaw("<message to='bob@localhost' type='chat'><body>wire</body></message>")
	got := r.ReadUntil("</message></forwarded></sent></message>")
	want := `<message from="alice@localhost" to="` + full + `" type="chat"><sent xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client"`
	if !strings.Contains(got, want) {
		t.Fatalf("carbon on the wire:\n%s\nwant it to contain\n%s", got, want)
	}
}
