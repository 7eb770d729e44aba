package cli

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/admin"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/store/boltstore"
	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/muc"
)

func roomStatus(t *testing.T, out string) muc.RoomStatus {
	t.Helper()
	var st muc.RoomStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("not a room in JSON: %v\n%s", err, out)
	}
	return st
}

// auditActors reads the audit log of a stopped instance.
func auditActors(t *testing.T, data string) []string {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
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

func fakeTerminal(t *testing.T) {
	old := stdinIsTerminal
	stdinIsTerminal = func(io.Reader) bool { return true }
	t.Cleanup(func() { stdinIsTerminal = old })
}

// With the daemon running, room commands go through its socket and those
// in the room see the changes.
func TestAdminRoomThroughDaemon(t *testing.T) {
	data := dataDir(t)
	d := startDev(t, data)
	if code, out, errOut := adminCmd(t, data, "pw-bob\n", "user", "add", "bob", "--password-stdin"); code != 0 {
		t.Fatalf("user add: %d %q %q", code, out, errOut)
	}
	bob := d.srv.Dial(t, "bob", "pw-bob", "phone")

	code, out, errOut := adminCmd(t, data, "", "room", "create", "Board", "--owner", "admin", "--member", "bob@localhost", "--title", "The board", "--retention", "30d", "--json")
	if code != 0 || strings.Contains(errOut, "not running") {
		t.Fatalf("room create: %d %q %q", code, out, errOut)
	}
	st := roomStatus(t, out)
	if st.JID != "board@rooms.localhost" || st.Mode != "encrypted" || !st.MembersOnly || st.Title != "The board" ||
		st.Retention != 30*24*time.Hour || !st.OwnRetention || st.Affiliations["admin@localhost"] != store.AffOwner {
		t.Fatalf("created %+v", st)
	}

	bob.EnterRoom("board@rooms.localhost/Bob")
	code, out, _ = adminCmd(t, data, "", "room", "list", "--json")
	var rooms []muc.RoomStatus
	if err := json.Unmarshal([]byte(out), &rooms); code != 0 || err != nil {
		t.Fatalf("room list --json: %d %v\n%s", code, err, out)
	}
	if len(rooms) != 1 || rooms[0].Name != "board" || strings.Join(rooms[0].Occupants, ",") != "Bob" {
		t.Fatalf("rooms = %+v", rooms)
	}
	code, out, _ = adminCmd(t, data, "", "room", "list")
	if code != 0 || !regexp.MustCompile(`board@rooms\.localhost\s+encrypted\s+yes\s+30d\s+1\n`).MatchString(out) {
		t.Fatalf("room list:\n%s", out)
	}

	// Bob is told the room became plaintext (status 104).
	code, out, _ = adminCmd(t, data, "", "room", "set", "board", "--plaintext", "--retention", "default", "--title", "")
	if code != 0 || !strings.Contains(out, "updated board@rooms.localhost") || !regexp.MustCompile(`Mode:\s+plaintext`).MatchString(out) ||
		!regexp.MustCompile(`Retention:\s+90d \(default\)`).MatchString(out) || !regexp.MustCompile(`Title:\s+-`).MatchString(out) {
		t.Fatalf("room set:\n%s", out)
	}
	bob.Expect(func(e *elem.Element) bool {
		return e.Get("from") == "board@rooms.localhost" && servertest.MUCStatus(e, "104")
	})

	code, out, _ = adminCmd(t, data, "", "room", "show", "board")
	for _, re := range []string{`JID:\s+board@rooms.localhost`, `Occupants:\s+1 \(Bob\)`, `Members-only:\s+yes`, `Federation:\s+off`,
		`Affiliations:\n\s+owner\s+admin@localhost\n\s+member\s+bob@localhost\n`} {
		if code != 0 || !regexp.MustCompile(re).MatchString(out) {
			t.Fatalf("room show lacks %s:\n%s", re, out)
		}
	}

	// Taking bob's membership away removes him from the members-only room.
	code, out, _ = adminCmd(t, data, "", "room", "members", "board", "--remove", "bob", "--json")
	var affs []admin.Affiliation
	if err := json.Unmarshal([]byte(out), &affs); code != 0 || err != nil || len(affs) != 1 || affs[0].JID != "admin@localhost" {
		t.Fatalf("members --remove --json: %d %v\n%s", code, err, out)
	}
	p := bob.Expect(func(e *elem.Element) bool {
		return e.Get("from") == "board@rooms.localhost/Bob" && e.Get("type") == "unavailable"
	})
	if !servertest.MUCStatus(p, "321") {
		t.Fatalf("bob's removal: %s", p)
	}
	code, out, _ = adminCmd(t, data, "", "room", "members", "board", "--add", "bob", "--as", "admin")
	if code != 0 || !strings.Contains(out, "bob is now admin") || !regexp.MustCompile(`owner\s+admin@localhost\nadmin\s+bob@localhost\n`).MatchString(out) {
		t.Fatalf("members --add --as admin:\n%s", out)
	}
	bob.EnterRoom("board@rooms.localhost/Bob")

	// Destroy asks on a terminal; "n" keeps the room.
	fakeTerminal(t)
	code, _, errOut = adminCmd(t, data, "n\n", "room", "destroy", "board")
	if code != 1 || !strings.Contains(errOut, "Destroy board@rooms.localhost") || !strings.Contains(errOut, "1 present now") || !strings.Contains(errOut, "nothing destroyed") {
		t.Fatalf("destroy answered no: %d %q", code, errOut)
	}
	code, out, _ = adminCmd(t, data, "y\n", "room", "destroy", "board", "--alternate", "lobby", "--reason", "moving")
	if code != 0 || !strings.Contains(out, "board@rooms.localhost destroyed (1 present removed)") {
		t.Fatalf("destroy answered yes: %d %q", code, out)
	}
	p = bob.Expect(func(e *elem.Element) bool {
		return e.Get("from") == "board@rooms.localhost/Bob" && e.Get("type") == "unavailable"
	})
	if dst := p.Child(muc.NSUser, "x").Child(muc.NSUser, "destroy"); dst == nil || dst.Get("jid") != "lobby@rooms.localhost" {
		t.Fatalf("bob was not sent to the lobby: %s", p)
	}
	// The audit log through the daemon.
	code, out, _ = adminCmd(t, data, "", "room", "audit")
	if code != 0 || !strings.Contains(out, "room.mode") || !strings.Contains(out, "encrypted -> plaintext") || !strings.Contains(out, "room.destroy") {
		t.Fatalf("room audit through the daemon: %d\n%s", code, out)
	}
	d.stop(t)

	me := admin.CLIActor()
	want := []string{"create", "mode", "retention", "affiliation", "affiliation", "destroy"}
	got := auditActors(t, data)
	if len(got) != len(want) {
		t.Fatalf("audit log %q, want actions %v", got, want)
	}
	for i, a := range want {
		if got[i] != me+" room."+a {
			t.Errorf("audit entry %d = %q, want %q", i, got[i], me+" room."+a)
		}
	}
}

// With the daemon stopped, room commands work on the database directly.
func TestAdminRoomWithoutDaemon(t *testing.T) {
	data := dataDir(t)
	for _, u := range []string{"ann", "ben"} {
		if code, _, errOut := adminCmd(t, data, "pw\n", "user", "add", u, "--password-stdin"); code != 0 {
			t.Fatalf("user add %s: %d %q", u, code, errOut)
		}
	}
	code, out, errOut := adminCmd(t, data, "", "room", "create", "general", "--owner", "ann", "--owner", "ben", "--plaintext")
	if code != 0 || !strings.Contains(errOut, "not running; working on") || !strings.Contains(out, "created general@rooms.localhost (plaintext, members-only, retention 90d (default))") {
		t.Fatalf("room create offline: %d %q %q", code, out, errOut)
	}
	code, out, _ = adminCmd(t, data, "", "room", "set", "general", "--open", "--public", "--moderated", "--retention", "7d", "--description", "all of us", "--json")
	st := roomStatus(t, out)
	if code != 0 || st.MembersOnly || !st.Public || !st.Moderated || st.Retention != 7*24*time.Hour || st.Description != "all of us" {
		t.Fatalf("room set offline: %d %+v", code, st)
	}
	code, out, _ = adminCmd(t, data, "", "room", "members", "general", "--ban", "mallory")
	if code != 0 || !strings.Contains(out, "banned mallory") || !regexp.MustCompile(`outcast\s+mallory@localhost`).MatchString(out) {
		t.Fatalf("members --ban offline: %d\n%s", code, out)
	}
	code, out, _ = adminCmd(t, data, "", "room", "show", "general@rooms.localhost", "--json")
	st = roomStatus(t, out)
	if code != 0 || len(st.Affiliations) != 3 || st.Affiliations["mallory@localhost"] != store.AffOutcast || len(st.Occupants) != 0 {
		t.Fatalf("show offline: %+v", st)
	}
	// Back to encrypted closes the room again.
	code, out, _ = adminCmd(t, data, "", "room", "set", "general", "--encrypted", "--hidden", "--unmoderated", "--json")
	if st = roomStatus(t, out); code != 0 || !st.MembersOnly || st.Mode != "encrypted" || st.Public || st.Moderated {
		t.Fatalf("set encrypted offline: %+v", st)
	}
	code, out, _ = adminCmd(t, data, "", "room", "destroy", "general", "--yes", "--json")
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || res["destroyed"] != true || res["jid"] != "general@rooms.localhost" {
		t.Fatalf("destroy --json: %d %v %s", code, err, out)
	}
	code, out, _ = adminCmd(t, data, "", "room", "list", "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("list after destroy: %d %q", code, out)
	}
	code, out, _ = adminCmd(t, data, "", "room", "list")
	if code != 0 || !strings.Contains(out, "(no rooms)") {
		t.Fatalf("empty list: %q", out)
	}
	code, out, _ = adminCmd(t, data, "", "room", "audit", "--limit", "2")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "room.destroy") || !strings.Contains(out, admin.CLIActor()) {
		t.Fatalf("room audit --limit 2: %d %q", code, out)
	}
	code, out, _ = adminCmd(t, data, "", "room", "audit", "--json")
	var entries []store.AuditEntry
	if err := json.Unmarshal([]byte(out), &entries); code != 0 || err != nil || len(entries) < 4 ||
		entries[0].Action != "room.create" || entries[1].Old != "" && entries[1].Target == "" {
		t.Fatalf("room audit --json: %d %v %s", code, err, out)
	}
	var sawMode bool
	for _, e := range entries {
		if e.Action == "room.mode" && e.Old == "plaintext" && e.New == "encrypted" && e.Target == "general@rooms.localhost" {
			sawMode = true
		}
	}
	if !sawMode {
		t.Fatalf("the switch back to encrypted is not in the audit log: %s", out)
	}
	got := auditActors(t, data)
	if len(got) < 4 || !strings.HasPrefix(got[0], admin.CLIActor()+" room.create") || !strings.HasSuffix(got[len(got)-1], " room.destroy") {
		t.Fatalf("audit log offline: %q", got)
	}
}

