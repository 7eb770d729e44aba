//go:build compliance

package compliance

import (
	"crypto/rand"
	"crypto/sha1" // #nosec G505 -- XEP-0153 avatar hashes are SHA-1 by definition
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// The room checks do what the Conversations compliance tester (caas) does:
// find the chat service through the server's disco#items, create a room
// with a fresh random name by entering it, read the room's disco#info, and
// destroy the room again. Where caas only looks at a feature, the checks
// here also exercise it (a vCard stored and read back, a message archived
// and found), since a feature advertised but broken would pass caas and
// still break Conversations.

const (
	nsMUC      = "http://jabber.org/protocol/muc"
	nsMUCUser  = nsMUC + "#user"
	nsMUCOwner = nsMUC + "#owner"
	nsVCard    = "vcard-temp"
	nsMAM      = "urn:xmpp:mam:2"
)

// chatService returns the first item of the server's disco#items whose
// disco#info has identity conference/text and the MUC feature, as caas's
// discoverChatServices does; "" if there is none.
func chatService(t *testing.T, c *servertest.Client) string {
	t.Helper()
	items := c.IQ("<iq type='get' id='cs-items' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	q := items.Child("http://jabber.org/protocol/disco#items", "query")
	if items.Get("type") != "result" || q == nil {
		t.Fatalf("server disco#items: %s", items)
	}
	for i, it := range q.Elements() {
		j := it.Get("jid")
		if it.Name.Local != "item" || j == "" {
			continue
		}
		info := c.IQ(fmt.Sprintf("<iq type='get' id='cs-info-%d' to='%s'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>", i, j))
		if info.Get("type") == "result" && hasIdentity(info, "conference", "text") && hasFeature(info, nsMUC) {
			return j
		}
	}
	return ""
}

// pronounceable is a room name like the ones Conversations (and caas) make.
func pronounceable(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	const vowels, consonants = "aeiou", "bcfghjklmnpqrstvwxyz"
	out := make([]byte, len(b))
	for i, x := range b {
		if i%2 == 0 {
			out[i] = consonants[int(x)%len(consonants)]
		} else {
			out[i] = vowels[int(x)%len(vowels)]
		}
	}
	return string(out)
}

// enterNewRoom creates a room by entering it (XEP-0045 10.1.1) and checks
// the self-presence says so (110, 201) and makes the creator its owner.
func enterNewRoom(t *testing.T, c *servertest.Client, service string) string {
	t.Helper()
	room := pronounceable(t) + "@" + service
	c.SendRaw("<presence to='" + room + "/test'><x xmlns='" + nsMUC + "'><history maxstanzas='0'/></x></presence>")
	self := c.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "presence" && e.Get("from") == room+"/test"
	})
	x := self.Child(nsMUCUser, "x")
	if self.Get("type") == "error" || x == nil {
		t.Fatalf("entering %s: %s", room, self)
	}
	codes := map[string]bool{}
	for _, s := range x.Elements() {
		if s.Name.Local == "status" {
			codes[s.Get("code")] = true
		}
	}
	if !codes["110"] || !codes["201"] {
		t.Errorf("self-presence on creating %s lacks status 110 and 201: %s", room, self)
	}
	if it := x.Child(nsMUCUser, "item"); it == nil || it.Get("affiliation") != "owner" {
		t.Errorf("the creator of %s is not its owner: %s", room, self)
	}
	// The subject message ends the join (XEP-0045 7.2.15).
	c.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "message" && e.Get("from") == room && e.Child("", "subject") != nil
	})
	return room
}

// destroyRoom ends the test room as caas does, and checks it is gone.
func destroyRoom(t *testing.T, c *servertest.Client, room string) {
	t.Helper()
	r := c.IQ("<iq type='set' id='destroy' to='" + room + "'><query xmlns='" + nsMUCOwner + "'><destroy><reason>compliance check done</reason></destroy></query></iq>")
	if r.Get("type") != "result" {
		t.Errorf("destroy %s: %s", room, r)
		return
	}
	info := c.IQ("<iq type='get' id='gone' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if servertest.ErrorCondition(info) != "item-not-found" {
		t.Errorf("disco#info of destroyed room %s: want item-not-found, got %s", room, info)
	}
}

func roomInfo(t *testing.T, c *servertest.Client, room string) *elem.Element {
	t.Helper()
	info := c.IQ("<iq type='get' id='ri' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if info.Get("type") != "result" {
		t.Fatalf("disco#info of %s: %s", room, info)
	}
	return info
}

func checkMUCService(t *testing.T, e *env) {
	a := e.srv.Dial(t, "alice", e.alice, "muc")
	service := chatService(t, a)
	if service == "" {
		t.Fatal("no item of the server's disco#items is a conference/text service with " + nsMUC)
	}
	if service != "rooms.localhost" {
		t.Errorf("chat service at %s, want rooms.localhost", service)
	}
	online(a)
	room := enterNewRoom(t, a, service)
	info := roomInfo(t, a, room)
	if !hasIdentity(info, "conference", "text") || !hasFeature(info, nsMUC) {
		t.Errorf("room disco#info lacks conference/text or %s: %s", nsMUC, info)
	}
	destroyRoom(t, a, room)
}

