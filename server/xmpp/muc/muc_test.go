package muc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/muc"
)

const service = "rooms.localhost"

// start runs a server with the production E2EE default ("required").
func start(t *testing.T, opts ...servertest.Option) *servertest.Server {
	t.Helper()
	opts = append([]servertest.Option{func(c *config.Config) { c.E2EE.Policy = "required" }}, opts...)
	return servertest.Start(t, opts...)
}

// users creates accounts whose password is their name and logs them in.
func users(t *testing.T, s *servertest.Server, names ...string) []*servertest.Client {
	t.Helper()
	var out []*servertest.Client
	for _, n := range names {
		s.AddUser(t, n, n)
		out = append(out, s.Dial(t, n, n, "phone"))
	}
	return out
}

func setServerRole(t *testing.T, s *servertest.Server, user string, role store.Role) {
	t.Helper()
	err := s.Store.UpdateAccount(context.Background(), user, func(a *store.Account) error { a.Role = role; return nil })
	if err != nil {
		t.Fatal(err)
	}
}

func roomJID(room string) string { return room + "@" + service }

func isPresenceFrom(from string) func(*elem.Element) bool {
	return func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("from") == from }
}

func item(p *elem.Element) *elem.Element {
	if x := p.Child(muc.NSUser, "x"); x != nil {
		return x.Child(muc.NSUser, "item")
	}
	return nil
}

// join enters a room and waits for the end of the join (the subject); it
// returns the occupant's own presence.
func join(t *testing.T, c *servertest.Client, room, nick string, extra ...string) *elem.Element {
	t.Helper()
	occ := roomJID(room) + "/" + nick
	c.SendRaw(fmt.Sprintf("<presence to='%s'><x xmlns='%s'>%s</x></presence>", occ, muc.NS, strings.Join(extra, "")))
	self := c.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "presence" && e.Get("from") == occ && (servertest.MUCStatus(e, "110") || e.Get("type") == "error")
	})
	if self.Get("type") == "error" {
		t.Fatalf("%s could not join %s: %s", c.JID, room, self)
	}
	c.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "message" && e.Child(elem.NSClient, "subject") != nil && strings.HasPrefix(e.Get("from"), roomJID(room))
	})
	return self
}

// joinError tries to enter and returns the error condition.
func joinError(t *testing.T, c *servertest.Client, room, nick string) string {
	t.Helper()
	occ := roomJID(room) + "/" + nick
	c.SendRaw(fmt.Sprintf("<presence to='%s'><x xmlns='%s'/></presence>", occ, muc.NS))
	p := c.Expect(func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("from") == occ })
	if p.Get("type") != "error" {
		t.Fatalf("%s joined %s, want an error: %s", c.JID, room, p)
	}
	return condition(p)
}

func condition(e *elem.Element) string {
	er := e.Child(elem.NSClient, "error")
	if er == nil {
		return ""
	}
	for _, c := range er.Elements() {
		if c.Name.Space == elem.NSStanza && c.Name.Local != "text" {
			return c.Name.Local
		}
	}
	return ""
}

var iqN int

func iq(t *testing.T, c *servertest.Client, typ, to, payload string) *elem.Element {
	t.Helper()
	iqN++
	return c.IQ(fmt.Sprintf("<iq type='%s' id='q%d' to='%s'>%s</iq>", typ, iqN, to, payload))
}

func mustResult(t *testing.T, r *elem.Element) *elem.Element {
	t.Helper()
	if r.Get("type") != "result" {
		t.Fatalf("want a result, got %s", r)
	}
	return r
}

func affiliate(t *testing.T, c *servertest.Client, room, who, aff string) *elem.Element {
	t.Helper()
	return iq(t, c, "set", roomJID(room), fmt.Sprintf("<query xmlns='%s'><item jid='%s' affiliation='%s'/></query>", muc.NSAdmin, who, aff))
}

const omemo = "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><key rid='2'>a2V5</key><iv>aXY=</iv></header><payload>cGF5bG9hZA==</payload></encrypted>"

func sendGroup(c *servertest.Client, room, id, payload string) {
	c.SendRaw(fmt.Sprintf("<message type='groupchat' to='%s' id='%s'>%s</message>", roomJID(room), id, payload))
}

func isGroupMsg(id string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		return e.Name.Local == "message" && e.Get("id") == id && e.Get("type") == "groupchat"
	}
}

func submitConfig(t *testing.T, c *servertest.Client, room string, fields map[string]string) *elem.Element {
	t.Helper()
	var b strings.Builder
	b.WriteString("<field var='FORM_TYPE'><value>" + muc.NSRoomConfig + "</value></field>")
	for k, v := range fields {
		fmt.Fprintf(&b, "<field var='%s'><value>%s</value></field>", k, v)
	}
	return iq(t, c, "set", roomJID(room), fmt.Sprintf("<query xmlns='%s'><x xmlns='jabber:x:data' type='submit'>%s</x></query>", muc.NSOwner, b.String()))
}

