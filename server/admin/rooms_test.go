package admin

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/muc"
)

const roomsDomain = "rooms." + servertest.Domain

// liveDaemon is a real in-process server with the admin socket served from
// its live room module, as the supervisor wires it.
type liveDaemon struct {
	*servertest.Server
	cancel context.CancelFunc
	done   chan error
}

func startLiveDaemon(t *testing.T) *liveDaemon {
	t.Helper()
	sock := filepath.Join(shortDir(t), "admin.sock")
	s := servertest.Start(t, func(c *config.Config) { c.Admin.Socket = sock })
	srv, err := Listen(s.Config.AdminSocket(), "")
	if err != nil {
		t.Fatal(err)
	}
	srv.Backend = func() (Ops, error) {
		return &Local{Store: s.Store, Domain: s.Config.Domain, ScramIterations: s.Config.Auth.ScramIterations, Daemon: true, Rooms: s.Rooms}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &liveDaemon{Server: s, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- srv.Serve(ctx) }()
	t.Cleanup(d.stop)
	return d
}

// stop ends the socket, then the server (which closes the store).
func (d *liveDaemon) stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	<-d.done
	d.Server.Stop()
}

func auditOf(t *testing.T, st store.Audit) []string {
	t.Helper()
	entries, err := st.ListAudit(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Actor+" "+e.Action)
	}
	return out
}

