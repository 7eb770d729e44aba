package blocking_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"mellium.im/xmpp/blocklist"
	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/blocking"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

const quiet = 300 * time.Millisecond

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func online(c *servertest.Client) {
	c.SendRaw("<presence/>")
	c.Expect(func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("from") == c.JID.String() })
}

func body(text string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		return e.Name.Local == "message" && e.Get("type") != "error" && e.ChildText(elem.NSClient, "body") == text
	}
}

func bounced(text string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		return e.Name.Local == "message" && e.Get("type") == "error" && e.ChildText(elem.NSClient, "body") == text
	}
}

func push(op string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		return e.Name.Local == "iq" && e.Get("type") == "set" && e.Child(blocking.NS, op) != nil
	}
}

func items(e *elem.Element) []string {
	var out []string
	for _, it := range e.Elements() {
		if it.Name.Local == "item" {
			out = append(out, it.Get("jid"))
		}
	}
	return out
}

func fetch(t *testing.T, c *servertest.Client) []string {
	t.Helper()
	iter := blocklist.Fetch(ctx(t), c.Session)
	var out []string
	for iter.Next() {
		out = append(out, iter.JID().String())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	servertest.Must(t, iter.Close())
	return out
}

func send(c *servertest.Client, to, text string) {
	c.SendRaw("<message type='chat' to='" + to + "'><body>" + text + "</body></message>")
}

func TestListBlockUnblockAndPushes(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a1 := s.Dial(t, "alice", "pa", "one")
	a2 := s.Dial(t, "alice", "pa", "two")
	a3 := s.Dial(t, "alice", "pa", "three") // never asks for the list

	if got := fetch(t, a1); len(got) != 0 {
		t.Fatalf("new account's list: %v", got)
	}
	r := a2.IQ("<iq type='get' id='l2'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
	if r.Get("type") != "result" || r.Child(blocking.NS, "blocklist") == nil {
		t.Fatalf("blocklist get: %s", r)
	}

	servertest.Must(t, blocklist.Add(ctx(t), a1.Session, jid.MustParse("bob@localhost"), jid.MustParse("spam.example")))
	for _, c := range []*servertest.Client{a1, a2} {
		p := c.Expect(push("block"))
		if got := items(p.Child(blocking.NS, "block")); !slices.Equal(got, []string{"bob@localhost", "spam.example"}) {
			t.Errorf("%s: block push %v", c.JID, got)
		}
		if p.Get("to") != c.JID.String() || (p.Get("from") != "" && p.Get("from") != "alice@localhost") {
			t.Errorf("%s: push addressed %s", c.JID, p)
		}
	}
	a3.ExpectNone(quiet, push("block"))
	if got := fetch(t, a2); !slices.Equal(got, []string{"bob@localhost", "spam.example"}) {
		t.Fatalf("list after block: %v", got)
	}

	// Blocking again changes nothing.
	a1.IQ("<iq type='set' id='b2'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>")
	if got := fetch(t, a1); len(got) != 2 {
		t.Fatalf("list after re-block: %v", got)
	}

	r = a2.IQ("<iq type='set' id='u1'><unblock xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></unblock></iq>")
	if r.Get("type") != "result" {
		t.Fatalf("unblock: %s", r)
	}
	for _, c := range []*servertest.Client{a1, a2} {
		p := c.Expect(push("unblock"))
		if got := items(p.Child(blocking.NS, "unblock")); !slices.Equal(got, []string{"bob@localhost"}) {
			t.Errorf("%s: unblock push %v", c.JID, got)
		}
	}
	if got := fetch(t, a1); !slices.Equal(got, []string{"spam.example"}) {
		t.Fatalf("list after unblock: %v", got)
	}

	servertest.Must(t, blocklist.Remove(ctx(t), a1.Session)) // unblock all
	for _, c := range []*servertest.Client{a1, a2} {
		p := c.Expect(push("unblock"))
		if got := items(p.Child(blocking.NS, "unblock")); len(got) != 0 {
			t.Errorf("%s: unblock-all push carries items %v", c.JID, got)
		}
	}
	a3.ExpectNone(quiet, push("unblock"))
	if got := fetch(t, a1); len(got) != 0 {
		t.Fatalf("list after unblock all: %v", got)
	}
}

func TestRequestErrors(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "r")
	for _, c := range []struct{ name, iq, want string }{
		{"block nothing", "<iq type='set' id='e1'><block xmlns='urn:xmpp:blocking'/></iq>", "bad-request"},
		{"bad JID", "<iq type='set' id='e2'><block xmlns='urn:xmpp:blocking'><item jid='a@b@c'/></block></iq>", "jid-malformed"},
		{"empty JID", "<iq type='set' id='e3'><block xmlns='urn:xmpp:blocking'><item jid=''/></block></iq>", "jid-malformed"},
		{"set blocklist", "<iq type='set' id='e4'><blocklist xmlns='urn:xmpp:blocking'/></iq>", "bad-request"},
		{"another user's list", "<iq type='get' id='e5' to='bob@localhost'><blocklist xmlns='urn:xmpp:blocking'/></iq>", "service-unavailable"},
		{"block for another user", "<iq type='set' id='e6' to='bob@localhost'><block xmlns='urn:xmpp:blocking'><item jid='carol@localhost'/></block></iq>", "service-unavailable"},
	} {
		if r := a.IQ(c.iq); servertest.ErrorCondition(r) != c.want {
			t.Errorf("%s: %s, want %s", c.name, r, c.want)
		}
	}
	if got := fetch(t, a); len(got) != 0 {
		t.Fatalf("failed requests changed the list: %v", got)
	}
}

func TestBlockedContactAndUserCannotCommunicate(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "r")
	b := s.Dial(t, "bob", "pb", "r")
	online(a)
	online(b)

	send(b, "alice@localhost", "before")
	a.Expect(body("before"))

	servertest.Must(t, blocklist.Add(ctx(t), a.Session, jid.MustParse("bob@localhost")))

	// Inbound: bob's messages bounce as if alice were not there.
	send(b, "alice@localhost", "to bare")
	send(b, a.JID.String(), "to full")
	for _, text := range []string{"to bare", "to full"} {
		if e := b.Expect(bounced(text)); servertest.ErrorCondition(e) != "service-unavailable" {
			t.Errorf("%s: %s, want service-unavailable", text, e)
		}
	}
	r := b.IQ("<iq type='get' id='v1' to='" + a.JID.String() + "'><query xmlns='jabber:iq:version'/></iq>")
	if servertest.ErrorCondition(r) != "service-unavailable" {
		t.Errorf("iq from blocked: %s", r)
	}
	b.SendRaw("<presence to='" + a.JID.String() + "'><show>dnd</show></presence>")
	a.ExpectNone(quiet, func(e *elem.Element) bool {
		return (e.Name.Local == "message" || e.Name.Local == "presence" || e.Name.Local == "iq") && e.Get("from") != "" && jid.MustParse(e.Get("from")).Bare().String() == "bob@localhost"
	})
	b.ExpectNone(quiet, func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("type") == "error" })

	// Outbound: alice is told she blocked bob.
	send(a, "bob@localhost", "from alice")
	e := a.Expect(bounced("from alice"))
	if servertest.ErrorCondition(e) != "not-acceptable" || e.Child("", "error").Child(blocking.NSErrors, "blocked") == nil {
		t.Errorf("outbound to blocked: %s, want not-acceptable with <blocked/>", e)
	}
	r = a.IQ("<iq type='get' id='v2' to='" + b.JID.String() + "'><query xmlns='jabber:iq:version'/></iq>")
	if servertest.ErrorCondition(r) != "not-acceptable" || r.Child("", "error").Child(blocking.NSErrors, "blocked") == nil {
		t.Errorf("iq to blocked: %s", r)
	}
	b.ExpectNone(quiet, func(e *elem.Element) bool {
		return e.Name.Local == "message" || (e.Name.Local == "iq" && e.Get("type") == "get")
	})

	// Unblocked: both directions work again.
	servertest.Must(t, blocklist.Remove(ctx(t), a.Session, jid.MustParse("bob@localhost")))
	send(b, "alice@localhost", "after")
	a.Expect(body("after"))
	send(a, "bob@localhost", "reply")
	b.Expect(body("reply"))
}