func TestCreateJoinAndTalkEncrypted(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "bob")
	alice, bob := cl[0], cl[1]

	self := join(t, alice, "garden", "Alice")
	for _, code := range []string{"110", "201", "100", "170"} {
		if !servertest.MUCStatus(self, code) {
			t.Errorf("creator's presence lacks status %s: %s", code, self)
		}
	}
	if it := item(self); it == nil || it.Get("affiliation") != "owner" || it.Get("role") != "moderator" {
		t.Fatalf("creator is not owner/moderator: %s", self)
	}
	if self.Child(muc.NSOccupantID, "occupant-id") == nil {
		t.Errorf("no occupant-id: %s", self)
	}
	stored, err := s.Store.(store.Rooms).GetRoom(context.Background(), "garden")
	if err != nil || stored.Affiliation("alice@localhost") != store.AffOwner || stored.Plaintext || stored.Open {
		t.Fatalf("stored room %+v, %v: want alice owner, encrypted, members-only", stored, err)
	}

	// Members-only by default: bob is refused until he is a member.
	if c := joinError(t, bob, "garden", "Bob"); c != "registration-required" {
		t.Fatalf("non-member join: %s, want registration-required", c)
	}
	mustResult(t, affiliate(t, alice, "garden", "bob@localhost", "member"))
	bobSelf := join(t, bob, "garden", "Bob")
	if it := item(bobSelf); it.Get("affiliation") != "member" || it.Get("role") != "participant" {
		t.Fatalf("bob's own presence: %s", bobSelf)
	}
	// Non-anonymous: alice sees bob's real JID.
	p := alice.Expect(isPresenceFrom(roomJID("garden") + "/Bob"))
	if !strings.HasPrefix(item(p).Get("jid"), "bob@localhost/") {
		t.Fatalf("alice does not see bob's JID: %s", p)
	}

	// An OMEMO message reaches everyone, sender included, with the room's
	// stanza-id and the sender's occupant-id.
	sendGroup(bob, "garden", "m1", omemo)
	for _, c := range []*servertest.Client{alice, bob} {
		m := c.Expect(isGroupMsg("m1"))
		if m.Get("from") != roomJID("garden")+"/Bob" {
			t.Errorf("from %q", m.Get("from"))
		}
		sid := m.Child(muc.NSStanzaID, "stanza-id")
		if sid == nil || sid.Get("by") != roomJID("garden") || sid.Get("id") == "" {
			t.Errorf("no stanza-id by the room: %s", m)
		}
		if oid := m.Child(muc.NSOccupantID, "occupant-id"); oid == nil || oid.Get("id") != bobSelf.Child(muc.NSOccupantID, "occupant-id").Get("id") {
			t.Errorf("occupant-id missing or not bob's: %s", m)
		}
	}

	// Plaintext bounces to the sender with policy-violation and reaches nobody.
	sendGroup(bob, "garden", "m2", "<body>hello in clear</body>")
	e := bob.Expect(func(e *elem.Element) bool { return e.Get("id") == "m2" && e.Get("type") == "error" })
	if condition(e) != "policy-violation" || !strings.Contains(e.String(), "encrypted") {
		t.Fatalf("plaintext bounce: %s", e)
	}
	alice.ExpectNone(300*time.Millisecond, isGroupMsg("m2"))
	page, err := s.Store.(store.RoomArchive).QueryRoomArchive(context.Background(), "garden", store.ArchiveQuery{Max: 10})
	if err != nil || len(page.Records) != 1 || strings.Contains(string(page.Records[0].Stanza), "hello in clear") {
		t.Fatalf("archive: %d records, %v; want only the encrypted one", len(page.Records), err)
	}

	// Private messages between occupants of an encrypted room obey the
	// policy too.
	bob.SendRaw("<message type='chat' id='pm' to='" + roomJID("garden") + "/Alice'><body>psst</body></message>")
	if e := bob.Expect(func(e *elem.Element) bool { return e.Get("id") == "pm" }); condition(e) != "policy-violation" {
		t.Fatalf("plaintext private message in an encrypted room: %s", e)
	}
	bob.SendRaw("<message type='chat' id='pm2' to='" + roomJID("garden") + "/Alice'>" + omemo + "</message>")
	if m := alice.Expect(func(e *elem.Element) bool { return e.Get("id") == "pm2" }); m.Get("from") != roomJID("garden")+"/Bob" {
		t.Fatalf("encrypted private message: %s", m)
	}

	// Chat states pass (no body) but are not archived.
	sendGroup(bob, "garden", "cs", "<composing xmlns='http://jabber.org/protocol/chatstates'/>")
	alice.Expect(isGroupMsg("cs"))

	// A session that ends leaves the room.
	bob.Close()
	gone := alice.Expect(isPresenceFrom(roomJID("garden") + "/Bob"))
	if gone.Get("type") != "unavailable" {
		t.Fatalf("bob's departure: %s", gone)
	}
}

