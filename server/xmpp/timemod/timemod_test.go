package timemod_test

import (
	"testing"
	"time"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/timemod"
)

func TestEntityTime(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "r")
	before := time.Now()
	r := a.IQ("<iq type='get' id='t1' to='localhost'><time xmlns='urn:xmpp:time'/></iq>")
	after := time.Now()
	q := r.Child(timemod.NS, "time")
	if r.Get("type") != "result" || q == nil {
		t.Fatalf("time: %s", r)
	}
	if tzo := q.ChildText(timemod.NS, "tzo"); tzo != "+00:00" {
		t.Errorf("tzo %q", tzo)
	}
	utc := q.ChildText(timemod.NS, "utc")
	got, err := time.Parse(time.RFC3339Nano, utc)
	if err != nil || got.Location() != time.UTC {
		t.Fatalf("utc %q is not an XEP-0082 UTC time: %v", utc, err)
	}
	// Millisecond precision: allow the truncation.
	if got.Before(before.Truncate(time.Millisecond)) || got.After(after) {
		t.Errorf("server time %v is not between %v and %v", got, before, after)
	}
}