func TestMatchingRules(t *testing.T) {
	s := servertest.Start(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		s.AddUser(t, u, "p")
	}
	a := s.Dial(t, "alice", "p", "r")
	a2 := s.Dial(t, "alice", "p", "r2")
	phone := s.Dial(t, "bob", "p", "phone")
	laptop := s.Dial(t, "bob", "p", "laptop")
	c := s.Dial(t, "carol", "p", "r")
	for _, cl := range []*servertest.Client{a, a2, phone, laptop, c} {
		online(cl)
	}

	// A full JID blocks that resource only.
	// (servertest's client cannot choose its resource; the server names it.)
	servertest.Must(t, blocklist.Add(ctx(t), a.Session, phone.JID))
	send(phone, a.JID.String(), "from phone")
	phone.Expect(bounced("from phone"))
	send(laptop, a.JID.String(), "from laptop")
	a.Expect(body("from laptop"))

	// A domain blocks every account there, but never the user's own.
	servertest.Must(t, blocklist.Add(ctx(t), a.Session, jid.MustParse("localhost")))
	send(c, a.JID.String(), "from carol")
	c.Expect(bounced("from carol"))
	send(a2, a.JID.String(), "from myself")
	a.Expect(body("from myself"))

	// Unblocking the domain leaves the resource block in force.
	servertest.Must(t, blocklist.Remove(ctx(t), a.Session, jid.MustParse("localhost")))
	send(c, a.JID.String(), "carol again")
	a.Expect(body("carol again"))
	send(phone, a.JID.String(), "phone again")
	phone.Expect(bounced("phone again"))
}