func TestMembersOnlyRoomsDoNotLeak(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "eve")
	alice, eve := cl[0], cl[1]
	join(t, alice, "secret", "Alice")
	sendGroup(alice, "secret", "s1", "<subject>the hidden plan</subject>")
	alice.Expect(isGroupMsg("s1"))

	// disco#info, disco#items on the room, the service's item list, the
	// archive and the vCard: a non-member learns nothing, not even that
	// the room exists.
	for _, q := range []struct{ typ, payload string }{
		{"get", "<query xmlns='http://jabber.org/protocol/disco#info'/>"},
		{"get", "<query xmlns='http://jabber.org/protocol/disco#items'/>"},
		{"get", "<vCard xmlns='vcard-temp'/>"},
	} {
		r := iq(t, eve, q.typ, roomJID("secret"), q.payload)
		if r.Get("type") != "error" || condition(r) != "item-not-found" {
			t.Errorf("non-member %s: %s", q.payload, r)
		}
		if strings.Contains(r.String(), "hidden plan") || strings.Contains(r.String(), "Alice") {
			t.Errorf("leak in %s", r)
		}
	}
	r := iq(t, eve, "set", roomJID("secret"), "<query xmlns='urn:xmpp:mam:2'/>")
	if r.Get("type") != "error" {
		t.Errorf("non-member read the archive: %s", r)
	}
	items := mustResult(t, iq(t, eve, "get", service, "<query xmlns='http://jabber.org/protocol/disco#items'/>"))
	if strings.Contains(items.String(), "secret") {
		t.Errorf("service items list a members-only room to a non-member: %s", items)
	}
	// The member does see it.
	items = mustResult(t, iq(t, alice, "get", service, "<query xmlns='http://jabber.org/protocol/disco#items'/>"))
	if !strings.Contains(items.String(), roomJID("secret")) {
		t.Errorf("the owner does not see her room: %s", items)
	}
	// Probing presence yields nothing; joining is refused without leaking.
	eve.SendRaw("<presence type='probe' to='" + roomJID("secret") + "/Alice'/>")
	eve.ExpectNone(300*time.Millisecond, isPresenceFrom(roomJID("secret")+"/Alice"))
	if c := joinError(t, eve, "secret", "Eve"); c != "registration-required" {
		t.Errorf("join: %s", c)
	}
	// A private message or groupchat from outside is refused.
	eve.SendRaw("<message type='chat' id='pm' to='" + roomJID("secret") + "/Alice'><body>hi</body></message>")
	if e := eve.Expect(func(e *elem.Element) bool { return e.Get("id") == "pm" }); e.Get("type") != "error" {
		t.Errorf("a non-occupant's private message was relayed: %s", e)
	}
	alice.ExpectNone(200*time.Millisecond, func(e *elem.Element) bool { return e.Get("id") == "pm" })
}

func TestHistoryOnJoinAndRoomArchive(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "bob")
	alice, bob := cl[0], cl[1]
	join(t, alice, "log", "Alice")
	mustResult(t, affiliate(t, alice, "log", "bob@localhost", "member"))
	for i := 0; i < 5; i++ {
		sendGroup(alice, "log", fmt.Sprint("h", i), omemo)
		alice.Expect(isGroupMsg(fmt.Sprint("h", i)))
	}
	// maxstanzas=2: the two newest, oldest first, with a delay from the room.
	occ := roomJID("log") + "/Bob"
	bob.SendRaw(fmt.Sprintf("<presence to='%s'><x xmlns='%s'><history maxstanzas='2'/></x></presence>", occ, muc.NS))
	var got []string
	for len(got) < 3 {
		e := bob.Expect(func(e *elem.Element) bool { return e.Name.Local == "message" })
		if e.Child(elem.NSClient, "subject") != nil {
			break
		}
		if d := e.Child(muc.NSDelay, "delay"); d == nil || d.Get("from") != roomJID("log") {
			t.Errorf("history without delay: %s", e)
		}
		got = append(got, e.Get("id"))
	}
	if strings.Join(got, ",") != "h3,h4" {
		t.Fatalf("history %v, want h3,h4", got)
	}

	// MAM on the room JID, paged two at a time.
	var ids []string
	after := ""
	for page := 0; page < 4; page++ {
		rsm := "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max>" + after + "</set>"
		r := mustResult(t, iq(t, bob, "set", roomJID("log"), fmt.Sprintf("<query xmlns='urn:xmpp:mam:2' queryid='p%d'>%s</query>", page, rsm)))
		fin := r.Child("urn:xmpp:mam:2", "fin")
		for {
			m := bob.ExpectWithin(200*time.Millisecond, func(e *elem.Element) bool {
				res := e.Child("urn:xmpp:mam:2", "result")
				return res != nil && res.Get("queryid") == fmt.Sprintf("p%d", page)
			})
			if m == nil {
				break
			}
			if m.Get("from") != roomJID("log") {
				t.Errorf("result from %q", m.Get("from"))
			}
			fwd := m.Child("urn:xmpp:mam:2", "result").Child("urn:xmpp:forward:0", "forwarded")
			ids = append(ids, fwd.Child(elem.NSClient, "message").Get("id"))
		}
		last := fin.Child("http://jabber.org/protocol/rsm", "set").ChildText("http://jabber.org/protocol/rsm", "last")
		after = "<after>" + last + "</after>"
		if fin.Get("complete") == "true" {
			break
		}
	}
	if strings.Join(ids, ",") != "h0,h1,h2,h3,h4" {
		t.Fatalf("paged archive %v", ids)
	}
}

