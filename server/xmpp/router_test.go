package xmpp_test

import (
	"testing"
	"time"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

func TestStanzaErrors(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	cases := []struct{ raw, want string }{
		{"<iq type='get' id='e1' to='localhost'><unknown xmlns='urn:example:nothing'/></iq>", "service-unavailable"},
		{"<iq type='get' id='e2' to='localhost'/>", "bad-request"},
		{"<iq type='get' id='e3' to='localhost'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request"},
		{"<iq type='bogus' id='e4' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request"},
		{"<iq type='get' id='e5' to='a@b@c'><ping xmlns='urn:xmpp:ping'/></iq>", "jid-malformed"},
		{"<iq type='get' id='e6' to='bob@localhost/nowhere'><ping xmlns='urn:xmpp:ping'/></iq>", "service-unavailable"},
		{"<iq type='get' id='e7' to='bob@localhost'><unknown xmlns='urn:example:nothing'/></iq>", "service-unavailable"},
		{"<iq type='get' id='e8' to='localhost/resource'><ping xmlns='urn:xmpp:ping'/></iq>", "service-unavailable"},
		{"<iq type='get' id='e9' to='elsewhere.example'><ping xmlns='urn:xmpp:ping'/></iq>", "remote-server-not-found"},
	}
	for _, c := range cases {
		r := a.IQ(c.raw)
		if r.Get("type") != "error" || servertest.ErrorCondition(r) != c.want {
			t.Errorf("%s:\n got %s\nwant error %s", c.raw, r, c.want)
		}
	}
}

func TestIQToFullJIDIsDeliveredAndAnswered(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	b := s.Dial(t, "bob", "pb", "")
	a.SendRaw("<iq type='get' id='q1' to='" + b.JID.String() + "'><query xmlns='jabber:iq:version'/></iq>")
	got := b.Expect(func(e *elem.Element) bool { return e.Name.Local == "iq" && e.Get("id") == "q1" })
	if got.Get("from") != a.JID.String() {
		t.Fatalf("iq from %q, want %q", got.Get("from"), a.JID)
	}
	// mellium answers unhandled IQs itself (service-unavailable); either
	// way the answer must come back from Bob's full JID.
	r := a.Expect(func(e *elem.Element) bool { return e.Name.Local == "iq" && e.Get("id") == "q1" })
	if r.Get("from") != b.JID.String() || r.Get("to") != a.JID.String() {
		t.Fatalf("answer: %s", r)
	}
}

func TestErrorsAreNeverAnsweredWithErrors(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "")
	a.SendRaw("<message type='error' to='nobody@localhost' id='x'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
	a.SendRaw("<iq type='error' to='localhost' id='y'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
	a.ExpectNone(300*time.Millisecond, func(e *elem.Element) bool { return e.Get("id") == "x" || e.Get("id") == "y" })
}
