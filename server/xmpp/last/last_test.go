package last_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/last"
)

func seconds(t *testing.T, r *elem.Element) (int, string) {
	t.Helper()
	q := r.Child(last.NS, "query")
	if r.Get("type") != "result" || q == nil {
		t.Fatalf("want a last activity result, got %s", r)
	}
	n, err := strconv.Atoi(q.Get("seconds"))
	if err != nil || n < 0 {
		t.Fatalf("seconds %q", q.Get("seconds"))
	}
	return n, q.Text()
}

func pres(typ, from string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		return e.Name.Local == "presence" && e.Get("type") == typ && (e.Get("from") == from || len(e.Get("from")) > len(from) && e.Get("from")[:len(from)+1] == from+"/")
	}
}

// subscribe makes from subscribe to to's presence, approved by to.
func subscribe(from, to *servertest.Client) {
	from.SendRaw("<presence to='" + to.JID.Bare().String() + "' type='subscribe'/>")
	to.Expect(pres("subscribe", from.JID.Bare().String()))
	to.SendRaw("<presence to='" + from.JID.Bare().String() + "' type='subscribed'/>")
	from.Expect(pres("subscribed", to.JID.Bare().String()))
}

func TestServerUptime(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "r")
	n, _ := seconds(t, a.IQ("<iq type='get' id='u1' to='localhost'><query xmlns='jabber:iq:last'/></iq>"))
	if n > 60 {
		t.Fatalf("a server started moments ago reports %d s of uptime", n)
	}
}

func TestAccountLastActivity(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	s.AddUser(t, "carol", "pc")
	a := s.Dial(t, "alice", "pa", "r")
	b := s.Dial(t, "bob", "pb", "r")
	c := s.Dial(t, "carol", "pc", "r")
	a.IQ("<iq type='get' id='ra'><query xmlns='jabber:iq:roster'/></iq>")
	b.IQ("<iq type='get' id='rb'><query xmlns='jabber:iq:roster'/></iq>")
	for _, cl := range []*servertest.Client{a, b} {
		cl.SendRaw("<presence/>")
		cl.Expect(pres("", cl.JID.String()))
	}
	subscribe(b, a) // alice's roster: bob, subscription from

	ask := func(cl *servertest.Client, id string) *elem.Element {
		return cl.IQ("<iq type='get' id='" + id + "' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>")
	}
	if n, _ := seconds(t, ask(b, "l1")); n != 0 {
		t.Fatalf("alice is online, bob got %d s", n)
	}
	if n, _ := seconds(t, a.IQ("<iq type='get' id='l2'><query xmlns='jabber:iq:last'/></iq>")); n != 0 {
		t.Fatalf("alice asking about herself: %d s", n)
	}
	if r := ask(c, "l3"); servertest.ErrorCondition(r) != "forbidden" {
		t.Fatalf("carol has no subscription: %s, want forbidden", r)
	}
	if r := b.IQ("<iq type='get' id='l4' to='nobody@localhost'><query xmlns='jabber:iq:last'/></iq>"); servertest.ErrorCondition(r) != "service-unavailable" {
		t.Fatalf("missing account: %s", r)
	}

	// Alice says goodbye and leaves: bob learns her status.
	a.SendRaw("<presence type='unavailable'><status>gone fishing</status></presence>")
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := ask(b, "l5")
		if r.Get("type") == "result" {
			if n, status := seconds(t, r); status == "gone fishing" {
				if n > 60 {
					t.Fatalf("logged out moments ago, reported %d s", n)
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no logout recorded: %s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := ask(c, "l6"); servertest.ErrorCondition(r) != "forbidden" {
		t.Fatalf("carol, alice offline: %s, want forbidden", r)
	}
}

func TestSecondsCountFromTheRecordedLogout(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	ctx := context.Background()
	_, err := s.Store.UpdateRosterItem(ctx, "alice", "bob@localhost", func(it *store.RosterItem) (bool, bool, error) {
		it.Subscription, it.InRoster = "both", true
		return true, true, nil
	})
	servertest.Must(t, err)
	b := s.Dial(t, "bob", "pb", "r")

	// Never logged out: nothing to tell.
	r := b.IQ("<iq type='get' id='l0' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>")
	if servertest.ErrorCondition(r) != "service-unavailable" {
		t.Fatalf("no record: %s", r)
	}
	raw, _ := json.Marshal(map[string]any{"time": time.Now().Add(-time.Hour), "status": "away"})
	servertest.Must(t, s.Store.PutUserData(ctx, "alice", "last", "logout", raw))
	n, status := seconds(t, b.IQ("<iq type='get' id='l1' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>"))
	if n < 3600 || n > 3660 || status != "away" {
		t.Fatalf("an hour ago: %d s, %q", n, status)
	}
	// Online again: zero, whatever was recorded.
	s.Dial(t, "alice", "pa", "r")
	if n, _ := seconds(t, b.IQ("<iq type='get' id='l2' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>")); n != 0 {
		t.Fatalf("online: %d s", n)
	}
}

func TestLogoutOfOneResourceKeepsAccountOnline(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	ctx := context.Background()
	_, err := s.Store.UpdateRosterItem(ctx, "alice", "bob@localhost", func(it *store.RosterItem) (bool, bool, error) {
		it.Subscription, it.InRoster = "from", true
		return true, true, nil
	})
	servertest.Must(t, err)
	a1 := s.Dial(t, "alice", "pa", "one")
	s.Dial(t, "alice", "pa", "two")
	b := s.Dial(t, "bob", "pb", "r")
	a1.Close()
	// Wait until the server has dropped the first session.
	for i := 0; len(s.XMPP.Host().Sessions("alice")) != 1; i++ {
		if i > 250 {
			t.Fatal("first session never ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, _ := seconds(t, b.IQ("<iq type='get' id='l1' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>")); n != 0 {
		t.Fatalf("one resource still online: %d s", n)
	}
	if _, err := s.Store.GetUserData(ctx, "alice", "last", "logout"); err == nil {
		t.Fatal("a logout was recorded while another session remained")
	}
}
