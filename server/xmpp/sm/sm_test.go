package sm_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

const smNS = "urn:xmpp:sm:3"

var (
	idRe = regexp.MustCompile(`<enabled[^>]* id=['"]([^'"]+)['"]`)
	hRe  = regexp.MustCompile(`<a [^>]*h=['"](\d+)['"]`)
)

// authRaw runs STARTTLS and SASL PLAIN and returns the stream features
// offered after authentication.
func authRaw(t *testing.T, s *servertest.Server, user, pass string) (*servertest.Raw, string) {
	t.Helper()
	r := servertest.DialRaw(t, s.Addr)
	r.StartTLS("")
	r.Write(servertest.Header(""))
	r.ReadUntil("</stream:features>")
	r.Write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)) + "</auth>")
	r.ReadUntil("<success")
	r.Write(servertest.Header(""))
	return r, r.ReadUntil("</stream:features>")
}

// smClient logs in, binds resource and enables stream management; it
// returns the resumption id ("" without resume).
func smClient(t *testing.T, s *servertest.Server, user, pass, resource string, resume bool) (*servertest.Raw, string) {
	t.Helper()
	r, features := authRaw(t, s, user, pass)
	if !strings.Contains(features, "<sm xmlns='"+smNS+"'") && !strings.Contains(features, `<sm xmlns="`+smNS+`"`) {
		t.Fatalf("no stream management feature after authentication: %s", features)
	}
	r.Write("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + resource + "</resource></bind></iq>")
	r.ReadUntil("</iq>")
	if resume {
		r.Write("<enable xmlns='" + smNS + "' resume='true'/>")
	} else {
		r.Write("<enable xmlns='" + smNS + "'/>")
	}
	out := r.ReadUntil("/>")
	if !strings.Contains(out, "<enabled") {
		t.Fatalf("enable: got %s", out)
	}
	m := idRe.FindStringSubmatch(out)
	if resume {
		if m == nil || !strings.Contains(out, "resume") || !strings.Contains(out, "max=") {
			t.Fatalf("no resumable id or max in %s", out)
		}
		return r, m[1]
	}
	if m != nil {
		t.Fatalf("an id without resume: %s", out)
	}
	return r, ""
}

// ackValue asks for an ack and returns h.
func ackValue(t *testing.T, r *servertest.Raw) string {
	t.Helper()
	r.Write("<r xmlns='" + smNS + "'/>")
	return waitAck(t, r)
}

// waitH asks for an ack and reads acks (the server sends one unasked when
// durable writes it was waiting for finish) until h is want; an h above
// want fails the test.
func waitH(t *testing.T, r *servertest.Raw, want uint32) {
	t.Helper()
	r.Write("<r xmlns='" + smNS + "'/>")
	for {
		h := waitAck(t, r)
		var got uint32
		fmt.Sscan(h, &got)
		if got == want {
			return
		}
		if got > want {
			t.Fatalf("h = %d, want %d", got, want)
		}
	}
}

func waitAck(t *testing.T, r *servertest.Raw) string {
	t.Helper()
	out := r.ReadUntil("/>")
	for !hRe.MatchString(out) {
		out += r.ReadUntil("/>")
	}
	return hRe.FindAllStringSubmatch(out, -1)[len(hRe.FindAllStringSubmatch(out, -1))-1][1]
}

func body(text string) func(*elem.Element) bool {
	return func(e *elem.Element) bool { return e.Name.Local == "message" && e.ChildText("", "body") == text }
}

func msg(to, text string) string {
	return fmt.Sprintf("<message to='%s' type='chat'><body>%s</body></message>", to, text)
}

func TestEnableAndAckCountingBothWays(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	b := s.Dial(t, "bob", "pb", "phone")
	a, _ := smClient(t, s, "alice", "pa", "r", false)

	// Inbound: h counts the client's stanzas.
	for i := 0; i < 3; i++ {
		a.Write(msg(b.JID.String(), fmt.Sprintf("in %d", i)))
		b.Expect(body(fmt.Sprintf("in %d", i)))
	}
	waitH(t, a, 3)
	// Outbound: after five unacked stanzas the server asks for an ack.
	for i := 0; i < 5; i++ {
		b.SendRaw(msg("alice@localhost/r", fmt.Sprintf("out %d", i)))
	}
	out := a.ReadUntil(`<r xmlns="` + smNS + `"/>`)
	for i := 0; i < 5; i++ {
		if !strings.Contains(out, fmt.Sprintf("out %d", i)) {
			t.Fatalf("message %d missing before <r/>: %s", i, out)
		}
	}
	a.Write("<a xmlns='" + smNS + "' h='5'/>")
	// Acking more than was sent ends the stream.
	a.Write("<a xmlns='" + smNS + "' h='9'/>")
	if out := a.ReadUntil("</stream:stream>"); !strings.Contains(out, "undefined-condition") || !strings.Contains(out, "too high") {
		t.Fatalf("got %s", out)
	}
}

func TestEnableTwiceAndBeforeBindFail(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	r, _ := authRaw(t, s, "alice", "pa")
	r.Write("<enable xmlns='" + smNS + "'/>")
	if out := r.ReadUntil("</failed>"); !strings.Contains(out, "unexpected-request") {
		t.Fatalf("enable before bind: %s", out)
	}
	a, _ := smClient(t, s, "alice", "pa", "x", true)
	a.Write("<enable xmlns='" + smNS + "'/>")
	if out := a.ReadUntil("</failed>"); !strings.Contains(out, "unexpected-request") {
		t.Fatalf("second enable: %s", out)
	}
}

// holder holds the ack of messages whose body starts with "hold".
type holder struct {
	releases chan func(error)
}

func (*holder) Name() string { return "test-holder" }

func (m *holder) Register(h *xmpp.Host) error {
	hook := func(ctx context.Context, ev *xmpp.Event) bool {
		if strings.HasPrefix(ev.Stanza.El.ChildText("", "body"), "hold") {
			rel := ev.Stanza.HoldAck()
			st := ev.Stanza
			// Copied now: later hooks change the element as it is routed.
			el := st.El.Copy()
			m.releases <- func(err error) {
				rel(err)
				if err != nil {
					// As an archive does: the sender learns the write failed.
					h.Bounce(ctx, &xmpp.Stanza{El: el, From: st.From, To: st.To, Origin: st.Origin},
						&xmpp.StanzaError{Type: "wait", Condition: "resource-constraint", Text: "not stored"})
				}
			}
		}
		return false
	}
	h.Hook("message/full", 1000, hook)
	return nil
}

func TestAckOnlyAfterDurableAndInOrder(t *testing.T) {
	s := servertest.Start(t)
	hold := &holder{releases: make(chan func(error), 10)}
	if err := s.XMPP.Register(hold); err != nil {
		t.Fatal(err)
	}
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	b := s.Dial(t, "bob", "pb", "phone")
	a, _ := smClient(t, s, "alice", "pa", "r", false)
	to := b.JID.String()

	a.Write(msg(to, "plain 1"))
	a.Write(msg(to, "hold A"))
	a.Write(msg(to, "hold B"))
	a.Write(msg(to, "plain 2"))
	b.Expect(body("plain 2")) // delivery does not wait for the disk
	relA, relB := <-hold.releases, <-hold.releases
	// Only "plain 1" (once the archive has it) while A and B are held.
	waitH(t, a, 1)
	relB(nil) // B is durable before A: still only the prefix counts
	if h := ackValue(t, a); h != "1" {
		t.Fatalf("h with A held, B released = %s, want 1", h)
	}
	// The client asked while A was pending: the server acks unasked once
	// A is durable, covering B and the plain message after it.
	relA(nil)
	if h := waitAck(t, a); h != "4" {
		t.Fatalf("h after A released = %s, want 4", h)
	}

	// A failed write: the sender gets an error, and h never covers it (nor
	// anything after it, since h is a count).
	a.Write("<message id='c1' to='" + to + "' type='chat'><body>hold C</body></message>")
	relC := <-hold.releases
	relC(errors.New("disk full"))
	if out := a.ReadUntil("</message>"); !strings.Contains(out, "resource-constraint") || !strings.Contains(out, "c1") {
		t.Fatalf("no stanza error for the failed write: %s", out)
	}
	a.Write(msg(to, "plain 3"))
	b.Expect(body("plain 3"))
	// "plain 3" is archived (the error came after C's hold was released);
	// give the archive's group commit time to finish before asking.
	time.Sleep(300 * time.Millisecond)
	if h := ackValue(t, a); h != "4" {
		t.Fatalf("h after a failed write = %s, want 4", h)
	}
}

// resumeRaw opens a new connection and resumes previd having received h
// stanzas; it returns the connection and what the server answered.
func resumeRaw(t *testing.T, s *servertest.Server, user, pass, previd, h string) (*servertest.Raw, string) {
	t.Helper()
	r, _ := authRaw(t, s, user, pass)
	r.Write("<resume xmlns='" + smNS + "' previd='" + previd + "' h='" + h + "'/>")
	out, err := r.ReadUntilErr("/>", 5*time.Second)
	if err != nil {
		t.Fatalf("resume: %v: %s", err, out)
	}
	if strings.Contains(out, "<failed") {
		out += r.ReadUntil("</failed>")
	}
	return r, out
}

func TestResumeAfterDroppedConnectionRedelivers(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	b := s.Dial(t, "bob", "pb", "phone")
	a, id := smClient(t, s, "alice", "pa", "r", true)
	b.SendRaw(msg("alice@localhost/r", "one"))
	a.ReadUntil("one")
	b.SendRaw(msg("alice@localhost/r", "two"))
	a.ReadUntil("two")
	a.Write("<a xmlns='" + smNS + "' h='1'/>") // "one" acked, "two" not
	a.Write(msg(b.JID.String(), "before the drop"))
	b.Expect(body("before the drop"))
	waitH(t, a, 1)
	a.Conn.Close()
	// Sent while the socket is dead (or before the server notices).
	b.SendRaw(msg("alice@localhost/r", "three"))
	time.Sleep(200 * time.Millisecond)

	n, out := resumeRaw(t, s, "alice", "pa", id, "1")
	out = strings.ReplaceAll(out, `"`, "'")
	if !strings.Contains(out, "<resumed") || !strings.Contains(out, "previd='"+id+"'") || !strings.Contains(out, "h='1'") {
		t.Fatalf("resume: %s", out)
	}
	got := n.ReadUntil("three")
	if strings.Contains(got, ">one<") || !strings.Contains(got, "two") {
		t.Fatalf("redelivery: want two then three, not one: %s", got)
	}
	// The session goes on, on the new connection, with the old JID.
	n.Write(msg(b.JID.String(), "after resume"))
	if e := b.Expect(body("after resume")); e.Get("from") != "alice@localhost/r" {
		t.Fatalf("from %q", e.Get("from"))
	}
	// Counters continue: 1 acked before; two and three resent, plus any
	// <r/> (a nonza, not counted).
	n.Write("<a xmlns='" + smNS + "' h='3'/>")
	waitH(t, n, 2)
	// A resumed session hibernates when idle like any other.
	time.Sleep(3500 * time.Millisecond)
	b.SendRaw(msg("alice@localhost/r", "after idle"))
	n.ReadUntil("after idle")
	n.Write(msg(b.JID.String(), "awake"))
	b.Expect(body("awake"))
}

func TestResumeFailures(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) { c.StreamManagement.ResumeWindow = config.Duration(time.Second) })
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "eve", "pe")
	s.AddUser(t, "bob", "pb")
	b := s.Dial(t, "bob", "pb", "phone")

	// Unknown id: failed, and the client may still bind.
	r, out := resumeRaw(t, s, "alice", "pa", "nope", "0")
	if !strings.Contains(out, "<failed") || !strings.Contains(out, "item-not-found") {
		t.Fatalf("unknown previd: %s", out)
	}
	r.Write("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
	if out := r.ReadUntil("</iq>"); !strings.Contains(out, "<jid>alice@localhost/") {
		t.Fatalf("bind after failed resume: %s", out)
	}

	a, id := smClient(t, s, "alice", "pa", "r", true)
	// Another account cannot take over alice's session.
	_, out = resumeRaw(t, s, "eve", "pe", id, "0")
	if !strings.Contains(out, "item-not-found") {
		t.Fatalf("another account resumed: %s", out)
	}

	// The window ends without resumption: the unacked message goes to
	// offline storage, and the id no longer resumes.
	b.SendRaw(msg("alice@localhost/r", "kept for later"))
	a.ReadUntil("kept for later")
	a.Conn.Close()
	b.SendRaw(msg("alice@localhost/r", "while away"))
	deadline := time.Now().Add(10 * time.Second)
	for s.XMPP.Router().Session(mustJID("alice@localhost/r")) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the hibernated session never expired")
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitOffline(t, s, "alice", 2)
	_, out = resumeRaw(t, s, "alice", "pa", id, "0")
	out = strings.ReplaceAll(out, `"`, "'")
	if !strings.Contains(out, "item-not-found") || !strings.Contains(out, "h='0'") {
		// h: what the server had handled of the old session's stanzas.
		t.Fatalf("expired previd: %s", out)
	}
	c := s.Dial(t, "alice", "pa", "desktop")
	c.SendRaw("<presence/>")
	for _, text := range []string{"kept for later", "while away"} {
		e := c.Expect(body(text))
		if e.Child("urn:xmpp:delay", "delay") == nil {
			t.Errorf("offline message %q without delay: %s", text, e)
		}
	}
}

