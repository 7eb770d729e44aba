package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/store/boltstore"
	"github.com/merveilles/hearth/server/xmpp/sasl"
)

const iters = 4096

// shortDir returns a directory whose paths fit in a unix socket address.
func shortDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "hadm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func testConfig(t testing.TB) *config.Config {
	cfg := config.Default("example.org")
	cfg.DataDir = shortDir(t)
	cfg.TLS.SelfSigned = true
	cfg.Auth.ScramIterations = iters
	return cfg
}

func openStore(t testing.TB, cfg *config.Config) *boltstore.Store {
	st, err := boltstore.Open(cfg.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// daemon serves Local over a real socket, as the running server does, with
// a fake session table that records kicks.
type daemon struct {
	cfg    *config.Config
	st     *boltstore.Store
	kicked map[string]string
	cancel context.CancelFunc
	done   chan error
}

func startDaemon(t *testing.T, cfg *config.Config) *daemon {
	d := &daemon{cfg: cfg, st: openStore(t, cfg), kicked: map[string]string{}, done: make(chan error, 1)}
	srv, err := Listen(cfg.AdminSocket(), "")
	if err != nil {
		t.Fatal(err)
	}
	srv.Backend = func() (Ops, error) {
		return &Local{Store: d.st, Domain: cfg.Domain, ScramIterations: cfg.Auth.ScramIterations, Daemon: true,
			Sessions: func(lp string) int {
				if lp == "alice" {
					return 2
				}
				return 0
			},
			Kick: func(lp, reason string) int { d.kicked[lp] = reason; return 2 },
		}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- srv.Serve(ctx) }()
	t.Cleanup(d.stop)
	return d
}

func (d *daemon) stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	<-d.done
	d.st.Close()
}

func mustConnect(t *testing.T, cfg *config.Config) Ops {
	ops, err := Connect(context.Background(), cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ops.Close() })
	return ops
}

func TestSocketIsPrivate(t *testing.T) {
	cfg := testConfig(t)
	startDaemon(t, cfg)
	fi, err := os.Stat(cfg.AdminSocket())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	// A second daemon must not steal a live socket.
	if _, err := Listen(cfg.AdminSocket(), ""); err == nil || !strings.Contains(err.Error(), "already answering") {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	// Closing a unix listener removes its file; recreate the leftover a
	// crash leaves behind.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	srv, err := Listen(path, "")
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	srv.Close()
}

func TestSocketPathTooLong(t *testing.T) {
	path := filepath.Join(shortDir(t), strings.Repeat("d", 100), "admin.sock")
	if _, err := Listen(path, ""); err == nil || !strings.Contains(err.Error(), "longer than a unix socket allows") {
		t.Fatalf("Listen on a long path: %v", err)
	}
}

func TestSocketForAGroup(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Skip(err)
	}
	g, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Skip(err)
	}
	path := filepath.Join(shortDir(t), "admin.sock")
	srv, err := Listen(path, g.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid)) != g.Gid {
		t.Fatalf("socket mode %v gid %d, want 0660 and group %s (%s)", fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid, g.Name, g.Gid)
	}
}

func TestSocketGroupNeedsExistingGroup(t *testing.T) {
	if _, err := Listen(filepath.Join(shortDir(t), "a.sock"), "no-such-group-hearth"); err == nil || !strings.Contains(err.Error(), "no-such-group-hearth") {
		t.Fatalf("Listen with a missing group: %v", err)
	}
}