// Room operations through the socket reach the people in the room; with
// the daemon stopped the same operations work on the store, and both
// record the command line's Unix user in the audit log.
func TestRoomsThroughSocketThenDirect(t *testing.T) {
	d := startLiveDaemon(t)
	d.AddUser(t, "alice", "alice")
	d.AddUser(t, "bob", "bob")
	alice := d.Dial(t, "alice", "alice", "phone")
	bob := d.Dial(t, "bob", "bob", "phone")
	ctx := context.Background()
	actor := CLIActor()
	if !strings.HasPrefix(actor, "cli:") || len(actor) == len("cli:") {
		t.Fatalf("CLIActor() = %q", actor)
	}

	ops := mustConnect(t, d.Config)
	if _, ok := ops.(*Client); !ok {
		t.Fatalf("Connect with the daemon running gave %T, want the socket client", ops)
	}
	st, err := ops.CreateRoom(ctx, actor, muc.RoomSpec{Name: "Board", Owners: []string{"alice"}, Members: []string{"bob@localhost"}, Title: "The board"})
	if err != nil {
		t.Fatal(err)
	}
	if st.JID != "board@"+roomsDomain || st.Mode != "encrypted" || !st.MembersOnly || st.Title != "The board" || st.Affiliations["bob@localhost"] != store.AffMember {
		t.Fatalf("created %+v", st)
	}
	// Sentinel errors survive the socket.
	if _, err := ops.CreateRoom(ctx, actor, muc.RoomSpec{Name: "board", Owners: []string{"alice"}}); !errors.Is(err, muc.ErrRoomExists) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := ops.ShowRoom(ctx, "nope"); !errors.Is(err, muc.ErrNoRoom) {
		t.Fatalf("show of a missing room: %v", err)
	}
	if err := ops.DestroyRoom(ctx, actor, "nope", "", ""); !errors.Is(err, muc.ErrNoRoom) {
		t.Fatalf("destroy of a missing room: %v", err)
	}
	// The room service's own messages come through unchanged.
	week := time.Hour
	if _, err := ops.SetRoom(ctx, actor, "board", muc.RoomChange{Retention: &week}); err == nil || !strings.Contains(err.Error(), "between 1 and 365 days") {
		t.Fatalf("retention of an hour: %v", err)
	}

	alice.EnterRoom("board@" + roomsDomain + "/Alice")
	bob.EnterRoom("board@" + roomsDomain + "/Bob")
	rooms, err := ops.ListRooms(ctx)
	if err != nil || len(rooms) != 1 || strings.Join(rooms[0].Occupants, ",") != "Alice,Bob" {
		t.Fatalf("list with two present: %+v %v", rooms, err)
	}

	// A change of mode is announced to those present (status 104).
	plain := true
	if st, err = ops.SetRoom(ctx, actor, "board", muc.RoomChange{Plaintext: &plain}); err != nil || st.Mode != "plaintext" {
		t.Fatalf("set plaintext: %+v %v", st, err)
	}
	alice.Expect(func(e *elem.Element) bool {
		return e.Get("from") == "board@"+roomsDomain && servertest.MUCStatus(e, "104")
	})

	// Removing bob's membership of the members-only room removes him.
	if st, err = ops.AffiliateRoom(ctx, actor, "board", "bob", store.AffNone); err != nil || len(st.Affiliations) != 1 {
		t.Fatalf("remove bob: %+v %v", st, err)
	}
	p := bob.Expect(func(e *elem.Element) bool {
		return e.Get("from") == "board@"+roomsDomain+"/Bob" && e.Get("type") == "unavailable"
	})
	if !servertest.MUCStatus(p, "321") {
		t.Fatalf("bob's removal: %s", p)
	}
	if _, err := ops.AffiliateRoom(ctx, actor, "board", "alice", store.AffMember); err == nil || !strings.Contains(err.Error(), "at least one owner") {
		t.Fatalf("demoting the last owner: %v", err)
	}

	if _, err := ops.CreateRoom(ctx, actor, muc.RoomSpec{Name: "lobby", Owners: []string{"alice"}, Plaintext: true}); err != nil {
		t.Fatal(err)
	}
	if err := ops.DestroyRoom(ctx, actor, "board", "lobby", "moved"); err != nil {
		t.Fatal(err)
	}
	p = alice.Expect(func(e *elem.Element) bool {
		return e.Get("from") == "board@"+roomsDomain+"/Alice" && e.Get("type") == "unavailable"
	})
	if dst := p.Child(muc.NSUser, "x").Child(muc.NSUser, "destroy"); dst == nil || dst.Get("jid") != "lobby@"+roomsDomain {
		t.Fatalf("destroy: %s", p)
	}
	ops.Close()

	// The daemon stops; hearth admin falls back to the database.
	d.stop()
	ops = mustConnect(t, d.Config)
	if info, _ := ops.Info(ctx); info.Daemon {
		t.Fatal("still talking to a daemon")
	}
	rooms, err = ops.ListRooms(ctx)
	if err != nil || len(rooms) != 1 || rooms[0].Name != "lobby" || rooms[0].Mode != "plaintext" {
		t.Fatalf("list offline: %+v %v", rooms, err)
	}
	month := 30 * 24 * time.Hour
	open := true
	if st, err = ops.SetRoom(ctx, actor, "lobby@"+roomsDomain, muc.RoomChange{Retention: &month, Open: &open}); err != nil || st.Retention != month || st.MembersOnly {
		t.Fatalf("set offline: %+v %v", st, err)
	}
	if st, err = ops.AffiliateRoom(ctx, actor, "lobby", "bob", store.AffOutcast); err != nil || st.Affiliations["bob@localhost"] != store.AffOutcast {
		t.Fatalf("ban offline: %+v %v", st, err)
	}
	if _, err := ops.ShowRoom(ctx, "board"); !errors.Is(err, muc.ErrNoRoom) {
		t.Fatalf("destroyed room offline: %v", err)
	}
	if _, err := ops.CreateRoom(ctx, actor, muc.RoomSpec{Name: "side", Owners: []string{"mallory@evil.example"}}); err == nil || !strings.Contains(err.Error(), "do not federate") {
		t.Fatalf("remote owner: %v", err)
	}
	ops.Close()

	st2 := openStore(t, d.Config)
	defer st2.Close()
	got := auditOf(t, st2)
	var want []string
	for _, a := range []string{"create", "mode", "affiliation", "create", "destroy", "retention", "affiliation"} {
		want = append(want, actor+" room."+a)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The audit log names the Unix user the kernel says is at the other end
// of the socket, whatever the client claims; malformed requests are
// refused.
func TestRoomRequestsRecordThePeer(t *testing.T) {
	d := startLiveDaemon(t)
	c, err := net.Dial("unix", d.Config.AdminSocket())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	send := func(req string) string {
		t.Helper()
		if _, err := c.Write([]byte(req + "\n")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	for req, want := range map[string]string{
		`{"op":"set_room","actor":"cli:root","room":"x"}`: "no change",
		`{"op":"create_room","actor":"cli:root"}`:         "no room",
	} {
		if got := send(req); !strings.Contains(got, want) || !strings.Contains(got, "bad request") {
			t.Errorf("request %s: response %s, want a bad request about %q", req, got, want)
		}
	}
	if rooms, _ := d.Rooms.AdminList(context.Background()); len(rooms) != 0 {
		t.Fatalf("a refused request created %+v", rooms)
	}
	// A client claiming to be someone else is recorded as who it is.
	if got := send(`{"op":"create_room","actor":"cli:somebody-else","spec":{"name":"x","owners":["a"]}}`); strings.Contains(got, "error") {
		t.Fatalf("create: %s", got)
	}
	entries, err := d.Rooms.AdminAudit(context.Background(), 0)
	if err != nil || len(entries) != 1 || entries[0].Actor != CLIActor() {
		t.Fatalf("audit %+v, %v; want one entry by %s", entries, err, CLIActor())
	}
}