func checkMUCAvatar(t *testing.T, e *env) {
	a := e.srv.Dial(t, "alice", e.alice, "muc-avatar")
	service := chatService(t, a)
	if service == "" {
		t.Fatal("no chat service")
	}
	online(a)
	room := enterNewRoom(t, a, service)
	// What caas checks: vcard-temp among the room's features.
	if info := roomInfo(t, a, room); !hasFeature(info, nsVCard) {
		t.Fatalf("room disco#info lacks %s: %s", nsVCard, info)
	}
	// What Conversations then does: the owner sets the room's picture as
	// a vCard PHOTO, and everyone reads it and its hash (XEP-0486).
	img := []byte("\x89PNG\r\n\x1a\n compliance room avatar " + room)
	sum := sha1.Sum(img) // #nosec G401 -- see import
	hash := hex.EncodeToString(sum[:])
	b64 := base64.StdEncoding.EncodeToString(img)
	r := a.IQ("<iq type='set' id='rv1' to='" + room + "'><vCard xmlns='" + nsVCard + "'><PHOTO><TYPE>image/png</TYPE><BINVAL>" + b64 + "</BINVAL></PHOTO></vCard></iq>")
	if r.Get("type") != "result" {
		t.Fatalf("owner sets the room vCard: %s", r)
	}
	v := a.IQ("<iq type='get' id='rv2' to='" + room + "'><vCard xmlns='" + nsVCard + "'/></iq>")
	if v.Get("type") != "result" || !strings.Contains(v.String(), b64) {
		t.Fatalf("room vCard read back lacks the photo: %s", v)
	}
	info := roomInfo(t, a, room)
	if !strings.Contains(info.String(), hash) {
		t.Errorf("room disco#info lacks muc#roominfo_avatarhash %s: %s", hash, info)
	}
	destroyRoom(t, a, room)
}

func checkMUCArchive(t *testing.T, e *env) {
	a := e.srv.Dial(t, "alice", e.alice, "muc-mam")
	service := chatService(t, a)
	if service == "" {
		t.Fatal("no chat service")
	}
	online(a)
	room := enterNewRoom(t, a, service)
	// What caas checks: urn:xmpp:mam:2 among the room's features.
	if info := roomInfo(t, a, room); !hasFeature(info, nsMAM) {
		t.Fatalf("room disco#info lacks %s: %s", nsMAM, info)
	}
	// And the archive works: a message sent to the room is reflected with
	// the room's stanza-id, and a MAM query on the room JID returns it.
	// (This server runs with E2EE off, so a plain body is accepted.)
	body := "room archive " + pronounceable(t)
	a.SendRaw("<message to='" + room + "' type='groupchat' id='rm1'><body>" + body + "</body></message>")
	refl := a.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "message" && e.Get("id") == "rm1"
	})
	sid := refl.Child("urn:xmpp:sid:0", "stanza-id")
	if refl.Get("type") != "groupchat" || sid == nil || sid.Get("by") != room {
		t.Fatalf("reflected message lacks a stanza-id by %s: %s", room, refl)
	}
	a.SendRaw("<iq type='set' id='rmq' to='" + room + "'><query xmlns='" + nsMAM + "' queryid='rq1'/></iq>")
	res := a.Expect(func(e *elem.Element) bool {
		r := e.Child(nsMAM, "result")
		return e.Name.Local == "message" && r != nil && r.Get("queryid") == "rq1"
	})
	if got := res.Child(nsMAM, "result"); got.Get("id") != sid.Get("id") || !strings.Contains(res.String(), body) {
		t.Errorf("room archive result: want id %s with %q, got %s", sid.Get("id"), body, res)
	}
	fin := a.Expect(func(e *elem.Element) bool { return e.Name.Local == "iq" && e.Get("id") == "rmq" })
	if fin.Get("type") != "result" || fin.Child(nsMAM, "fin") == nil {
		t.Errorf("room MAM query end: %s", fin)
	}
	destroyRoom(t, a, room)
}

// checkMUCSelfPing: a client pings its own occupant JID to learn whether it
// is still joined (XEP-0410): a result while joined, an error after.
func checkMUCSelfPing(t *testing.T, e *env) {
	a := e.srv.Dial(t, "alice", e.alice, "muc-ping")
	online(a)
	room := enterNewRoom(t, a, "rooms.localhost")
	if r := a.IQ("<iq type='get' id='sp1' to='" + room + "/test'><ping xmlns='urn:xmpp:ping'/></iq>"); r.Get("type") != "result" {
		t.Fatalf("self-ping while joined: %s", r)
	}
	a.SendRaw("<presence type='unavailable' to='" + room + "/test'/>")
	a.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "presence" && e.Get("from") == room+"/test" && e.Get("type") == "unavailable"
	})
	r := a.IQ("<iq type='get' id='sp2' to='" + room + "/test'><ping xmlns='urn:xmpp:ping'/></iq>")
	if c := servertest.ErrorCondition(r); c != "not-acceptable" {
		t.Fatalf("self-ping after leaving: want not-acceptable, got %s", r)
	}
	destroyRoom(t, a, room)
}

// checkDirectInvite: a direct invitation (XEP-0249) is a message between
// accounts carrying jabber:x:conference, delivered as sent.
func checkDirectInvite(t *testing.T, e *env) {
	a := e.srv.Dial(t, "alice", e.alice, "invite")
	b := e.srv.Dial(t, "bob", e.bob, "invite")
	online(b)
	room := pronounceable(t) + "@rooms.localhost"
	a.SendRaw("<message to='bob@localhost' id='di1'><x xmlns='jabber:x:conference' jid='" + room + "' reason='compliance'/></message>")
	got := b.Expect(func(e *elem.Element) bool { return e.Name.Local == "message" && e.Get("id") == "di1" })
	if x := got.Child("jabber:x:conference", "x"); x == nil || x.Get("jid") != room {
		t.Fatalf("direct invitation arrived without its jabber:x:conference payload: %s", got)
	}
}
