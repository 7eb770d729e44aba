package message_test

import (
	"testing"
	"time"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

func body(text string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		return e.Name.Local == "message" && e.ChildText("", "body") == text
	}
}

func online(c *servertest.Client, priority int) {
	c.SendRaw(servertest.Sprintf("<presence><priority>%d</priority></presence>", priority))
	c.Expect(func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("from") == c.JID.String() })
}

func TestMessageToFullAndBareJID(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	b1 := s.Dial(t, "bob", "pb", "")
	b2 := s.Dial(t, "bob", "pb", "")
	online(a, 0)
	online(b1, 5)
	online(b2, 1)

	// To the bare JID: only the highest-priority resource.
	a.SendRaw("<message to='bob@localhost' type='chat'><body>hi bare</body></message>")
	got := b1.Expect(body("hi bare"))
	if got.Get("from") != a.JID.String() {
		t.Errorf("from = %q, want the sender's full JID %q", got.Get("from"), a.JID)
	}
	b2.ExpectNone(300*time.Millisecond, body("hi bare"))

	// To a full JID: exactly that resource.
	a.SendRaw("<message to='" + b2.JID.String() + "' type='chat'><body>hi full</body></message>")
	b2.Expect(body("hi full"))
	b1.ExpectNone(300*time.Millisecond, body("hi full"))

	// A full JID that is gone falls back to the bare JID for chat.
	a.SendRaw("<message to='bob@localhost/gone' type='chat'><body>fallback</body></message>")
	b1.Expect(body("fallback"))
}

func TestHeadlineGoesToAllNonNegativeResources(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	b1 := s.Dial(t, "bob", "pb", "")
	b2 := s.Dial(t, "bob", "pb", "")
	b3 := s.Dial(t, "bob", "pb", "")
	online(b1, 5)
	online(b2, 0)
	online(b3, -1)
	a.SendRaw("<message to='bob@localhost' type='headline'><body>news</body></message>")
	b1.Expect(body("news"))
	b2.Expect(body("news"))
	b3.ExpectNone(300*time.Millisecond, body("news"))
}

func TestMessageToMissingAccountBounces(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "")
	a.SendRaw("<message id='m1' to='nobody@localhost' type='chat'><body>x</body></message>")
	e := a.Expect(servertest.IsKind("message", "error"))
	if servertest.ErrorCondition(e) != "service-unavailable" || e.Get("id") != "m1" {
		t.Fatalf("got %s", e)
	}
}

func TestGroupchatToAccountBounces(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	b := s.Dial(t, "bob", "pb", "")
	online(b, 0)
	a.SendRaw("<message id='g1' to='bob@localhost' type='groupchat'><body>x</body></message>")
	e := a.Expect(servertest.IsKind("message", "error"))
	if servertest.ErrorCondition(e) != "service-unavailable" {
		t.Fatalf("got %s", e)
	}
	b.ExpectNone(200*time.Millisecond, body("x"))
}

func TestMessageToRemoteDomainIsRefused(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "")
	a.SendRaw("<message id='r1' to='someone@example.org' type='chat'><body>x</body></message>")
	e := a.Expect(servertest.IsKind("message", "error"))
	if servertest.ErrorCondition(e) != "remote-server-not-found" {
		t.Fatalf("got %s", e)
	}
}

func TestSpoofedFromIsAStreamError(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	r := servertest.DialRaw(t, s.Addr)
	r.Login("alice", "pa", "r", "")
	r.Write("<message from='bob@localhost/x' to='alice@localhost'><body>x</body></message>")
	out := r.ReadUntil("</stream:stream>")
	if !contains(out, "invalid-from") {
		t.Fatalf("got %q, want invalid-from stream error", out)
	}
}

func contains(s, sub string) bool { return len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0) }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
