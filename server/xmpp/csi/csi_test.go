package csi_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/csi"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

const quiet = 300 * time.Millisecond

func online(c *servertest.Client) {
	c.SendRaw("<presence/>")
	c.Expect(func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("from") == c.JID.String() })
}

// sync returns once the server has processed everything c sent before:
// the client's stanzas are handled in order. The ping's answer is an IQ,
// which itself flushes what an inactive session holds.
func sync(c *servertest.Client, id string) {
	c.IQ("<iq type='get' id='" + id + "' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
}

func setState(c *servertest.Client, state, id string) {
	c.SendRaw("<" + state + " xmlns='urn:xmpp:csi:0'/>")
	sync(c, id)
}

func fromBob(e *elem.Element) bool { return strings.HasPrefix(e.Get("from"), "bob@") }

func status(text string) func(*elem.Element) bool {
	return func(e *elem.Element) bool { return e.Name.Local == "presence" && e.ChildText("", "status") == text }
}

func setup(t *testing.T) (a, b *servertest.Client) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a = s.Dial(t, "alice", "pa", "phone")
	b = s.Dial(t, "bob", "pb", "desk")
	online(a)
	online(b)
	return a, b
}

func TestInactiveHoldsNoiseUntilAMessage(t *testing.T) {
	a, b := setup(t)
	setState(a, "inactive", "p1")
	to := a.JID.String()
	for _, st := range []string{"one", "two", "three"} {
		b.SendRaw("<presence to='" + to + "'><status>" + st + "</status></presence>")
	}
	b.SendRaw("<message to='" + to + "' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	a.ExpectNone(quiet, fromBob)

	// A message with a body flushes what was held, in order, before it.
	b.SendRaw("<message to='" + to + "' type='chat'><body>wake up</body></message>")
	first := a.Expect(fromBob)
	second := a.Expect(fromBob)
	third := a.Expect(fromBob)
	if !status("three")(first) {
		t.Errorf("first = %s, want bob's latest presence (status three) only", first)
	}
	if second.Child("http://jabber.org/protocol/chatstates", "composing") == nil {
		t.Errorf("second = %s, want the chat state", second)
	}
	if third.ChildText("", "body") != "wake up" {
		t.Errorf("third = %s, want the message", third)
	}
	a.ExpectNone(quiet, status("one"))
	a.ExpectNone(0, status("two"))
}

func TestActiveFlushes(t *testing.T) {
	a, b := setup(t)
	setState(a, "inactive", "p1")
	b.SendRaw("<presence to='" + a.JID.String() + "'><status>away</status></presence>")
	a.ExpectNone(quiet, fromBob)
	a.SendRaw("<active xmlns='urn:xmpp:csi:0'/>")
	a.Expect(status("away"))
	// Active again: nothing is held.
	b.SendRaw("<presence to='" + a.JID.String() + "'><status>back</status></presence>")
	a.Expect(status("back"))
}

func TestIQFlushesAndOtherStanzasPass(t *testing.T) {
	a, b := setup(t)
	setState(a, "inactive", "p1")
	b.SendRaw("<presence to='" + a.JID.String() + "'><status>held</status></presence>")
	a.ExpectNone(quiet, fromBob)
	// A receipt is neither noise nor urgent: it passes and flushes nothing.
	b.SendRaw("<message to='" + a.JID.String() + "'><received xmlns='urn:xmpp:receipts' id='x'/></message>")
	a.Expect(func(e *elem.Element) bool { return e.Child("urn:xmpp:receipts", "received") != nil })
	a.ExpectNone(quiet, status("held"))
	// The answer to an IQ goes out at once, after what was held.
	sync(a, "p2")
	a.Expect(status("held"))
}

func TestHeldQueueIsBounded(t *testing.T) {
	a, b := setup(t)
	setState(a, "inactive", "p1")
	var sb strings.Builder
	for i := 0; i <= csi.MaxHeld; i++ {
		sb.WriteString("<message to='" + a.JID.String() + "' type='chat'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>")
	}
	b.SendRaw(sb.String())
	for i := 0; i <= csi.MaxHeld; i++ {
		if a.ExpectWithin(5*time.Second, fromBob) == nil {
			t.Fatalf("after %d of %d chat states: the full queue was not flushed", i, csi.MaxHeld+1)
		}
	}
}

func TestStreamFeature(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	r := servertest.DialRaw(t, s.Addr)
	r.StartTLS("")
	r.Write(servertest.Header(""))
	r.ReadUntil("</stream:features>")
	r.Write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00pa")) + "</auth>")
	r.ReadUntil("<success")
	r.Write(servertest.Header(""))
	if f := r.ReadUntil("</stream:features>"); !strings.Contains(f, `<csi xmlns="urn:xmpp:csi:0"`) {
		t.Fatalf("features after login lack csi: %s", f)
	}
}

// Carbons are judged by the message they carry: a copy of a chat state
// waits, a copy of a message with a body flushes.
func TestCarbonsAreJudgedByTheirContent(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "phone")
	a2 := s.Dial(t, "alice", "pa", "laptop")
	b := s.Dial(t, "bob", "pb", "desk")
	online(a)
	online(a2)
	online(b)
	a.IQ("<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
	setState(a, "inactive", "p1")
	isCarbon := func(e *elem.Element) bool { return e.Child("urn:xmpp:carbons:2", "sent") != nil }
	a2.SendRaw("<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	b.Expect(func(e *elem.Element) bool { return e.Name.Local == "message" })
	a.ExpectNone(quiet, isCarbon)
	a2.SendRaw("<message to='bob@localhost' type='chat'><body>hello</body></message>")
	first := a.Expect(isCarbon)
	second := a.Expect(isCarbon)
	if !strings.Contains(first.String(), "composing") || !strings.Contains(second.String(), "hello") {
		t.Fatalf("carbons arrived as\n%s\n%s\nwant the held chat state, then the message", first, second)
	}
}