func TestKickBanAndAffiliations(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "bob", "carol")
	alice, bob, carol := cl[0], cl[1], cl[2]
	join(t, alice, "club", "Alice")
	mustResult(t, affiliate(t, alice, "club", "bob@localhost", "member"))
	mustResult(t, affiliate(t, alice, "club", "carol@localhost", "member"))
	join(t, bob, "club", "Bob")
	join(t, carol, "club", "Carol")

	// Members can read the member list (OMEMO clients need it).
	list := mustResult(t, iq(t, carol, "get", roomJID("club"), "<query xmlns='"+muc.NSAdmin+"'><item affiliation='member'/></query>"))
	if !strings.Contains(list.String(), "bob@localhost") || !strings.Contains(list.String(), "carol@localhost") {
		t.Fatalf("member list: %s", list)
	}
	// A member cannot kick.
	r := iq(t, carol, "set", roomJID("club"), "<query xmlns='"+muc.NSAdmin+"'><item nick='Bob' role='none'/></query>")
	if r.Get("type") != "error" {
		t.Fatalf("a member kicked: %s", r)
	}
	// The owner kicks bob: he and the others see 307.
	mustResult(t, iq(t, alice, "set", roomJID("club"), "<query xmlns='"+muc.NSAdmin+"'><item nick='Bob' role='none'><reason>calm down</reason></item></query>"))
	p := bob.Expect(func(e *elem.Element) bool {
		return e.Get("from") == roomJID("club")+"/Bob" && e.Get("type") == "unavailable"
	})
	if !servertest.MUCStatus(p, "307") || !servertest.MUCStatus(p, "110") || !strings.Contains(p.String(), "calm down") {
		t.Fatalf("kicked presence: %s", p)
	}
	p = carol.Expect(func(e *elem.Element) bool {
		return e.Get("from") == roomJID("club")+"/Bob" && e.Get("type") == "unavailable"
	})
	if !servertest.MUCStatus(p, "307") {
		t.Fatalf("others' view of the kick: %s", p)
	}
	// Kicked, not banned: bob may come back. Then he is banned.
	join(t, bob, "club", "Bob")
	mustResult(t, affiliate(t, alice, "club", "bob@localhost", "outcast"))
	p = bob.Expect(func(e *elem.Element) bool {
		return e.Get("from") == roomJID("club")+"/Bob" && e.Get("type") == "unavailable"
	})
	if !servertest.MUCStatus(p, "301") {
		t.Fatalf("banned presence: %s", p)
	}
	if c := joinError(t, bob, "club", "Bob"); c != "forbidden" {
		t.Fatalf("banned join: %s", c)
	}
	// Owners list and voice: carol made admin can't touch the owner.
	mustResult(t, affiliate(t, alice, "club", "carol@localhost", "admin"))
	r = affiliate(t, carol, "club", "alice@localhost", "none")
	if r.Get("type") != "error" {
		t.Fatalf("an admin removed the owner: %s", r)
	}
	// The last owner cannot leave the room ownerless.
	r = affiliate(t, alice, "club", "alice@localhost", "member")
	if condition(r) != "conflict" {
		t.Fatalf("last owner stepped down: %s", r)
	}
	// Remote JIDs cannot be affiliated: the room does not federate.
	r = affiliate(t, alice, "club", "mallory@evil.example", "member")
	if condition(r) != "not-allowed" {
		t.Fatalf("remote affiliation: %s", r)
	}
}

