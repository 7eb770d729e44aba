package offline_test

import (
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

func body(text string) func(*elem.Element) bool {
	return func(e *elem.Element) bool { return e.Name.Local == "message" && e.ChildText("", "body") == text }
}

func TestOfflineMessagesDeliveredOnInitialPresence(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	a.SendRaw("<message to='bob@localhost' type='chat'><body>one</body></message>")
	a.SendRaw("<message to='bob@localhost'><body>two</body></message>")
	a.SendRaw("<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	a.SendRaw("<message to='bob@localhost' type='headline'><body>news</body></message>")
	a.IQ("<iq type='get' id='sync'><query xmlns='jabber:iq:roster'/></iq>")
	time.Sleep(100 * time.Millisecond)
	if n, _ := s.Store.CountOffline(t.Context(), "bob"); n != 2 {
		t.Fatalf("stored %d offline messages, want 2 (no chat states, no headlines)", n)
	}

	b := s.Dial(t, "bob", "pb", "")
	// Nothing before initial presence.
	b.ExpectNone(200*time.Millisecond, body("one"))
	b.SendRaw("<presence/>")
	m1 := b.Expect(body("one"))
	b.Expect(body("two"))
	d := m1.Child("urn:xmpp:delay", "delay")
	if d == nil || d.Get("stamp") == "" || d.Get("from") != "localhost" {
		t.Fatalf("offline message without a delay stamp: %s", m1)
	}
	if m1.Get("from") != a.JID.String() {
		t.Errorf("from = %q", m1.Get("from"))
	}
	b.ExpectNone(200*time.Millisecond, body("news"))
	if n, _ := s.Store.CountOffline(t.Context(), "bob"); n != 0 {
		t.Fatalf("%d messages left after delivery", n)
	}
}

func TestOfflineQueueFullBouncesWithClearError(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) { c.Limits.MaxOfflineMessages = 2 })
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	for i := 0; i < 3; i++ {
		a.SendRaw(servertest.Sprintf("<message id='m%d' to='bob@localhost' type='chat'><body>%d</body></message>", i, i))
	}
	e := a.Expect(servertest.IsKind("message", "error"))
	if e.Get("id") != "m2" || servertest.ErrorCondition(e) != "resource-constraint" {
		t.Fatalf("third message: %s", e)
	}
	if txt := e.Child("", "error").ChildText("urn:ietf:params:xml:ns:xmpp-stanzas", "text"); txt == "" {
		t.Error("the error has no human-readable text")
	}
}

func TestOfflineSurvivesRestart(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	a.SendRaw("<message to='bob@localhost' type='chat'><body>durable</body></message>")
	a.IQ("<iq type='get' id='sync'><query xmlns='jabber:iq:roster'/></iq>")
	time.Sleep(100 * time.Millisecond)
	dir := s.Config.DataDir
	s.Stop()
	s2 := servertest.Start(t, func(c *config.Config) { c.DataDir = dir })
	b := s2.Dial(t, "bob", "pb", "")
	b.SendRaw("<presence/>")
	b.Expect(body("durable"))
}
