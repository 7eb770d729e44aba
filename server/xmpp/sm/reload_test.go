package sm_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
)

var maxRe = regexp.MustCompile(`<enabled[^>]* max=['"](\d+)['"]`)

// The resumption window is read when a session enables stream management,
// so a configuration reload applies to the next one, and 0 turns
// resumption off.
func TestResumeWindowFollowsReload(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	reload := func(w time.Duration) {
		next := *s.XMPP.Config()
		next.StreamManagement.ResumeWindow = config.Duration(w)
		s.XMPP.Reload(context.Background(), &next)
	}
	enable := func(resource string) string {
		r, _ := authRaw(t, s, "alice", "pa")
		r.Write("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + resource + "</resource></bind></iq>")
		r.ReadUntil("</iq>")
		r.Write("<enable xmlns='" + smNS + "' resume='true'/>")
		out := r.ReadUntil("/>")
		if !strings.Contains(out, "<enabled") {
			t.Fatalf("enable: got %s", out)
		}
		return out
	}
	if m := maxRe.FindStringSubmatch(enable("r1")); m == nil || m[1] != "300" {
		t.Fatalf("default window: max %v, want 300", m)
	}
	reload(42 * time.Second)
	if m := maxRe.FindStringSubmatch(enable("r2")); m == nil || m[1] != "42" {
		t.Fatalf("after reload to 42s: max %v", m)
	}
	reload(0)
	if out := enable("r3"); idRe.MatchString(out) || strings.Contains(out, "resume=") {
		t.Fatalf("resumption offered with the window reloaded to 0: %s", out)
	}
}
