package e2ee_test

import (
	"context"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// setPolicy reloads the running server with another E2EE policy, as a
// SIGHUP does.
func setPolicy(s *servertest.Server, p string) {
	next := *s.XMPP.Config()
	next.E2EE.Policy = p
	s.XMPP.Reload(context.Background(), &next)
}

var capsVerRe = regexp.MustCompile(`<c [^>]*ver=["']([^"']+)["']`)

// capsVer is the server's caps hash (XEP-0115) in the stream features a
// newly authenticated client gets.
func capsVer(t *testing.T, s *servertest.Server) string {
	t.Helper()
	r := servertest.DialRaw(t, s.Addr)
	r.StartTLS("alice@localhost")
	r.Write(servertest.Header("alice@localhost"))
	r.ReadUntil("</stream:features>")
	r.Write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
		base64.StdEncoding.EncodeToString([]byte("\x00alice\x00pa")) + "</auth>")
	r.ReadUntil("<success")
	r.Write(servertest.Header("alice@localhost"))
	features := r.ReadUntil("</stream:features>")
	m := capsVerRe.FindStringSubmatch(features)
	if m == nil {
		t.Fatalf("no caps in the stream features: %s", features)
	}
	return m[1]
}

// The policy is read per message: a reload changes it for sessions already
// bound, in both directions, and disco#info advertises the new one.
func TestPolicyFollowsReload(t *testing.T) {
	s, a, b := start(t, "off")
	bounced := func(id string) func(*elem.Element) bool {
		return func(e *elem.Element) bool {
			return e.Name.Local == "message" && e.Get("type") == "error" && e.Get("id") == id
		}
	}
	send := func(id string) {
		a.SendRaw("<message id='" + id + "' to='bob@localhost' type='chat'><body>text " + id + "</body></message>")
	}

	send("m1")
	b.Expect(body("text m1"))

	verOff := capsVer(t, s)
	setPolicy(s, "required")
	if capsVer(t, s) == verOff {
		t.Error("the caps hash did not change with the advertised policy")
	}
	send("m2")
	if e := a.Expect(bounced("m2")); servertest.ErrorCondition(e) != "policy-violation" {
		t.Fatalf("after reloading with required: %s", e)
	}
	b.ExpectNone(300*time.Millisecond, body("text m2"))
	info := a.IQ("<iq type='get' to='localhost' id='i1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if !strings.Contains(info.String(), "<value>required</value>") {
		t.Errorf("disco#info after reload: %s", info)
	}

	setPolicy(s, "optional")
	send("m3")
	b.Expect(body("text m3"))
	a.Expect(servertest.IsKind("message", "headline"))
	a.ExpectNone(300*time.Millisecond, bounced("m3"))

	setPolicy(s, "off")
	send("m4")
	b.Expect(body("text m4"))
	a.ExpectNone(300*time.Millisecond, bounced("m4"))
}
