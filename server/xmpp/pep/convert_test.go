package pep_test

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

const (
	nsAvatarData = "urn:xmpp:avatar:data"
	nsAvatarMeta = "urn:xmpp:avatar:metadata"
)

func avatar(b []byte) (b64, hash string) {
	sum := sha1.Sum(b)
	return base64.StdEncoding.EncodeToString(b), hex.EncodeToString(sum[:])
}

func photoIn(p *elem.Element) string {
	x := p.Child("vcard-temp:x:update", "x")
	if x == nil {
		return "<none>"
	}
	return x.ChildText("vcard-temp:x:update", "photo")
}

func TestAvatarPEPToVCard(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "p")
	s.AddUser(t, "bob", "p")
	a := s.Dial(t, "alice", "p", "r")
	b := s.Dial(t, "bob", "p", "r")
	b64, hash := avatar([]byte("\x89PNG fake image bytes"))

	if r := publish(a, "p1", nsAvatarData, hash, "<data xmlns='urn:xmpp:avatar:data'>"+b64+"</data>"); r.Get("type") != "result" {
		t.Fatalf("publish data: %s", r)
	}
	meta := "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='" + hash + "' bytes='21' type='image/png' width='1' height='1'/></metadata>"
	if r := publish(a, "p2", nsAvatarMeta, hash, meta); r.Get("type") != "result" {
		t.Fatalf("publish metadata: %s", r)
	}
	// Anyone reading Alice's vCard now sees the photo (XEP-0398).
	v := b.IQ("<iq type='get' id='v1' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>").Child("vcard-temp", "vCard")
	if v == nil || v.Child("vcard-temp", "PHOTO") == nil || v.Child("vcard-temp", "PHOTO").ChildText("vcard-temp", "BINVAL") != b64 ||
		v.Child("vcard-temp", "PHOTO").ChildText("vcard-temp", "TYPE") != "image/png" {
		t.Fatalf("vCard after avatar publish: %s", v)
	}
	// Her presence carries the hash (XEP-0153), whatever her client says.
	b.SendRaw("<presence/>")
	a.SendRaw("<presence/>")
	subscribe(t, b, a)
	a.SendRaw("<presence><x xmlns='vcard-temp:x:update'><photo>stale</photo></x></presence>")
	p := b.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "presence" && strings.HasPrefix(e.Get("from"), "alice@localhost/") && e.Get("type") == "" && photoIn(e) != ""
	})
	if got := photoIn(p); got != hash {
		t.Fatalf("presence photo %q, want %q: %s", got, hash, p)
	}

	// Disabling the avatar (empty metadata) removes the vCard photo.
	if r := publish(a, "p3", nsAvatarMeta, "none", "<metadata xmlns='urn:xmpp:avatar:metadata'/>"); r.Get("type") != "result" {
		t.Fatalf("disable avatar: %s", r)
	}
	v = a.IQ("<iq type='get' id='v2'><vCard xmlns='vcard-temp'/></iq>").Child("vcard-temp", "vCard")
	if v == nil || v.Child("vcard-temp", "PHOTO") != nil {
		t.Fatalf("vCard after disabling the avatar: %s", v)
	}
}

func TestAvatarVCardToPEP(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "p")
	s.AddUser(t, "bob", "p")
	a := s.Dial(t, "alice", "p", "r")
	b := s.Dial(t, "bob", "p", "r")
	a.SendRaw("<presence/>")
	announce(t, b, true, nsAvatarMeta+"+notify")
	subscribe(t, b, a)
	b64, hash := avatar([]byte("GIF89a another fake image"))
	r := a.IQ("<iq type='set' id='s1'><vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/gif</TYPE><BINVAL>" + b64 + "</BINVAL></PHOTO></vCard></iq>")
	if r.Get("type") != "result" {
		t.Fatalf("vCard set: %s", r)
	}
	// Bob, who wants avatar metadata, is told; and he can fetch the data.
	ev := b.Expect(event("alice@localhost", nsAvatarMeta))
	info := ev.Child(nsEvent, "event").FirstElement().Child(nsEvent, "item").Child(nsAvatarMeta, "metadata").Child(nsAvatarMeta, "info")
	if info == nil || info.Get("id") != hash || info.Get("type") != "image/gif" || info.Get("bytes") != "25" {
		t.Fatalf("metadata notification: %s", ev)
	}
	d := items(b, "i1", "alice@localhost", nsAvatarData, "")
	if its := itemsOf(d); len(its) != 1 || its[0].Get("id") != hash || its[0].ChildText(nsAvatarData, "data") != b64 {
		t.Fatalf("avatar data: %s", d)
	}
	// The FN is untouched, and setting the same vCard again publishes
	// nothing new.
	v := a.IQ("<iq type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>").Child("vcard-temp", "vCard")
	if v.ChildText("vcard-temp", "FN") != "Alice" {
		t.Fatalf("vCard: %s", v)
	}
	a.SendRaw("<presence/>")
	p := b.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "presence" && strings.HasPrefix(e.Get("from"), "alice@localhost/") && e.Get("type") == "" && photoIn(e) == hash
	})
	if p.Child("vcard-temp:x:update", "x") == nil {
		t.Fatalf("presence after vCard photo: %s", p)
	}
}