func TestOnlyChatAdminsMakeRoomsPlaintext(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "root", "bob")
	alice, root, bob := cl[0], cl[1], cl[2]
	setServerRole(t, s, "root", store.RoleAdmin)
	join(t, alice, "lobby", "Alice")

	// The owner cannot make it plaintext, nor open an encrypted room.
	r := submitConfig(t, alice, "lobby", map[string]string{muc.FieldEncryption: "plaintext"})
	if condition(r) != "forbidden" {
		t.Fatalf("owner made the room plaintext: %s", r)
	}
	r = submitConfig(t, alice, "lobby", map[string]string{"muc#roomconfig_membersonly": "0"})
	if condition(r) != "not-acceptable" {
		t.Fatalf("encrypted room opened: %s", r)
	}
	info := mustResult(t, iq(t, alice, "get", roomJID("lobby"), "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
	if !strings.Contains(info.String(), "encrypted") || !strings.Contains(info.String(), "muc_membersonly") ||
		!strings.Contains(info.String(), `<field var="x-hearth#policy" label="Encryption policy applied to messages"><value>required</value>`) {
		t.Fatalf("disco info of an encrypted room: %s", info)
	}

	// The chat admin (not affiliated) can.
	mustResult(t, submitConfig(t, root, "lobby", map[string]string{muc.FieldEncryption: "plaintext"}))
	info = mustResult(t, iq(t, alice, "get", roomJID("lobby"), "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
	if !strings.Contains(info.String(), ">plaintext<") || !strings.Contains(info.String(), `<field var="x-hearth#policy" label="Encryption policy applied to messages"><value>off</value>`) {
		t.Fatalf("disco info does not show plaintext: %s", info)
	}
	entries, err := s.Store.(store.Audit).ListAudit(context.Background(), 0)
	if err != nil || len(entries) != 1 || entries[0].Actor != "root@localhost" || entries[0].Old != "encrypted" || entries[0].New != "plaintext" || entries[0].Target != roomJID("lobby") {
		t.Fatalf("audit log %+v, %v", entries, err)
	}
	// Now the owner may open it, and plaintext flows.
	mustResult(t, submitConfig(t, alice, "lobby", map[string]string{"muc#roomconfig_membersonly": "0", "muc#roomconfig_publicroom": "1"}))
	join(t, bob, "lobby", "Bob")
	sendGroup(bob, "lobby", "p1", "<body>hello everyone</body>")
	if m := alice.Expect(isGroupMsg("p1")); m.ChildText(elem.NSClient, "body") != "hello everyone" {
		t.Fatalf("plaintext room message: %s", m)
	}
	items := mustResult(t, iq(t, bob, "get", service, "<query xmlns='http://jabber.org/protocol/disco#items'/>"))
	if !strings.Contains(items.String(), roomJID("lobby")) {
		t.Errorf("a public open room is not listed: %s", items)
	}
	// Retention: chat admins only, within bounds.
	r = submitConfig(t, alice, "lobby", map[string]string{muc.FieldRetention: "30"})
	if condition(r) != "forbidden" {
		t.Fatalf("owner changed retention: %s", r)
	}
	r = submitConfig(t, root, "lobby", map[string]string{muc.FieldRetention: "5000"})
	if condition(r) != "not-acceptable" {
		t.Fatalf("retention beyond the bound: %s", r)
	}
	mustResult(t, submitConfig(t, root, "lobby", map[string]string{muc.FieldRetention: "30"}))
	stored, _ := s.Store.(store.Rooms).GetRoom(context.Background(), "lobby")
	if stored.Retention != 30*24*time.Hour {
		t.Fatalf("retention stored %v", stored.Retention)
	}
}

func TestWhoMayCreateAndEnter(t *testing.T) {
	s := start(t, func(c *config.Config) { c.Rooms.Create = "admins" })
	cl := users(t, s, "root", "bob", "lim")
	root, bob, lim := cl[0], cl[1], cl[2]
	setServerRole(t, s, "root", store.RoleAdmin)
	setServerRole(t, s, "lim", store.RoleLimited)
	if c := joinError(t, bob, "newroom", "Bob"); c != "item-not-found" {
		t.Fatalf("a member created a room with create=admins: %s", c)
	}
	join(t, root, "open", "Root")
	mustResult(t, submitConfig(t, root, "open", map[string]string{muc.FieldEncryption: "plaintext", "muc#roomconfig_membersonly": "0"}))
	join(t, bob, "open", "Bob")
	// Limited accounts enter only rooms that list them as members.
	if c := joinError(t, lim, "open", "Lim"); c != "registration-required" {
		t.Fatalf("limited account joined an open room: %s", c)
	}
	mustResult(t, affiliate(t, root, "open", "lim@localhost", "member"))
	join(t, lim, "open", "Lim")
}

func TestModeratorRetraction(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "bob")
	alice, bob := cl[0], cl[1]
	join(t, alice, "mod", "Alice")
	mustResult(t, affiliate(t, alice, "mod", "bob@localhost", "member"))
	join(t, bob, "mod", "Bob")
	sendGroup(bob, "mod", "bad", omemo)
	m := alice.Expect(isGroupMsg("bad"))
	sid := m.Child(muc.NSStanzaID, "stanza-id").Get("id")
	bob.Expect(isGroupMsg("bad"))

	// Bob is no moderator.
	r := iq(t, bob, "set", roomJID("mod"), "<moderate xmlns='urn:xmpp:message-moderate:1' id='"+sid+"'><retract xmlns='urn:xmpp:message-retract:1'/></moderate>")
	if condition(r) != "forbidden" {
		t.Fatalf("participant moderated: %s", r)
	}
	mustResult(t, iq(t, alice, "set", roomJID("mod"), "<moderate xmlns='urn:xmpp:message-moderate:1' id='"+sid+"'><retract xmlns='urn:xmpp:message-retract:1'/><reason>spam</reason></moderate>"))
	n := bob.Expect(func(e *elem.Element) bool { return e.Child(muc.NSRetract, "retract") != nil })
	if n.Child(muc.NSRetract, "retract").Get("id") != sid || n.Get("from") != roomJID("mod") {
		t.Fatalf("retraction notice: %s", n)
	}
	page, err := s.Store.(store.RoomArchive).QueryRoomArchive(context.Background(), "mod", store.ArchiveQuery{Max: 10})
	if err != nil || len(page.Records) != 2 {
		t.Fatalf("archive after retraction: %d records, %v", len(page.Records), err)
	}
	tomb := string(page.Records[0].Stanza)
	if strings.Contains(tomb, "payload") || !strings.Contains(tomb, "retracted") || !strings.Contains(tomb, sid) {
		t.Fatalf("tombstone: %s", tomb)
	}
	// A made-up id is item-not-found.
	r = iq(t, alice, "set", roomJID("mod"), "<moderate xmlns='urn:xmpp:message-moderate:1' id='0000000000000001'><retract xmlns='urn:xmpp:message-retract:1'/></moderate>")
	if condition(r) != "item-not-found" {
		t.Fatalf("unknown id: %s", r)
	}
}

func TestDestroyWithAlternateVenue(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "bob")
	alice, bob := cl[0], cl[1]
	join(t, alice, "old", "Alice")
	mustResult(t, affiliate(t, alice, "old", "bob@localhost", "member"))
	join(t, bob, "old", "Bob")
	r := iq(t, bob, "set", roomJID("old"), "<query xmlns='"+muc.NSOwner+"'><destroy/></query>")
	if condition(r) != "forbidden" {
		t.Fatalf("a member destroyed the room: %s", r)
	}
	mustResult(t, iq(t, alice, "set", roomJID("old"), "<query xmlns='"+muc.NSOwner+"'><destroy jid='"+roomJID("new")+"'><reason>moved</reason></destroy></query>"))
	p := bob.Expect(func(e *elem.Element) bool {
		return e.Get("from") == roomJID("old")+"/Bob" && e.Get("type") == "unavailable"
	})
	d := p.Child(muc.NSUser, "x").Child(muc.NSUser, "destroy")
	if d == nil || d.Get("jid") != roomJID("new") || d.ChildText(muc.NSUser, "reason") != "moved" {
		t.Fatalf("destroy notice: %s", p)
	}
	if _, err := s.Store.(store.Rooms).GetRoom(context.Background(), "old"); err == nil {
		t.Fatal("the destroyed room is still stored")
	}
}

func TestNickReservationAndConflicts(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "bob", "carol")
	alice, bob, carol := cl[0], cl[1], cl[2]
	join(t, alice, "nicks", "Alice")
	mustResult(t, affiliate(t, alice, "nicks", "bob@localhost", "member"))
	mustResult(t, affiliate(t, alice, "nicks", "carol@localhost", "member"))
	mustResult(t, iq(t, bob, "set", roomJID("nicks"), "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field><field var='muc#register_roomnick'><value>bobby</value></field></x></query>"))
	info := mustResult(t, iq(t, bob, "get", roomJID("nicks"), "<query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/>"))
	if !strings.Contains(info.String(), "bobby") {
		t.Fatalf("reserved nick not reported: %s", info)
	}
	if c := joinError(t, carol, "nicks", "bobby"); c != "conflict" {
		t.Fatalf("carol took bob's reserved nick: %s", c)
	}
	if c := joinError(t, carol, "nicks", "Alice"); c != "conflict" {
		t.Fatalf("carol took a nick in use: %s", c)
	}
	join(t, bob, "nicks", "bobby")
	// Bob's second device joins under the same nick (multi-session).
	bob2 := s.Dial(t, "bob", "bob", "laptop")
	join(t, bob2, "nicks", "bobby")
	sendGroup(alice, "nicks", "x1", omemo)
	bob.Expect(isGroupMsg("x1"))
	bob2.Expect(isGroupMsg("x1"))
}

