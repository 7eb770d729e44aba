package private_test

import (
	"strings"
	"testing"

	"github.com/merveilles/hearth/server/servertest"
)

func TestStoreAndRetrieve(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "r")
	b := s.Dial(t, "bob", "pb", "r")

	// Nothing stored yet: the request comes back as it was.
	r := a.IQ("<iq type='get' id='g0'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>")
	if r.Get("type") != "result" || !strings.Contains(r.String(), `<query xmlns="jabber:iq:private"><exodus xmlns="exodus:prefs"/></query>`) {
		t.Fatalf("empty get: %s", r)
	}

	set := "<iq type='set' id='s1'><query xmlns='jabber:iq:private'>" +
		"<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>" +
		"<storage xmlns='storage:bookmarks'><conference jid='council@rooms.localhost' autojoin='true'/></storage>" +
		"</query></iq>"
	if r := a.IQ(set); r.Get("type") != "result" {
		t.Fatalf("set: %s", r)
	}
	r = a.IQ("<iq type='get' id='g1'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>")
	if got := r.String(); !strings.Contains(got, "<defaultnick>Hamlet</defaultnick>") || strings.Contains(got, "storage") {
		t.Fatalf("get exodus: %s", got)
	}
	r = a.IQ("<iq type='get' id='g2' to='alice@localhost'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>")
	if got := r.String(); !strings.Contains(got, `<conference jid="council@rooms.localhost" autojoin="true"/>`) {
		t.Fatalf("get bookmarks: %s", got)
	}
	// Same namespace, other element name: a different key.
	r = a.IQ("<iq type='get' id='g3'><query xmlns='jabber:iq:private'><other xmlns='exodus:prefs'/></query></iq>")
	if got := r.String(); strings.Contains(got, "Hamlet") {
		t.Fatalf("name is part of the key: %s", got)
	}
	// Bob's storage is his own.
	r = b.IQ("<iq type='get' id='g4'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>")
	if got := r.String(); strings.Contains(got, "Hamlet") {
		t.Fatalf("bob sees alice's data: %s", got)
	}
	// Replacing.
	a.IQ("<iq type='set' id='s2'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'><defaultnick>Ophelia</defaultnick></exodus></query></iq>")
	r = a.IQ("<iq type='get' id='g5'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>")
	if got := r.String(); !strings.Contains(got, "Ophelia") || strings.Contains(got, "Hamlet") {
		t.Fatalf("after replace: %s", got)
	}
}

func TestErrors(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "r")
	b := s.Dial(t, "bob", "pb", "r")
	a.IQ("<iq type='set' id='s0'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus></query></iq>")

	for _, c := range []struct {
		name, iq, want string
		cl             *servertest.Client
	}{
		{"bob reads alice's", "<iq type='get' id='e1' to='alice@localhost'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>", "forbidden", b},
		{"bob writes alice's", "<iq type='set' id='e2' to='alice@localhost'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'><defaultnick>Macbeth</defaultnick></exodus></query></iq>", "forbidden", b},
		{"to the server", "<iq type='get' id='e3' to='localhost'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>", "forbidden", a},
		{"reserved jabber:", "<iq type='set' id='e4'><query xmlns='jabber:iq:private'><query xmlns='jabber:iq:roster'/></query></iq>", "not-acceptable", a},
		{"reserved vcard-temp", "<iq type='set' id='e5'><query xmlns='jabber:iq:private'><vCard xmlns='vcard-temp'><FN>H</FN></vCard></query></iq>", "not-acceptable", a},
		{"get reserved", "<iq type='get' id='e6'><query xmlns='jabber:iq:private'><query xmlns='jabber:iq:last'/></query></iq>", "not-acceptable", a},
		{"empty get", "<iq type='get' id='e7'><query xmlns='jabber:iq:private'/></iq>", "not-acceptable", a},
		{"empty set", "<iq type='set' id='e8'><query xmlns='jabber:iq:private'/></iq>", "not-acceptable", a},
		{"get two", "<iq type='get' id='e9'><query xmlns='jabber:iq:private'><a xmlns='x:a'/><b xmlns='x:b'/></query></iq>", "not-acceptable", a},
	} {
		if r := c.cl.IQ(c.iq); servertest.ErrorCondition(r) != c.want {
			t.Errorf("%s: %s, want %s", c.name, r, c.want)
		}
	}
	// Nothing of bob's attempt landed.
	r := a.IQ("<iq type='get' id='g1'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>")
	if got := r.String(); !strings.Contains(got, "Hamlet") || strings.Contains(got, "Macbeth") {
		t.Fatalf("after refused writes: %s", got)
	}
}

func TestNumberOfKeysIsBounded(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "r")
	var last string
	for i := 0; i < 100; i++ {
		r := a.IQ(servertest.Sprintf("<iq type='set' id='k%d'><query xmlns='jabber:iq:private'><k xmlns='urn:test:%d'/></query></iq>", i, i))
		if r.Get("type") == "error" {
			last = servertest.ErrorCondition(r)
			if i < 10 {
				t.Fatalf("refused already at key %d: %s", i, r)
			}
			break
		}
	}
	if last != "resource-constraint" {
		t.Fatalf("100 keys accepted (last error %q), want resource-constraint", last)
	}
	// Replacing an existing key is still fine at the limit.
	if r := a.IQ("<iq type='set' id='rk'><query xmlns='jabber:iq:private'><k xmlns='urn:test:0'>v</k></query></iq>"); r.Get("type") != "result" {
		t.Fatalf("replace at the limit: %s", r)
	}
}
