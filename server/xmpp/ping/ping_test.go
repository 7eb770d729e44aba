package ping_test

import (
	"context"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	mping "mellium.im/xmpp/ping"

	"github.com/merveilles/hearth/server/servertest"
)

func TestPingServer(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "r")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := mping.Send(ctx, a.Session, jid.MustParse(servertest.Domain)); err != nil {
		t.Fatalf("ping the server: %v", err)
	}
	r := a.IQ("<iq type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	if r.Get("type") != "result" || r.Get("from") != "localhost" || len(r.Elements()) != 0 {
		t.Fatalf("pong: %s", r)
	}
	// Without 'to' the server answers for the account.
	if r := a.IQ("<iq type='get' id='p3'><ping xmlns='urn:xmpp:ping'/></iq>"); r.Get("type") != "result" {
		t.Fatalf("ping without to: %s", r)
	}
	// A ping set is not a ping.
	if r := a.IQ("<iq type='set' id='p4' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"); servertest.ErrorCondition(r) != "service-unavailable" {
		t.Fatalf("ping set: %s", r)
	}
	// Another account's bare JID is not answered by the server.
	if r := a.IQ("<iq type='get' id='p5' to='bob@localhost'><ping xmlns='urn:xmpp:ping'/></iq>"); servertest.ErrorCondition(r) != "service-unavailable" {
		t.Fatalf("ping to a bare JID: %s", r)
	}
}