func TestInvitationsSelfPingAndAvatar(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "dave")
	alice, dave := cl[0], cl[1]
	join(t, alice, "team", "Alice")
	dave.SendRaw("<presence/>") // available, so the invitation is delivered now
	dave.Expect(isPresenceFrom(dave.JID.String()))
	// A mediated invitation into a members-only room makes dave a member.
	alice.SendRaw("<message to='" + roomJID("team") + "' id='inv'><x xmlns='" + muc.NSUser + "'><invite to='dave@localhost'><reason>join us</reason></invite></x></message>")
	inv := dave.Expect(func(e *elem.Element) bool { return e.Get("from") == roomJID("team") && e.Child(muc.NSUser, "x") != nil })
	if i := inv.Child(muc.NSUser, "x").Child(muc.NSUser, "invite"); i == nil || i.Get("from") != "alice@localhost" {
		t.Fatalf("invitation: %s", inv)
	}
	join(t, dave, "team", "Dave")
	// Inviting someone of another server is refused.
	alice.SendRaw("<message to='" + roomJID("team") + "' id='inv2'><x xmlns='" + muc.NSUser + "'><invite to='mallory@evil.example'/></x></message>")
	if e := alice.Expect(func(e *elem.Element) bool { return e.Get("id") == "inv2" }); condition(e) != "not-allowed" {
		t.Fatalf("remote invitation: %s", e)
	}

	// XEP-0410 self-ping: joined answers result; after leaving, an error.
	mustResult(t, iq(t, dave, "get", roomJID("team")+"/Dave", "<ping xmlns='urn:xmpp:ping'/>"))
	dave.SendRaw("<presence type='unavailable' to='" + roomJID("team") + "/Dave'/>")
	dave.Expect(func(e *elem.Element) bool {
		return e.Get("type") == "unavailable" && e.Get("from") == roomJID("team")+"/Dave"
	})
	if r := iq(t, dave, "get", roomJID("team")+"/Dave", "<ping xmlns='urn:xmpp:ping'/>"); condition(r) != "not-acceptable" {
		t.Fatalf("self-ping after leaving: %s", r)
	}

	// Room avatar: the owner sets the room's vCard; its hash is in disco.
	photo := "iVBORw0KGgo="
	mustResult(t, iq(t, alice, "set", roomJID("team"), "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>"+photo+"</BINVAL></PHOTO></vCard>"))
	r := iq(t, dave, "set", roomJID("team"), "<vCard xmlns='vcard-temp'/>")
	if condition(r) != "forbidden" {
		t.Fatalf("a member changed the room's avatar: %s", r)
	}
	v := mustResult(t, iq(t, dave, "get", roomJID("team"), "<vCard xmlns='vcard-temp'/>"))
	if !strings.Contains(v.String(), photo) {
		t.Fatalf("room vCard: %s", v)
	}
	info := mustResult(t, iq(t, dave, "get", roomJID("team"), "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
	if !strings.Contains(info.String(), "muc#roominfo_avatarhash") || !strings.Contains(info.String(), "vcard-temp") {
		t.Fatalf("disco info lacks the avatar: %s", info)
	}
}

func TestRoomsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	opt := func(c *config.Config) { c.DataDir = dir }
	s := start(t, opt)
	cl := users(t, s, "alice")
	join(t, cl[0], "keep", "Alice")
	sendGroup(cl[0], "keep", "k1", omemo)
	cl[0].Expect(isGroupMsg("k1"))
	cl[0].Close()
	s.Stop()

	s2 := start(t, opt)
	alice := s2.Dial(t, "alice", "alice", "again")
	self := join(t, alice, "keep", "Alice")
	if servertest.MUCStatus(self, "201") || item(self).Get("affiliation") != "owner" {
		t.Fatalf("after restart: %s", self)
	}
	if !strings.Contains(alice.Pending(), "k1") {
		// History came before the subject.
		t.Fatalf("history after restart missing k1; got %s", alice.Pending())
	}
}