func TestBlockHoldsWhileOfflineAndAcrossSessions(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "r")
	servertest.Must(t, blocklist.Add(ctx(t), a.Session, jid.MustParse("bob@localhost")))
	a.Close()
	for i := 0; len(s.XMPP.Host().Sessions("alice")) != 0; i++ {
		if i > 250 {
			t.Fatal("alice's session never ended")
		}
		time.Sleep(20 * time.Millisecond)
	}

	b := s.Dial(t, "bob", "pb", "r")
	online(b)
	send(b, "alice@localhost", "while you were out")
	if e := b.Expect(bounced("while you were out")); servertest.ErrorCondition(e) != "service-unavailable" {
		t.Fatalf("to offline blocker: %s", e)
	}
	if n, err := s.Store.CountOffline(context.Background(), "alice"); err != nil || n != 0 {
		t.Fatalf("%d messages from a blocked contact were stored offline (%v)", n, err)
	}

	a = s.Dial(t, "alice", "pa", "r")
	online(a)
	a.ExpectNone(quiet, body("while you were out"))
	if got := fetch(t, a); !slices.Equal(got, []string{"bob@localhost"}) {
		t.Fatalf("list in a new session: %v", got)
	}
}

func TestPresenceOnBlockAndUnblock(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "r")
	b := s.Dial(t, "bob", "pb", "r")
	a.IQ("<iq type='get' id='ra'><query xmlns='jabber:iq:roster'/></iq>")
	b.IQ("<iq type='get' id='rb'><query xmlns='jabber:iq:roster'/></iq>")
	online(a)
	online(b)
	fromAlice := func(typ string) func(*elem.Element) bool {
		return func(e *elem.Element) bool {
			return e.Name.Local == "presence" && e.Get("from") == a.JID.String() && e.Get("type") == typ
		}
	}
	// Mutual subscription.
	for _, p := range [][2]*servertest.Client{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		from.SendRaw("<presence to='" + to.JID.Bare().String() + "' type='subscribe'/>")
		to.Expect(func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("type") == "subscribe" })
		to.SendRaw("<presence to='" + from.JID.Bare().String() + "' type='subscribed'/>")
		from.Expect(func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("type") == "subscribed" })
	}
	a.SendRaw("<presence><status>here</status></presence>")
	b.Expect(func(e *elem.Element) bool {
		return fromAlice("")(e) && e.ChildText(elem.NSClient, "status") == "here"
	})

	servertest.Must(t, blocklist.Add(ctx(t), a.Session, jid.MustParse("bob@localhost")))
	b.Expect(fromAlice("unavailable"))

	// Alice's later broadcasts do not reach bob, and his do not reach her.
	a.SendRaw("<presence><show>away</show><status>still here</status></presence>")
	b.SendRaw("<presence><status>bob busy</status></presence>")
	b.ExpectNone(quiet, func(e *elem.Element) bool {
		return fromAlice("")(e) && e.ChildText(elem.NSClient, "status") == "still here"
	})
	a.ExpectNone(quiet, func(e *elem.Element) bool {
		return e.Name.Local == "presence" && e.Get("from") == b.JID.String() && e.ChildText(elem.NSClient, "status") == "bob busy"
	})

	// Unblocked, bob sees alice's current presence again.
	servertest.Must(t, blocklist.Remove(ctx(t), a.Session, jid.MustParse("bob@localhost")))
	// (The blocked broadcast never arrived, so this can only be the unblock.)
	p := b.Expect(func(e *elem.Element) bool {
		return fromAlice("")(e) && e.ChildText(elem.NSClient, "status") == "still here"
	})
	if p.ChildText(elem.NSClient, "show") != "away" {
		t.Fatalf("presence after unblock: %s", p)
	}
}
