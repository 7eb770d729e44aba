package xmpp_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/servertest"
)

func TestLoginStartTLSAndDirectTLS(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "correct horse")
	for _, mech := range []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1, sasl.Plain} {
		for _, direct := range []bool{false, true} {
			sess, err := s.DialErr("alice", "correct horse", "r1", direct, mech)
			if err != nil {
				t.Fatalf("%s direct=%v: %v", mech.Name, direct, err)
			}
			if got := sess.LocalAddr(); got.Bare().String() != "alice@localhost" || got.Resourcepart() == "" {
				t.Errorf("%s: bound %q, want alice@localhost/<resource>", mech.Name, got)
			}
			if !sess.ConnectionState().HandshakeComplete {
				t.Errorf("%s: not TLS", mech.Name)
			}
			sess.Close()
		}
	}
}

func TestWrongPasswordFails(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "correct horse")
	if _, err := s.DialErr("alice", "wrong", "r1", false, sasl.ScramSha256); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if _, err := s.DialErr("nobody", "wrong", "r1", false, sasl.Plain); err == nil {
		t.Fatal("login to a missing account succeeded")
	}
}

// mellium's BindResource binds whatever JID the client claims in its stream
// header; hearth must bind the SASL identity instead.
func TestBindIsTheAuthenticatedIdentity(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "mallory", "pw-mallory")
	s.AddUser(t, "alice", "pw-alice")
	r := servertest.DialRaw(t, s.Addr)
	got := r.Login("mallory", "pw-mallory", "stolen", "alice@localhost/stolen")
	if got != "mallory@localhost/stolen" {
		t.Fatalf("bound %s while authenticated as mallory and claiming alice", got)
	}
}

func TestAuthzidOfAnotherAccountIsRefused(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "mallory", "pw-mallory")
	s.AddUser(t, "alice", "pw-alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = xmpp.NewClientSession(ctx, jid.MustParse("mallory@localhost"), conn,
		xmpp.StartTLS(servertest.TLSConfig()),
		xmpp.SASL("alice@localhost", "pw-mallory", sasl.Plain),
		xmpp.BindResource())
	if err == nil || !strings.Contains(err.Error(), "invalid-authzid") {
		t.Fatalf("authzid naming another account: got %v, want invalid-authzid", err)
	}
}
