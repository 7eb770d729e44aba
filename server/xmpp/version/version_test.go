package version_test

import (
	"testing"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/version"
)

func TestVersion(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "r")
	r := a.IQ("<iq type='get' id='v1' to='localhost'><query xmlns='jabber:iq:version'/></iq>")
	q := r.Child(version.NS, "query")
	if r.Get("type") != "result" || q == nil {
		t.Fatalf("version: %s", r)
	}
	if n, v := q.ChildText(version.NS, "name"), q.ChildText(version.NS, "version"); n != "hearth" || v != "dev" {
		t.Errorf("name %q version %q, want hearth dev", n, v)
	}
	if q.Child(version.NS, "os") != nil {
		t.Errorf("the operating system must not be disclosed: %s", r)
	}
	if r := a.IQ("<iq type='set' id='v2' to='localhost'><query xmlns='jabber:iq:version'/></iq>"); servertest.ErrorCondition(r) != "service-unavailable" {
		t.Errorf("version set: %s", r)
	}
}
