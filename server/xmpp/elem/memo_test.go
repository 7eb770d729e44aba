package elem

import (
	"strings"
	"testing"
)

func TestMemoizedWriteMatchesAndFollowsChanges(t *testing.T) {
	msg := New(NSClient, "message", "type", "groupchat", "from", "room@rooms.example/nick", "id", "a<b")
	enc := New("eu.siacs.conversations.axolotl", "encrypted")
	hdr := New("eu.siacs.conversations.axolotl", "header", "sid", "7")
	hdr.Add(New("eu.siacs.conversations.axolotl", "key", "rid", "1").AddText("QUJD+/=="))
	enc.Add(hdr, New("eu.siacs.conversations.axolotl", "payload").AddText("x & y < z \r é"))
	msg.Add(enc, New("urn:xmpp:sid:0", "stanza-id", "id", "1", "by", "room@rooms.example"))
	msg.AddText("tail")
	plain := msg.String()

	msg.Memoize()
	if got := msg.String(); got != plain {
		t.Fatalf("memoized %s\nwant      %s", got, plain)
	}
	// Copies addressed to each recipient write the same children.
	for _, to := range []string{"a@example/1", "b@example/2"} {
		c := msg.ShallowCopy()
		c.Set("to", to)
		want := strings.Replace(plain, "<message ", "<message to=\""+to+"\" ", 1)
		got := c.String()
		if !strings.Contains(got, ` to="`+to+`"`) || strings.Replace(got, ` to="`+to+`"`, "", 1) != plain {
			t.Fatalf("copy for %s: %s (want %s, attributes in any order)", to, got, want)
		}
	}
	if strings.Contains(msg.String(), " to=") {
		t.Fatalf("a copy's address reached the original: %s", msg)
	}
	// A child added to a copy is written for that copy only.
	c := msg.ShallowCopy()
	c.Add(New("urn:xmpp:delay", "delay", "stamp", "2026-01-01T00:00:00Z"))
	if !strings.Contains(c.String(), "urn:xmpp:delay") {
		t.Fatalf("added child missing: %s", c)
	}
	if msg.String() != plain {
		t.Fatalf("original changed: %s", msg)
	}
	// Removing children from the original stops the memo's use.
	msg.RemoveChildren("urn:xmpp:sid:0", "stanza-id")
	if strings.Contains(msg.String(), "stanza-id") {
		t.Fatalf("removed child still written: %s", msg)
	}
}