func TestBookmarksPEPAndPrivateStorage(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "p")
	s.AddUser(t, "bob", "p")
	a := s.Dial(t, "alice", "p", "r")
	b := s.Dial(t, "bob", "p", "r")
	announce(t, a, true, "urn:xmpp:bookmarks:1+notify")

	// A XEP-0402 client adds a room, with the options the XEP asks for.
	conf := "<conference xmlns='urn:xmpp:bookmarks:1' name='Tea' autojoin='true'><nick>al</nick><extensions><x xmlns='urn:example'/></extensions></conference>"
	r := publish(a, "p1", "urn:xmpp:bookmarks:1", "tea@rooms.localhost", conf,
		"pubsub#persist_items", "true", "pubsub#max_items", "max", "pubsub#send_last_published_item", "never", "pubsub#access_model", "whitelist")
	if r.Get("type") != "result" {
		t.Fatalf("publish bookmark: %s", r)
	}
	a.Expect(event("alice@localhost", "urn:xmpp:bookmarks:1"))
	// A XEP-0048 client reads private storage and sees it.
	r = a.IQ("<iq type='get' id='g1'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>")
	c := r.Child("jabber:iq:private", "query").Child("storage:bookmarks", "storage").Child("storage:bookmarks", "conference")
	if c == nil || c.Get("jid") != "tea@rooms.localhost" || c.Get("name") != "Tea" || c.Get("autojoin") != "true" || c.ChildText("storage:bookmarks", "nick") != "al" {
		t.Fatalf("private bookmarks after a PEP publish: %s", r)
	}
	// Bookmarks are the owner's alone.
	if servertest.ErrorCondition(items(b, "i0", "alice@localhost", "urn:xmpp:bookmarks:1", "")) != "not-allowed" {
		t.Fatal("another user reads bookmarks")
	}

	// The old client replaces the list: one room kept, one added.
	r = a.IQ("<iq type='set' id='s1'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>" +
		"<conference jid='tea@rooms.localhost' name='Tea time' autojoin='1'><nick>al</nick></conference>" +
		"<conference jid='cake@rooms.localhost' name='Cake'><password>pw</password></conference>" +
		"<url name='site' url='https://example.org'/></storage></query></iq>")
	if r.Get("type") != "result" {
		t.Fatalf("private set: %s", r)
	}
	got := items(a, "i1", "", "urn:xmpp:bookmarks:1", "")
	its := itemsOf(got)
	if len(its) != 2 {
		t.Fatalf("PEP bookmarks after a private set: %s", got)
	}
	byID := map[string]*elem.Element{}
	for _, it := range its {
		byID[it.Get("id")] = it.Child("urn:xmpp:bookmarks:1", "conference")
	}
	tea, cake := byID["tea@rooms.localhost"], byID["cake@rooms.localhost"]
	if tea == nil || tea.Get("name") != "Tea time" || tea.Get("autojoin") != "true" || tea.Child("urn:xmpp:bookmarks:1", "extensions") == nil {
		t.Fatalf("converted tea (extensions kept): %s", got)
	}
	if cake == nil || cake.Get("autojoin") != "false" || cake.ChildText("urn:xmpp:bookmarks:1", "password") != "pw" {
		t.Fatalf("converted cake: %s", got)
	}
	// The node has XEP-0402's configuration, so the next 0402 publish with
	// its options still succeeds.
	r = publish(a, "p2", "urn:xmpp:bookmarks:1", "pie@rooms.localhost", "<conference xmlns='urn:xmpp:bookmarks:1' name='Pie'/>",
		"pubsub#persist_items", "true", "pubsub#max_items", "max", "pubsub#send_last_published_item", "never", "pubsub#access_model", "whitelist")
	if r.Get("type") != "result" {
		t.Fatalf("0402 publish after conversion: %s", r)
	}
	// Retracting in PEP removes it from private storage; the URL stays.
	r = a.IQ("<iq type='set' id='r1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='urn:xmpp:bookmarks:1' notify='true'><item id='tea@rooms.localhost'/></retract></pubsub></iq>")
	if r.Get("type") != "result" {
		t.Fatalf("retract: %s", r)
	}
	priv := a.IQ("<iq type='get' id='g2'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>").String()
	if strings.Contains(priv, "tea@rooms") || !strings.Contains(priv, "cake@rooms") || !strings.Contains(priv, "pie@rooms") || !strings.Contains(priv, "https://example.org") {
		t.Fatalf("private after retract: %s", priv)
	}
}