// Every operation gives the same results through the daemon and directly on
// the store; only the daemon ends live sessions.
func TestOperationsThroughSocketAndDirect(t *testing.T) {
	for _, viaDaemon := range []bool{true, false} {
		t.Run(fmt.Sprintf("daemon=%v", viaDaemon), func(t *testing.T) {
			cfg := testConfig(t)
			var d *daemon
			if viaDaemon {
				d = startDaemon(t, cfg)
			} else {
				openStore(t, cfg).Close() // an instance that ran once
			}
			ctx := context.Background()
			ops := mustConnect(t, cfg)
			info, err := ops.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Daemon != viaDaemon || info.Domain != "example.org" || info.ScramIterations != iters {
				t.Fatalf("info = %+v", info)
			}
			if _, _, err := AddUser(ctx, ops, "Alice@example.org", "pw1", store.RoleAdmin); err != nil {
				t.Fatal(err)
			}
			_, gen, err := AddUser(ctx, ops, "bob", "", store.RoleMember)
			if err != nil || len(gen) != 20 {
				t.Fatalf("add with a generated password: %q, %v", gen, err)
			}
			if _, _, err := AddUser(ctx, ops, "alice", "x", store.RoleMember); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("duplicate add: %v", err)
			}
			users, err := ops.ListUsers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(users) != 2 || users[0].JID != "alice@example.org" || users[0].Role != store.RoleAdmin || users[1].Localpart != "bob" {
				t.Fatalf("list = %+v", users)
			}
			if viaDaemon && users[0].Sessions != 2 {
				t.Errorf("the daemon did not report sessions: %+v", users[0])
			}
			if _, err := SetPassword(ctx, ops, "alice", "pw2"); err != nil {
				t.Fatal(err)
			}
			if _, err := SetPassword(ctx, ops, "nobody", "pw2"); err == nil || !strings.Contains(err.Error(), "no account nobody@example.org") {
				t.Fatalf("passwd of a missing user: %v", err)
			}
			if _, kicked, err := SetDisabled(ctx, ops, "alice", true); err != nil || kicked != map[bool]int{true: 2, false: 0}[viaDaemon] {
				t.Fatalf("disable: kicked %d, %v", kicked, err)
			}
			if _, _, err := DeleteUser(ctx, ops, "bob"); err != nil {
				t.Fatal(err)
			}
			if _, _, err := DeleteUser(ctx, ops, "bob"); !errors.Is(err, store.ErrNotFound) && !strings.Contains(err.Error(), "no account") {
				t.Fatalf("second delete: %v", err)
			}
			ops.Close()
			if d != nil {
				if d.kicked["alice"] == "" || d.kicked["bob"] == "" {
					t.Errorf("kicks = %v, want alice (disabled) and bob (deleted)", d.kicked)
				}
				d.stop()
			}

			st := openStore(t, cfg)
			defer st.Close()
			a, err := st.GetAccount(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if !a.Disabled || !sasl.CheckPassword(a, "pw2") || sasl.CheckPassword(a, "pw1") || a.Scram["SHA-256"].Iters != iters {
				t.Fatalf("alice after passwd+disable: disabled=%v new=%v old=%v", a.Disabled, sasl.CheckPassword(a, "pw2"), sasl.CheckPassword(a, "pw1"))
			}
			if _, err := st.GetAccount(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("bob after delete: %v", err)
			}
		})
	}
}