func TestUnackedToOfflineWithoutResumption(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	b := s.Dial(t, "bob", "pb", "phone")
	a, _ := smClient(t, s, "alice", "pa", "r", false)
	b.SendRaw(msg("alice@localhost/r", "acked"))
	a.ReadUntil("acked")
	a.Write("<a xmlns='" + smNS + "' h='1'/>")
	b.SendRaw(msg("alice@localhost/r", "not acked"))
	a.ReadUntil("not acked")
	a.Conn.Close()
	waitOffline(t, s, "alice", 1)
	c := s.Dial(t, "alice", "pa", "desktop")
	c.SendRaw("<presence/>")
	c.Expect(body("not acked"))
	c.ExpectNone(300*time.Millisecond, body("acked"))
}

func mustJID(s string) jid.JID { return jid.MustParse(s) }

// waitOffline waits until user's offline queue holds n messages.
func waitOffline(t *testing.T, s *servertest.Server, user string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := s.Store.CountOffline(context.Background(), user)
		if err != nil {
			t.Fatal(err)
		}
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("offline queue of %s holds %d, want %d", user, got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A client often resumes before the server has noticed that the old
// connection is dead: the new one takes over and the old one is closed.
func TestResumeTakesOverALiveConnection(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	b := s.Dial(t, "bob", "pb", "phone")
	a, id := smClient(t, s, "alice", "pa", "r", true)
	b.SendRaw(msg("alice@localhost/r", "unacked"))
	a.ReadUntil("unacked")

	n, out := resumeRaw(t, s, "alice", "pa", id, "0")
	if !strings.Contains(out, "<resumed") {
		t.Fatalf("resume: %s", out)
	}
	n.ReadUntil("unacked")
	if out := a.ReadUntil("</stream:stream>"); !strings.Contains(out, "conflict") {
		t.Fatalf("old connection: %s", out)
	}
	// Still one session, on the new connection.
	if got := len(s.XMPP.Router().Sessions("alice")); got != 1 {
		t.Fatalf("%d sessions for alice", got)
	}
	b.SendRaw(msg("alice@localhost/r", "to the new one"))
	n.ReadUntil("to the new one")
	// The old id resumes again after the new connection drops.
	n.Conn.Close()
	time.Sleep(100 * time.Millisecond)
	m, out := resumeRaw(t, s, "alice", "pa", id, "0")
	if !strings.Contains(out, "<resumed") {
		t.Fatalf("second resume: %s", out)
	}
	m.ReadUntil("to the new one")
}
