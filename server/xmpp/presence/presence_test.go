package presence_test

import (
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

const nsRoster = "jabber:iq:roster"

func pres(typ, from string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		if e.Name.Local != "presence" || e.Get("type") != typ {
			return false
		}
		if from == "" {
			return true
		}
		return e.Get("from") == from || (len(e.Get("from")) > len(from) && e.Get("from")[:len(from)+1] == from+"/")
	}
}

func subscription(c *servertest.Client, contact string) (sub, ask string) {
	r := c.IQ("<iq type='get' id='r" + contact + "'><query xmlns='jabber:iq:roster'/></iq>")
	for _, it := range r.Child(nsRoster, "query").Elements() {
		if it.Get("jid") == contact {
			return it.Get("subscription"), it.Get("ask")
		}
	}
	return "", ""
}

func available(c *servertest.Client) {
	c.SendRaw("<presence/>")
	c.Expect(func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("from") == c.JID.String() })
}

// subscribe makes from subscribe to to's presence and to approve it.
func subscribe(t *testing.T, from, to *servertest.Client) {
	t.Helper()
	from.SendRaw("<presence to='" + to.JID.Bare().String() + "' type='subscribe'/>")
	to.Expect(pres("subscribe", from.JID.Bare().String()))
	to.SendRaw("<presence to='" + from.JID.Bare().String() + "' type='subscribed'/>")
	from.Expect(pres("subscribed", to.JID.Bare().String()))
}

func TestMutualSubscriptionAndBroadcast(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	b := s.Dial(t, "bob", "pb", "")
	a.IQ("<iq type='get' id='ra'><query xmlns='jabber:iq:roster'/></iq>")
	b.IQ("<iq type='get' id='rb'><query xmlns='jabber:iq:roster'/></iq>")
	available(a)
	available(b)

	a.SendRaw("<presence to='bob@localhost' type='subscribe'/>")
	if sub, ask := subscription(a, "bob@localhost"); sub != "none" || ask != "subscribe" {
		t.Fatalf("after subscribe: alice sees %q ask=%q", sub, ask)
	}
	in := b.Expect(pres("subscribe", "alice@localhost"))
	if in.Get("from") != "alice@localhost" {
		t.Errorf("subscribe must come from the bare JID, got %q", in.Get("from"))
	}
	b.SendRaw("<presence to='alice@localhost' type='subscribed'/>")
	a.Expect(pres("subscribed", "bob@localhost"))
	// Alice now gets Bob's current presence.
	a.Expect(pres("", "bob@localhost"))
	if sub, _ := subscription(a, "bob@localhost"); sub != "to" {
		t.Fatalf("alice: %q, want to", sub)
	}
	if sub, _ := subscription(b, "alice@localhost"); sub != "from" {
		t.Fatalf("bob: %q, want from", sub)
	}
	subscribe(t, b, a)
	if sub, _ := subscription(a, "bob@localhost"); sub != "both" {
		t.Fatalf("alice: %q, want both", sub)
	}

	// Broadcast: a status change reaches the contact.
	a.SendRaw("<presence><show>away</show><status>lunch</status></presence>")
	p := b.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "presence" && e.Get("from") == a.JID.String() && e.ChildText("", "status") == "lunch"
	})
	if p.ChildText("", "show") != "away" {
		t.Errorf("broadcast: %s", p)
	}
	// Going offline (dropping the connection) is broadcast as unavailable.
	a.Close()
	b.Expect(pres("unavailable", a.JID.String()))
}

func TestProbeOnLoginAndPendingRequestsRedelivered(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	s.AddUser(t, "carol", "pc")
	a := s.Dial(t, "alice", "pa", "")
	b := s.Dial(t, "bob", "pb", "")
	available(a)
	available(b)
	subscribe(t, a, b)
	a.Close()

	// Carol asks Alice while Alice is offline.
	c := s.Dial(t, "carol", "pc", "")
	c.SendRaw("<presence to='alice@localhost' type='subscribe'/>")
	time.Sleep(100 * time.Millisecond)

	a2 := s.Dial(t, "alice", "pa", "")
	a2.SendRaw("<presence/>")
	// The probe on login brings Bob's presence; Carol's request is waiting.
	a2.Expect(pres("", "bob@localhost"))
	a2.Expect(pres("subscribe", "carol@localhost"))
}