func TestConnectLockedDatabase(t *testing.T) {
	cfg := testConfig(t)
	st := openStore(t, cfg) // a daemon holds the database, its socket is gone
	defer st.Close()
	_, err := Connect(context.Background(), cfg, false)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Connect with a locked database = %v, want ErrUnreachable", err)
	}
	for _, want := range []string{cfg.AdminSocket(), cfg.DBPath(), "locked", "Check"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestConnectNoInstance(t *testing.T) {
	cfg := testConfig(t)
	_, err := Connect(context.Background(), cfg, false)
	if err == nil || !strings.Contains(err.Error(), "no hearth instance") {
		t.Fatalf("Connect to an empty directory: %v", err)
	}
	if _, serr := os.Stat(cfg.DBPath()); !os.IsNotExist(serr) {
		t.Fatal("Connect created a database where there was none")
	}
	// Provisioning before the first start creates it.
	ops, err := Connect(context.Background(), cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Close()
	if _, _, err := AddUser(context.Background(), ops, "first", "pw", store.RoleMember); err != nil {
		t.Fatal(err)
	}
}

func TestSocketRejectsBadRequests(t *testing.T) {
	cfg := testConfig(t)
	startDaemon(t, cfg)
	c, err := net.Dial("unix", cfg.AdminSocket())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	for req, want := range map[string]string{
		"not json\n":              "bad request",
		`{"op":"explode"}` + "\n": "unknown operation",
		`{"op":"create_user","account":{"localpart":"x","role":"member"}}` + "\n": "missing SCRAM",
		`{"op":"put_users","accounts":[{"localpart":"y","role":"god"}]}` + "\n":   "unknown role",
	} {
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(buf[:n]), want) {
			t.Errorf("request %q: response %s, want %q", req, buf[:n], want)
		}
	}
}

func TestParseUser(t *testing.T) {
	for in, want := range map[string]string{
		"alice":             "alice",
		"Alice":             "alice",
		"alice@example.org": "alice",
		"alice@EXAMPLE.org": "alice",
		" bob ":             "bob",
	} {
		got, err := ParseUser(in, "example.org")
		if err != nil || got != want {
			t.Errorf("ParseUser(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"alice@other.org":       "not on this server's domain",
		"alice@example.org/res": "without a resource",
		"alice@":                "not a valid JID",
		"@example.org":          "not a valid JID",
		"al ice":                "not a valid user name",
		"a:b<c":                 "not a valid user name",
		"":                      "empty",
	} {
		if _, err := ParseUser(in, "example.org"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseUser(%q) = %v, want an error with %q", in, err, want)
		}
	}
}

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p := GeneratePassword()
		if len(p) != 20 || strings.ContainsAny(p, "0O1lI") || seen[p] {
			t.Fatalf("password %q: wrong length, confusable letters or a repeat", p)
		}
		seen[p] = true
	}
}

func TestReadPassword(t *testing.T) {
	for in, want := range map[string]string{"s3cret\n": "s3cret", "s3cret\r\n": "s3cret", "s3cret": "s3cret", "a b \n": "a b ", "x\ny\n": "x"} {
		if got, err := ReadPassword(strings.NewReader(in)); err != nil || got != want {
			t.Errorf("ReadPassword(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "\n"} {
		if _, err := ReadPassword(strings.NewReader(in)); err == nil {
			t.Errorf("ReadPassword(%q) accepted an empty password", in)
		}
	}
}

func TestParseImportReportsEveryBadLine(t *testing.T) {
	file := `# accounts for the import
alice  pw-a

bob pw with spaces
carol
dave@other.org pw
bad user pw
alice again
Eve	tabbed-pw
`
	_, err := ParseImport(strings.NewReader(file), "example.org")
	var bad *BadLinesError
	if !errors.As(err, &bad) {
		t.Fatalf("err = %v, want *BadLinesError", err)
	}
	want := map[int]string{5: "no password", 6: "not on this server's domain", 8: "already on line 2"}
	if len(bad.Lines) != len(want) {
		t.Fatalf("bad lines = %+v, want lines 5, 6, 8", bad.Lines)
	}
	for _, l := range bad.Lines {
		if !strings.Contains(l.Msg, want[l.Line]) || want[l.Line] == "" {
			t.Errorf("line %d: %q, want %q", l.Line, l.Msg, want[l.Line])
		}
	}
	if !strings.Contains(err.Error(), "line 6:") || !strings.Contains(err.Error(), "nothing imported") {
		t.Errorf("message %q lacks line numbers or the outcome", err)
	}

	good, err := ParseImport(strings.NewReader("# c\nalice  pw-a \n\nbob pw with spaces\nEve\ttabbed-pw\n"), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	wantGood := []Entry{{2, "alice", "pw-a"}, {4, "bob", "pw with spaces"}, {5, "eve", "tabbed-pw"}}
	if fmt.Sprint(good) != fmt.Sprint(wantGood) {
		t.Fatalf("entries = %v, want %v", good, wantGood)
	}
}

func TestImportParallelWithProgress(t *testing.T) {
	for _, viaDaemon := range []bool{true, false} {
		t.Run(fmt.Sprintf("daemon=%v", viaDaemon), func(t *testing.T) {
			cfg := testConfig(t)
			if viaDaemon {
				startDaemon(t, cfg)
			} else {
				openStore(t, cfg).Close()
			}
			ctx := context.Background()
			ops := mustConnect(t, cfg)
			if _, _, err := AddUser(ctx, ops, "u003", "old", store.RoleAdmin); err != nil {
				t.Fatal(err)
			}
			var file strings.Builder
			for i := range 40 {
				fmt.Fprintf(&file, "u%03d pw-%d\n", i, i)
			}
			entries, err := ParseImport(strings.NewReader(file.String()), cfg.Domain)
			if err != nil {
				t.Fatal(err)
			}
			var progress bytes.Buffer
			res, err := Import(ctx, ops, entries, ImportOptions{Workers: 4, BatchSize: 7, Progress: &progress, Interval: time.Nanosecond})
			if err != nil {
				t.Fatal(err)
			}
			if res.Created != 39 || res.Skipped != 1 || res.Replaced != 0 {
				t.Fatalf("result %+v, want 39 created, 1 skipped", res)
			}
			out := progress.String()
			if !strings.Contains(out, "imported 39/39 accounts") || !strings.Contains(out, "accounts/s, ETA") {
				t.Errorf("progress output %q lacks count, rate or ETA", out)
			}
			res, err = Import(ctx, ops, entries[:5], ImportOptions{Replace: true, Role: store.RoleLimited})
			if err != nil || res.Replaced != 5 || res.Created != 0 {
				t.Fatalf("replace: %+v, %v", res, err)
			}
			users, err := ops.ListUsers(ctx)
			if err != nil || len(users) != 40 {
				t.Fatalf("list after import: %d users, %v", len(users), err)
			}
			ops.Close()
			if viaDaemon {
				return
			}
			st := openStore(t, cfg)
			defer st.Close()
			for _, c := range []struct {
				lp, pw string
				role   store.Role
			}{{"u003", "pw-3", store.RoleLimited}, {"u017", "pw-17", store.RoleMember}} {
				a, err := st.GetAccount(ctx, c.lp)
				if err != nil || !sasl.CheckPassword(a, c.pw) || a.Role != c.role {
					t.Errorf("%s: %v, password ok %v, role %s", c.lp, err, sasl.CheckPassword(a, c.pw), a.Role)
				}
			}
		})
	}
}

// A failing write stops the import with a count of what was written.
func TestImportReportsPartialWrite(t *testing.T) {
	cfg := testConfig(t)
	st := openStore(t, cfg)
	defer st.Close()
	ops := &failingOps{Local: Local{Store: st, Domain: cfg.Domain, ScramIterations: iters}, okBatches: 1}
	var entries []Entry
	for i := range 10 {
		entries = append(entries, Entry{Line: i + 1, Localpart: fmt.Sprintf("p%d", i), Password: "pw"})
	}
	res, err := Import(context.Background(), ops, entries, ImportOptions{BatchSize: 4, Workers: 2})
	if err == nil || !strings.Contains(err.Error(), "after writing 4 of 10") || res.Created != 4 {
		t.Fatalf("import with a failing store: %+v, %v", res, err)
	}
	all, _ := st.ListAccounts(context.Background())
	if len(all) != 4 {
		t.Fatalf("%d accounts stored, want the 4 of the first batch", len(all))
	}
}

type failingOps struct {
	Local
	okBatches int
}

func (f *failingOps) PutUsers(ctx context.Context, as []store.Account) error {
	if f.okBatches == 0 {
		return errors.New("disk full")
	}
	f.okBatches--
	return f.Local.PutUsers(ctx, as)
}