func TestModeratedRoomsVoiceAndSubject(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "root", "bob")
	alice, root, bob := cl[0], cl[1], cl[2]
	setServerRole(t, s, "root", store.RoleAdmin)
	join(t, alice, "stage", "Alice")
	// A plaintext, open, moderated room: newcomers without membership are
	// visitors.
	mustResult(t, submitConfig(t, root, "stage", map[string]string{muc.FieldEncryption: "plaintext"}))
	mustResult(t, submitConfig(t, alice, "stage", map[string]string{"muc#roomconfig_membersonly": "0", "muc#roomconfig_moderatedroom": "1"}))
	self := join(t, bob, "stage", "Bob")
	if item(self).Get("role") != "visitor" {
		t.Fatalf("newcomer in a moderated room: %s", self)
	}
	sendGroup(bob, "stage", "v1", "<body>may I?</body>")
	if e := bob.Expect(func(e *elem.Element) bool { return e.Get("id") == "v1" }); condition(e) != "forbidden" {
		t.Fatalf("visitor spoke: %s", e)
	}
	// Voice.
	mustResult(t, iq(t, alice, "set", roomJID("stage"), "<query xmlns='"+muc.NSAdmin+"'><item nick='Bob' role='participant'/></query>"))
	p := bob.Expect(func(e *elem.Element) bool {
		return e.Get("from") == roomJID("stage")+"/Bob" && item(e) != nil && item(e).Get("role") == "participant"
	})
	if !servertest.MUCStatus(p, "110") {
		t.Fatalf("own role change lacks 110: %s", p)
	}
	sendGroup(bob, "stage", "v2", "<body>thanks</body>")
	alice.Expect(isGroupMsg("v2"))
	// Participants may not change the subject unless the room allows it.
	sendGroup(bob, "stage", "s1", "<subject>mine now</subject>")
	if e := bob.Expect(func(e *elem.Element) bool { return e.Get("id") == "s1" }); condition(e) != "forbidden" {
		t.Fatalf("participant changed the subject: %s", e)
	}
	sendGroup(alice, "stage", "s2", "<subject>Tonight: the show</subject>")
	bob.Expect(isGroupMsg("s2"))
	// Newcomers get the subject, from whoever set it, last.
	cl2 := users(t, s, "carol")
	carol := cl2[0]
	occ := roomJID("stage") + "/Carol"
	carol.SendRaw("<presence to='" + occ + "'><x xmlns='" + muc.NS + "'/></presence>")
	subj := carol.Expect(func(e *elem.Element) bool { return e.Child(elem.NSClient, "subject") != nil })
	if subj.ChildText(elem.NSClient, "subject") != "Tonight: the show" || subj.Get("from") != roomJID("stage")+"/Alice" {
		t.Fatalf("subject on join: %s", subj)
	}
}