func TestAdminRoomRefusesWrongInput(t *testing.T) {
	data := dataDir(t)
	startDev(t, data)
	if code, out, errOut := adminCmd(t, data, "", "room", "create", "enc", "--owner", "admin"); code != 0 {
		t.Fatalf("room create: %d %q %q", code, out, errOut)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		// unknown rooms
		{[]string{"room", "show", "nope"}, 1, `there is no room "nope"`},
		{[]string{"room", "set", "nope", "--public"}, 1, `there is no room "nope"`},
		{[]string{"room", "members", "nope"}, 1, `there is no room "nope"`},
		{[]string{"room", "destroy", "nope", "--yes"}, 1, `there is no room "nope"`},
		{[]string{"room", "show", "enc@rooms.example.org"}, 1, "not on this server's room service"},
		// bad values, the room service's own words
		{[]string{"room", "create", "enc", "--owner", "admin"}, 1, `a room "enc" already exists`},
		{[]string{"room", "create", "x", "--owner", "bob@example.org"}, 1, "rooms do not federate"},
		{[]string{"room", "create", "bad/name", "--owner", "admin"}, 1, "cannot be a room name"},
		{[]string{"room", "create", "x", "--owner", "admin", "--retention", "12h"}, 1, "between 1 and 365 days"},
		{[]string{"room", "set", "enc", "--retention", "400d"}, 1, "between 1 and 365 days"},
		{[]string{"room", "set", "enc", "--open"}, 1, "make it plaintext first"},
		{[]string{"room", "members", "enc", "--remove", "admin"}, 1, "at least one owner"},
		// bad arguments
		{[]string{"room", "create", "x"}, 2, "--owner"},
		{[]string{"room", "create", "x", "--owner", "admin", "--retention", "soon"}, 2, "invalid duration"},
		{[]string{"room", "set", "enc"}, 2, "nothing to change"},
		{[]string{"room", "set", "enc", "--retention", "0"}, 2, "--retention default"},
		{[]string{"room", "set", "enc", "--plaintext", "--encrypted"}, 2, "contradict"},
		{[]string{"room", "set", "enc", "--open", "--members-only"}, 2, "contradict"},
		{[]string{"room", "members", "enc", "--add", "bob", "--ban", "carl"}, 2, "one of --add, --remove and --ban"},
		{[]string{"room", "members", "enc", "--add", "bob", "--as", "outcast"}, 2, "member, admin or owner"},
		{[]string{"room", "members", "enc", "--as", "admin"}, 2, "--as goes with --add"},
		{[]string{"room", "destroy", "enc"}, 2, "--yes"},
		{[]string{"room", "show"}, 2, "expected 1 argument"},
		{[]string{"room", "explode"}, 2, `unknown command "explode"`},
	} {
		code, _, errOut := adminCmd(t, data, "", c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("admin %q: exit %d, %q; want %d with %q", c.args, code, errOut, c.code, c.want)
		}
	}
	if code, out, _ := adminCmd(t, data, "", "room", "list"); code != 0 || strings.Count(out, "@rooms.localhost") != 1 {
		t.Fatalf("refused commands changed the rooms:\n%s", out)
	}
}

// A Unix user who may not use the socket is told how to get access. The
// test runs this package's test binary as "nobody" (so it needs root).
func TestAdminRoomPermissionDenied(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a command as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	data := dataDir(t)
	startDev(t, data)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "hperm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe := filepath.Join(dir, "cli.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestAdminHelperProcess$")
	cmd.Dir = dir
	cmd.Env = []string{"HEARTH_ADMIN_HELPER=" + strings.Join([]string{"--data", data, "room", "list"}, "\x1f"), "HOME=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("hearth admin as nobody: %v\n%s", err, out)
	}
	for _, want := range []string{"permission denied on the admin socket " + filepath.Join(data, "admin.sock"), "member of the admin group", "sudo"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestAdminHelperProcess is hearth admin in a child process, for
// TestAdminRoomPermissionDenied.
func TestAdminHelperProcess(t *testing.T) {
	args := os.Getenv("HEARTH_ADMIN_HELPER")
	if args == "" {
		t.Skip("only run as a child of TestAdminRoomPermissionDenied")
	}
	env, stop := StdEnv()
	code := Admin(env, strings.Split(args, "\x1f"))
	stop()
	os.Exit(code)
}
