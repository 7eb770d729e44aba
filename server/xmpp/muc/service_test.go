package muc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/store/boltstore"
	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/muc"
)

// The daemon's room administration: changes reach the people in the room.
func TestAdminOnLiveRooms(t *testing.T) {
	s := start(t)
	cl := users(t, s, "alice", "bob")
	alice, bob := cl[0], cl[1]
	ctx := context.Background()
	rooms := s.Rooms

	st, err := rooms.AdminCreate(ctx, "cli:root", muc.RoomSpec{Name: "Board", Owners: []string{"alice"}, Members: []string{"bob@localhost"}, Title: "The board"})
	if err != nil {
		t.Fatal(err)
	}
	if st.JID != "board@"+service || st.Mode != "encrypted" || !st.MembersOnly || st.Affiliations["bob@localhost"] != store.AffMember || st.Retention != 90*24*time.Hour {
		t.Fatalf("created %+v", st)
	}
	if _, err := rooms.AdminCreate(ctx, "cli:root", muc.RoomSpec{Name: "board", Owners: []string{"alice"}}); !errors.Is(err, muc.ErrRoomExists) {
		t.Fatalf("second create: %v", err)
	}
	for _, bad := range []muc.RoomSpec{
		{Name: "x"}, // no owner
		{Name: "y", Owners: []string{"mallory@evil.example"}}, // remote
		{Name: "z", Owners: []string{"alice"}, Retention: time.Hour},
		{Name: "bad name/", Owners: []string{"alice"}},
	} {
		if _, err := rooms.AdminCreate(ctx, "cli:root", bad); err == nil {
			t.Errorf("created %+v", bad)
		}
	}
	join(t, alice, "board", "Alice")
	join(t, bob, "board", "Bob")

	plain := true
	st, err = rooms.AdminSet(ctx, "cli:root", "board", muc.RoomChange{Plaintext: &plain})
	if err != nil || st.Mode != "plaintext" {
		t.Fatalf("set plaintext: %+v %v", st, err)
	}
	// Occupants are told the configuration changed, and plaintext flows.
	bob.Expect(func(e *elem.Element) bool { return e.Get("from") == "board@"+service && servertest.MUCStatus(e, "104") })
	sendGroup(bob, "board", "p", "<body>now in clear</body>")
	alice.Expect(isGroupMsg("p"))
	if st.Occupants == nil || strings.Join(st.Occupants, ",") != "Alice,Bob" {
		t.Fatalf("occupants %v", st.Occupants)
	}

	// Removing bob's membership removes him from the members-only room.
	if _, err := rooms.AdminAffiliate(ctx, "cli:root", "board", "bob", store.AffNone); err != nil {
		t.Fatal(err)
	}
	p := bob.Expect(func(e *elem.Element) bool {
		return e.Get("from") == "board@"+service+"/Bob" && e.Get("type") == "unavailable"
	})
	if !servertest.MUCStatus(p, "321") {
		t.Fatalf("removal: %s", p)
	}

	if err := rooms.AdminDestroy(ctx, "cli:root", "board", "lobby", "closed"); err != nil {
		t.Fatal(err)
	}
	p = alice.Expect(func(e *elem.Element) bool {
		return e.Get("from") == "board@"+service+"/Alice" && e.Get("type") == "unavailable"
	})
	if d := p.Child(muc.NSUser, "x").Child(muc.NSUser, "destroy"); d == nil || d.Get("jid") != "lobby@"+service {
		t.Fatalf("destroy: %s", p)
	}
	if _, err := rooms.AdminShow(ctx, "board"); !errors.Is(err, muc.ErrNoRoom) {
		t.Fatalf("show after destroy: %v", err)
	}
	log, _ := s.Store.(store.Audit).ListAudit(ctx, 0)
	var actions []string
	for _, e := range log {
		actions = append(actions, e.Action)
	}
	if strings.Join(actions, ",") != "room.create,room.mode,room.affiliation,room.destroy" {
		t.Fatalf("audit actions %v", actions)
	}
}

// With the daemon stopped, the same operations work on the store.
func TestAdminOffline(t *testing.T) {
	dir := t.TempDir()
	st, err := boltstore.Open(dir + "/hearth.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := config.Default("example.org")
	rooms := muc.Offline(st, cfg, nil)
	ctx := context.Background()
	if _, err := rooms.AdminCreate(ctx, "cli:root", muc.RoomSpec{Name: "general", Owners: []string{"ann"}, Plaintext: true}); err != nil {
		t.Fatal(err)
	}
	open := true
	ret := 30 * 24 * time.Hour
	got, err := rooms.AdminSet(ctx, "cli:root", "general@rooms.example.org", muc.RoomChange{Open: &open, Retention: &ret})
	if err != nil || got.MembersOnly || got.Retention != ret || !got.OwnRetention {
		t.Fatalf("set: %+v %v", got, err)
	}
	// Encrypting it again closes it.
	enc := false
	got, err = rooms.AdminSet(ctx, "cli:root", "general", muc.RoomChange{Plaintext: &enc})
	if err != nil || !got.MembersOnly || got.Mode != "encrypted" {
		t.Fatalf("encrypt: %+v %v", got, err)
	}
	if _, err := rooms.AdminSet(ctx, "cli:root", "general", muc.RoomChange{Open: &open}); err == nil {
		t.Fatal("opened an encrypted room")
	}
	if _, err := rooms.AdminSet(ctx, "cli:root", "nope", muc.RoomChange{Open: &open}); !errors.Is(err, muc.ErrNoRoom) {
		t.Fatalf("unknown room: %v", err)
	}
	list, err := rooms.AdminList(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "general" {
		t.Fatalf("list %+v %v", list, err)
	}
	if err := rooms.AdminDestroy(ctx, "cli:root", "general", "", ""); err != nil {
		t.Fatal(err)
	}
	if list, _ := rooms.AdminList(ctx); len(list) != 0 {
		t.Fatalf("after destroy: %+v", list)
	}
}