func TestSemiAnonymousPlaintextRoomHidesJIDs(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "root", "bob", "carol")
	alice, root, bob, carol := cl[0], cl[1], cl[2], cl[3]
	setServerRole(t, s, "root", store.RoleAdmin)
	join(t, alice, "masks", "Alice")
	mustResult(t, submitConfig(t, root, "masks", map[string]string{muc.FieldEncryption: "plaintext"}))
	mustResult(t, submitConfig(t, alice, "masks", map[string]string{"muc#roomconfig_membersonly": "0", "muc#roomconfig_whois": "moderators"}))
	self := join(t, bob, "masks", "Bob")
	if servertest.MUCStatus(self, "100") {
		t.Fatalf("semi-anonymous room says non-anonymous: %s", self)
	}
	join(t, carol, "masks", "Carol")
	// Bob (participant) does not see Carol's JID; Alice (moderator) does.
	p := bob.Expect(isPresenceFrom(roomJID("masks") + "/Carol"))
	if item(p).Get("jid") != "" || strings.Contains(p.String(), "carol@") {
		t.Fatalf("participant sees a real JID: %s", p)
	}
	p = alice.Expect(isPresenceFrom(roomJID("masks") + "/Carol"))
	if !strings.HasPrefix(item(p).Get("jid"), "carol@localhost/") {
		t.Fatalf("moderator does not see the real JID: %s", p)
	}
	// Private messages between occupants go through the room, from the
	// sender's occupant JID.
	bob.SendRaw("<message type='chat' id='pm1' to='" + roomJID("masks") + "/Carol'><body>psst</body></message>")
	m := carol.Expect(func(e *elem.Element) bool { return e.Get("id") == "pm1" })
	if m.Get("from") != roomJID("masks")+"/Bob" || strings.Contains(m.String(), "bob@") {
		t.Fatalf("private message: %s", m)
	}
	// A nickname change is seen as 303 then the new nick.
	bob.SendRaw("<presence to='" + roomJID("masks") + "/Robert'/>")
	p = carol.Expect(func(e *elem.Element) bool {
		return isPresenceFrom(roomJID("masks")+"/Bob")(e) && e.Get("type") == "unavailable"
	})
	if !servertest.MUCStatus(p, "303") || item(p).Get("nick") != "Robert" {
		t.Fatalf("nick change: %s", p)
	}
	carol.Expect(isPresenceFrom(roomJID("masks") + "/Robert"))
	// An IQ to an occupant is relayed to their client and its answer back
	// (this test client answers unknown queries with an error).
	r := iq(t, bob, "get", roomJID("masks")+"/Carol", "<query xmlns='jabber:iq:version'/>")
	if r.Get("from") != roomJID("masks")+"/Carol" || (r.Get("type") == "error" && condition(r) != "service-unavailable") {
		t.Fatalf("relayed IQ answer: %s", r)
	}
	if r := iq(t, bob, "get", roomJID("masks")+"/Nobody", "<query xmlns='jabber:iq:version'/>"); condition(r) != "item-not-found" {
		t.Fatalf("IQ to an absent nick: %s", r)
	}
}

func TestHistorySecondsAndSince(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "bob")
	alice, bob := cl[0], cl[1]
	join(t, alice, "time", "Alice")
	mustResult(t, affiliate(t, alice, "time", "bob@localhost", "member"))
	sendGroup(alice, "time", "old", omemo)
	alice.Expect(isGroupMsg("old"))
	time.Sleep(1500 * time.Millisecond)
	mark := time.Now().UTC()
	sendGroup(alice, "time", "new", omemo)
	alice.Expect(isGroupMsg("new"))
	history := func(spec string) []string {
		occ := roomJID("time") + "/Bob"
		bob.SendRaw(fmt.Sprintf("<presence to='%s'><x xmlns='%s'><history %s/></x></presence>", occ, muc.NS, spec))
		var ids []string
		for {
			e := bob.Expect(func(e *elem.Element) bool { return e.Name.Local == "message" })
			if e.Child(elem.NSClient, "subject") != nil {
				break
			}
			ids = append(ids, e.Get("id"))
		}
		bob.SendRaw("<presence type='unavailable' to='" + occ + "'/>")
		bob.Expect(func(e *elem.Element) bool { return e.Get("from") == occ && e.Get("type") == "unavailable" })
		return ids
	}
	if got := history("seconds='1'"); strings.Join(got, ",") != "new" {
		t.Errorf("seconds=1: %v", got)
	}
	if got := history("since='" + mark.Add(-100*time.Millisecond).Format(time.RFC3339Nano) + "'"); strings.Join(got, ",") != "new" {
		t.Errorf("since: %v", got)
	}
	if got := history("maxchars='0'"); len(got) != 0 {
		t.Errorf("maxchars=0: %v", got)
	}
	if got := history(""); strings.Join(got, ",") != "old,new" {
		t.Errorf("default: %v", got)
	}
}

// With the server's policy off nothing is enforced, and the room says so
// next to its mode.
func TestDiscoShowsTheEnforcedPolicy(t *testing.T) {
	s := start(t, func(c *config.Config) { c.E2EE.Policy = "off" })
	cl := users(t, s, "alice")
	join(t, cl[0], "calm", "Alice")
	info := mustResult(t, iq(t, cl[0], "get", roomJID("calm"), "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
	if !strings.Contains(info.String(), `<value>encrypted</value>`) || !strings.Contains(info.String(), `<field var="x-hearth#policy" label="Encryption policy applied to messages"><value>off</value>`) {
		t.Fatalf("disco info under policy off: %s", info)
	}
	sendGroup(cl[0], "calm", "p", "<body>not enforced</body>")
	cl[0].Expect(isGroupMsg("p"))
}
