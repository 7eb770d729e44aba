package xmpp_test

import (
	"encoding/base64"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// An idle session drops its XML decoder after two seconds and rebuilds it
// when the client speaks again, in the namespace context of the client's
// own stream header.
func TestSessionWakesFromHibernationWithItsNamespaces(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	b := s.Dial(t, "bob", "pb", "bob")
	b.SendRaw("<presence/>")

	r := servertest.DialRaw(t, s.Addr)
	r.StartTLS("")
	// A header declaring an extra prefix, used later in a stanza.
	hdr := "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:x='urn:example:extra' to='localhost' version='1.0'>"
	r.Write(hdr)
	r.ReadUntil("</stream:features>")
	r.Write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00pa")) + "</auth>")
	r.ReadUntil("<success")
	r.Write(hdr)
	r.ReadUntil("</stream:features>")
	r.Write("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")
	r.ReadUntil("</iq>")

	for round := 0; round < 2; round++ {
		time.Sleep(3500 * time.Millisecond)
		r.Write("<message to='bob@localhost/bob' type='chat'><body>after sleep</body><x:note>n</x:note></message>")
		got := b.Expect(func(e *elem.Element) bool {
			return e.Name.Local == "message" && e.ChildText("", "body") == "after sleep"
		})
		if got.Child("urn:example:extra", "note") == nil {
			t.Fatalf("round %d: the prefixed element lost its namespace: %s", round, got)
		}
	}
	// Malformed input after waking is still a stream error.
	time.Sleep(3500 * time.Millisecond)
	r.Write("<message><unclosed></message>")
	if out := r.ReadUntil("</stream:stream>"); !strings.Contains(out, "not-well-formed") {
		t.Fatalf("got %q", out)
	}
}

// Many idle sessions must not each keep a deep goroutine stack.
func TestIdleSessionStackIsSmall(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures memory (the race detector makes stacks larger)")
	}
	s := servertest.Start(t, func(c *config.Config) { c.Limits.MaxSessionsPerAccount = 1000 })
	s.AddUser(t, "alice", "pa")
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.StackInuse
	const n = 200
	for i := 0; i < n; i++ {
		servertest.DialRaw(t, s.Addr).Login("alice", "pa", servertest.Sprintf("r%d", i), "")
	}
	// Sessions read normally for a second before parking shallow.
	time.Sleep(1500 * time.Millisecond)
	for i := 0; i < 6; i++ {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	per := float64(ms.StackInuse-before) / n
	t.Logf("stack per idle session: %.1f KiB", per/1024)
	// A session parked inside TLS and the XML decoder keeps 8-16 KiB.
	if per > 6*1024 {
		t.Fatalf("stack per idle session %.1f KiB, want at most 6 KiB", per/1024)
	}
}