func TestDirectedPresenceAndUnavailableOnDisconnect(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	b := s.Dial(t, "bob", "pb", "")
	available(a)
	available(b)
	a.SendRaw("<presence to='" + b.JID.String() + "'><status>hello</status></presence>")
	b.Expect(pres("", a.JID.String()))
	a.Close()
	b.Expect(pres("unavailable", a.JID.String()))
}

func TestNoPresenceLeakWithoutSubscription(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	b := s.Dial(t, "bob", "pb", "")
	available(b)
	available(a)
	a.SendRaw("<presence><status>secret</status></presence>")
	b.ExpectNone(300*time.Millisecond, pres("", "alice@localhost"))
	// A probe from someone not subscribed gets nothing.
	b.SendRaw("<presence to='alice@localhost' type='probe'/>")
	b.ExpectNone(300*time.Millisecond, pres("", "alice@localhost"))
}

func TestUnsubscribeAndUnsubscribed(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	b := s.Dial(t, "bob", "pb", "")
	available(a)
	available(b)
	subscribe(t, a, b)
	subscribe(t, b, a)
	a.SendRaw("<presence to='bob@localhost' type='unsubscribe'/>")
	b.Expect(pres("unsubscribe", "alice@localhost"))
	// RFC 6121 3.3.3: Alice no longer sees Bob online.
	a.Expect(pres("unavailable", b.JID.String()))
	if sub, _ := subscription(a, "bob@localhost"); sub != "from" {
		t.Fatalf("alice after unsubscribe: %q, want from", sub)
	}
	if sub, _ := subscription(b, "alice@localhost"); sub != "to" {
		t.Fatalf("bob after alice's unsubscribe: %q, want to", sub)
	}
	a.SendRaw("<presence to='bob@localhost' type='unsubscribed'/>")
	b.Expect(pres("unsubscribed", "alice@localhost"))
	b.Expect(pres("unavailable", a.JID.String()))
	if sub, _ := subscription(a, "bob@localhost"); sub != "none" {
		t.Fatalf("alice: %q, want none", sub)
	}
	if sub, _ := subscription(b, "alice@localhost"); sub != "none" {
		t.Fatalf("bob: %q, want none", sub)
	}
}

func TestPendingSubscriptionCap(t *testing.T) {
	const limit = 3
	s := servertest.Start(t, func(c *config.Config) { c.Limits.MaxPendingSubscriptions = limit })
	s.AddUser(t, "victim", "pv")
	s.AddUser(t, "spammer", "ps")
	sp := s.Dial(t, "spammer", "ps", "")
	available(sp)
	// Requests claim many different contacts via distinct local accounts'
	// names; the cap is per target account.
	for i := 0; i < limit; i++ {
		s.AddUser(t, servertest.Sprintf("u%d", i), "pw")
		c := s.Dial(t, servertest.Sprintf("u%d", i), "pw", "")
		c.SendRaw("<presence to='victim@localhost' type='subscribe'/>")
	}
	time.Sleep(200 * time.Millisecond)
	sp.SendRaw("<presence to='victim@localhost' type='subscribe'/>")
	e := sp.Expect(pres("error", "victim@localhost"))
	if servertest.ErrorCondition(e) != "resource-constraint" {
		t.Fatalf("over the cap: %s", e)
	}
	// The victim still works and sees the requests that fit.
	v := s.Dial(t, "victim", "pv", "")
	v.SendRaw("<presence/>")
	for i := 0; i < limit; i++ {
		v.Expect(pres("subscribe", servertest.Sprintf("u%d@localhost", i)))
	}
}

func TestRemovingASubscriberSendsUnavailable(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "")
	b := s.Dial(t, "bob", "pb", "")
	available(a)
	available(b)
	subscribe(t, b, a)
	a.IQ("<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>")
	b.Expect(pres("unsubscribed", "alice@localhost"))
	b.Expect(pres("unavailable", a.JID.String()))
	if sub, _ := subscription(b, "alice@localhost"); sub != "none" {
		t.Fatalf("bob: %q, want none", sub)
	}
}
