package roster_test

import (
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

const ns = "jabber:iq:roster"

func isPush(jid string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		if e.Name.Local != "iq" || e.Get("type") != "set" {
			return false
		}
		q := e.Child(ns, "query")
		return q != nil && q.Child(ns, "item") != nil && q.Child(ns, "item").Get("jid") == jid
	}
}

func TestRosterSetGetRemoveWithPushesAndVersions(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a1 := s.Dial(t, "alice", "pa", "")
	a2 := s.Dial(t, "alice", "pa", "")

	r := a1.IQ("<iq type='get' id='g0'><query xmlns='jabber:iq:roster'/></iq>")
	q := r.Child(ns, "query")
	if r.Get("type") != "result" || q == nil || q.Get("ver") == "" || len(q.Elements()) != 0 {
		t.Fatalf("empty roster: %s", r)
	}
	v0 := q.Get("ver")
	a2.IQ("<iq type='get' id='g0b'><query xmlns='jabber:iq:roster'/></iq>")

	r = a1.IQ("<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'><group>Friends</group></item></query></iq>")
	if r.Get("type") != "result" {
		t.Fatalf("set: %s", r)
	}
	for _, c := range []*servertest.Client{a1, a2} {
		p := c.Expect(isPush("bob@localhost"))
		it := p.Child(ns, "query").Child(ns, "item")
		if it.Get("name") != "Bob" || it.Get("subscription") != "none" || it.ChildText(ns, "group") != "Friends" {
			t.Errorf("push: %s", p)
		}
		if p.Get("from") != "" && p.Get("from") != "alice@localhost" {
			t.Errorf("push from %q", p.Get("from"))
		}
	}

	r = a1.IQ("<iq type='get' id='g1' ><query xmlns='jabber:iq:roster' ver='" + v0 + "'/></iq>")
	q = r.Child(ns, "query")
	if q == nil || q.Get("ver") == v0 || len(q.Elements()) != 1 {
		t.Fatalf("versioned get after change should return the full roster with a new version: %s", r)
	}
	v1 := q.Get("ver")
	r = a1.IQ("<iq type='get' id='g2'><query xmlns='jabber:iq:roster' ver='" + v1 + "'/></iq>")
	if r.Get("type") != "result" || r.Child(ns, "query") != nil {
		t.Fatalf("unchanged roster should be an empty result: %s", r)
	}

	r = a1.IQ("<iq type='set' id='s2'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>")
	if r.Get("type") != "result" {
		t.Fatalf("remove: %s", r)
	}
	p := a2.Expect(isPush("bob@localhost"))
	if p.Child(ns, "query").Child(ns, "item").Get("subscription") != "remove" {
		t.Fatalf("remove push: %s", p)
	}
	r = a1.IQ("<iq type='set' id='s3'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>")
	if servertest.ErrorCondition(r) != "item-not-found" {
		t.Fatalf("removing a missing item: %s", r)
	}
}

func TestRosterSetErrors(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "")
	cases := map[string]string{
		"<iq type='set' id='e1'><query xmlns='jabber:iq:roster'><item jid='a@localhost'/><item jid='b@localhost'/></query></iq>":              "bad-request",
		"<iq type='set' id='e2'><query xmlns='jabber:iq:roster'><item jid='a@localhost'><group>x</group><group>x</group></item></query></iq>": "bad-request",
		"<iq type='set' id='e3'><query xmlns='jabber:iq:roster'><item jid='a@localhost'><group></group></item></query></iq>":                  "not-acceptable",
		"<iq type='set' id='e4'><query xmlns='jabber:iq:roster'><item jid='@@bad'/></query></iq>":                                             "jid-malformed",
		"<iq type='set' id='e5'><query xmlns='jabber:iq:roster'><item jid='alice@localhost'/></query></iq>":                                   "not-allowed",
		"<iq type='get' id='e6' to='bob@localhost'><query xmlns='jabber:iq:roster'/></iq>":                                                    "service-unavailable",
	}
	for raw, want := range cases {
		if got := servertest.ErrorCondition(a.IQ(raw)); got != want {
			t.Errorf("%s: got %q, want %q", raw, got, want)
		}
	}
}

func TestRosterSizeLimit(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) { c.Limits.MaxRosterItems = 2 })
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "")
	for i, j := range []string{"a@localhost", "b@localhost"} {
		if r := a.IQ(servertest.Sprintf("<iq type='set' id='x%d'><query xmlns='jabber:iq:roster'><item jid='%s'/></query></iq>", i, j)); r.Get("type") != "result" {
			t.Fatal(r)
		}
	}
	r := a.IQ("<iq type='set' id='x3'><query xmlns='jabber:iq:roster'><item jid='c@localhost'/></query></iq>")
	if servertest.ErrorCondition(r) != "resource-constraint" {
		t.Fatalf("over the limit: %s", r)
	}
	// Updating an existing item is still fine.
	if r := a.IQ("<iq type='set' id='x4'><query xmlns='jabber:iq:roster'><item jid='a@localhost' name='A'/></query></iq>"); r.Get("type") != "result" {
		t.Fatal(r)
	}
	_ = time.Second
}
