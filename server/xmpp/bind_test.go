package xmpp_test

import (
	"strings"
	"testing"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
)

// RFC 6120 7.7.2.2: a second session binding the same resource replaces the
// first, which is told why with a <conflict/> stream error.
func TestResourceConflictReplacesOldSession(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	old := servertest.DialRaw(t, s.Addr)
	if got := old.Login("alice", "pa", "phone", ""); got != "alice@localhost/phone" {
		t.Fatalf("first bind: %s", got)
	}
	nw := servertest.DialRaw(t, s.Addr)
	if got := nw.Login("alice", "pa", "phone", ""); got != "alice@localhost/phone" {
		t.Fatalf("second bind: %s", got)
	}
	out := old.ReadUntil("</stream:stream>")
	if !strings.Contains(out, "<conflict") {
		t.Fatalf("old session got %q, want a conflict stream error", out)
	}
	// The new session works.
	nw.Write("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	if out := nw.ReadUntil("p1\""); !strings.Contains(out, "id=\"p1\"") && !strings.Contains(out, "id='p1'") {
		t.Fatalf("new session: %q", out)
	}
}

func TestSessionsPerAccountAreCapped(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) { c.Limits.MaxSessionsPerAccount = 2 })
	s.AddUser(t, "alice", "pa")
	servertest.DialRaw(t, s.Addr).Login("alice", "pa", "one", "")
	servertest.DialRaw(t, s.Addr).Login("alice", "pa", "two", "")
	r := servertest.DialRaw(t, s.Addr)
	r.StartTLS("")
	r.Write(servertest.Header(""))
	r.ReadUntil("</stream:features>")
	r.Write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHBh</auth>")
	r.ReadUntil("<success")
	r.Write(servertest.Header(""))
	r.ReadUntil("</stream:features>")
	r.Write("<iq type='set' id='b3'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>three</resource></bind></iq>")
	if out := r.ReadUntil("</iq>"); !strings.Contains(out, "resource-constraint") {
		t.Fatalf("third session: %q", out)
	}
}
