package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"

	"github.com/merveilles/hearth/server/admin"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/store/boltstore"
	"github.com/merveilles/hearth/supervisor"
)

// buffer is a bytes.Buffer safe for the logger and the test to share.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// dataDir is short enough for the admin socket path.
func dataDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "hcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "data")
}

type devRun struct {
	inst           *supervisor.Instance
	stdout, stderr *buffer
	cancel         context.CancelFunc
	code           chan int
	srv            *servertest.Server // for its mellium dialer
}

// startDev runs `hearth dev` in-process on free ports.
func startDev(t *testing.T, data string, extra ...string) *devRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &devRun{stdout: &buffer{}, stderr: &buffer{}, cancel: cancel, code: make(chan int, 1)}
	ready := make(chan *supervisor.Instance, 1)
	env := Env{Ctx: ctx, Stdin: strings.NewReader(""), Stdout: d.stdout, Stderr: d.stderr,
		Ready: func(i *supervisor.Instance) { ready <- i }}
	args := append([]string{"--data", data, "--c2s-port", "0", "--tls-port", "0", "--http-port", "0"}, extra...)
	go func() { d.code <- Dev(env, args) }()
	select {
	case d.inst = <-ready:
	case c := <-d.code:
		cancel()
		t.Fatalf("hearth dev exited with %d:\n%s%s", c, d.stdout, d.stderr)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("hearth dev did not become ready")
	}
	st, dt := d.inst.Addrs()
	d.srv = &servertest.Server{Addr: st[0].String(), DirectAddr: dt[0].String()}
	t.Cleanup(func() { d.stop(t) })
	return d
}

func (d *devRun) stop(t *testing.T) {
	t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case c := <-d.code:
		if c != 0 {
			t.Errorf("hearth dev exited with %d:\n%s", c, d.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("hearth dev did not stop")
	}
}

func (d *devRun) login(t *testing.T, user, pw string, direct bool) (*xmpp.Session, error) {
	return d.srv.DialErr(user, pw, "test", direct, sasl.ScramSha256)
}

// run runs a command in-process and returns its exit code and output.
func run(t *testing.T, stdin string, fn func(Env, []string) int, args ...string) (int, string, string) {
	t.Helper()
	var out, errb buffer
	env := Env{Ctx: context.Background(), Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb}
	code := fn(env, args)
	return code, out.String(), errb.String()
}

func adminCmd(t *testing.T, data, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return run(t, stdin, Admin, append([]string{"--data", data}, args...)...)
}

var passwordLine = regexp.MustCompile(`password:\s+(\S+)`)

func TestDevCreatesAdminOnFirstStartOnly(t *testing.T) {
	data := dataDir(t)
	d := startDev(t, data)
	out := d.stdout.String()
	m := passwordLine.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "JID:       admin@localhost") {
		t.Fatalf("first start did not print the admin JID and password:\n%s", out)
	}
	pw := m[1]
	pwFile := filepath.Join(data, "admin-password.txt")
	raw, err := os.ReadFile(pwFile)
	if err != nil || strings.TrimSpace(string(raw)) != pw {
		t.Fatalf("password file %q (%v), printed %q", raw, err, pw)
	}
	for path, want := range map[string]os.FileMode{pwFile: 0o600, data: 0o700, filepath.Join(data, "admin.sock"): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, want)
		}
	}
	for _, direct := range []bool{false, true} {
		s, err := d.login(t, "admin", pw, direct)
		if err != nil {
			t.Fatalf("admin login (direct TLS %v): %v", direct, err)
		}
		s.Close()
	}
	log := d.stderr.String()
	st, dt := d.inst.Addrs()
	for _, want := range []string{"addr=" + st[0].String(), "addr=" + dt[0].String(), "admin socket", "hearth dev is ready"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	d.stop(t)
	if !strings.Contains(d.stderr.String(), "msg=stopped") {
		t.Errorf("no clean stop in the log:\n%s", d.stderr)
	}

	d2 := startDev(t, data)
	out2 := d2.stdout.String()
	if strings.Contains(out2, pw) || !strings.Contains(out2, "its first password is in "+pwFile) {
		t.Fatalf("second start printed the password again or did not say where it is:\n%s", out2)
	}
	if s, err := d2.login(t, "admin", pw, false); err != nil {
		t.Fatalf("admin login after restart: %v", err)
	} else {
		s.Close()
	}
}

func TestDevRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--c2s-port", "x"}, {"--bind", "localhost"}, {"--domain", "a b"}, {"extra"}} {
		code, _, stderr := run(t, "", Dev, args...)
		if code != ExitUsage || !strings.Contains(stderr, "hearth dev:") {
			t.Errorf("dev %q: exit %d, %q", args, code, stderr)
		}
	}
	code, stdout, _ := run(t, "", Dev, "--help")
	if code != 0 || !strings.Contains(stdout, "--c2s-port") || !strings.Contains(stdout, "admin-password.txt") {
		t.Errorf("dev --help: exit %d\n%s", code, stdout)
	}
}

// With the daemon running, admin goes through its socket and a deleted user
// is disconnected at once.
func TestAdminThroughDaemon(t *testing.T) {
	data := dataDir(t)
	d := startDev(t, data)

	code, out, errOut := adminCmd(t, data, "pw-bob\n", "user", "add", "bob@localhost", "--password-stdin")
	if code != 0 || !strings.Contains(out, "created bob@localhost (member)") || strings.Contains(out, "password:") {
		t.Fatalf("user add: %d %q %q", code, out, errOut)
	}
	if strings.Contains(errOut, "not running") {
		t.Fatalf("admin did not use the daemon: %q", errOut)
	}
	sess, err := d.login(t, "bob", "pw-bob", false)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- sess.Serve(nil) }()

	code, out, _ = adminCmd(t, data, "", "user", "list", "--json")
	var users []admin.User
	if err := json.Unmarshal([]byte(out), &users); code != 0 || err != nil {
		t.Fatalf("user list --json: %d %v\n%s", code, err, out)
	}
	if len(users) != 2 || users[1].JID != "bob@localhost" || users[1].Sessions != 1 || users[0].Role != "admin" {
		t.Fatalf("users = %+v", users)
	}

	code, out, _ = adminCmd(t, data, "", "user", "delete", "bob")
	if code != 0 || !strings.Contains(out, "bob deleted (1 session ended)") {
		t.Fatalf("user delete: %d %q", code, out)
	}
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "not-authorized") {
			t.Errorf("deleted user's stream ended with %v, want a not-authorized stream error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("deleted user's session still open")
	}
	if _, err := d.login(t, "bob", "pw-bob", false); err == nil {
		t.Fatal("deleted user can still log in")
	}

	// A generated password is printed and works.
	code, out, _ = adminCmd(t, data, "", "user", "add", "carol", "--role", "limited")
	m := passwordLine.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("user add without password: %d %q", code, out)
	}
	if s, err := d.login(t, "carol", m[1], true); err != nil {
		t.Fatalf("login with the generated password: %v", err)
	} else {
		s.Close()
	}

	// Import through the daemon, with progress.
	file := filepath.Join(t.TempDir(), "users.txt")
	os.WriteFile(file, []byte("# people\ndan pw-dan\n\nerin pw-erin\ncarol other\n"), 0o600)
	code, out, errOut = adminCmd(t, data, "", "user", "import", file)
	if code != 0 || !strings.Contains(out, "2 created, 0 replaced, 1 skipped") || !strings.Contains(errOut, "imported 2/2 accounts") {
		t.Fatalf("import: %d %q %q", code, out, errOut)
	}
	if s, err := d.login(t, "erin", "pw-erin", false); err != nil {
		t.Fatalf("imported user cannot log in: %v", err)
	} else {
		s.Close()
	}
}

func TestAdminRefusesWrongInput(t *testing.T) {
	data := dataDir(t)
	startDev(t, data)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"user", "add", "bob@example.org"}, 1, "not on this server's domain \"localhost\""},
		{[]string{"user", "add", "bob@localhost/phone"}, 1, "without a resource"},
		{[]string{"user", "add", "b b"}, 1, "not a valid user name"},
		{[]string{"user", "add", "bob", "--role", "god"}, 1, "unknown role"},
		{[]string{"user", "add", "bob", "--password-stdin"}, 1, "no password on standard input"},
		{[]string{"user", "add", "admin"}, 1, "already exists"},
		{[]string{"user", "passwd", "nobody"}, 1, "no account nobody@localhost"},
		{[]string{"user", "delete", "nobody@localhost"}, 1, "no account"},
		{[]string{"user", "add"}, 2, "expected 1 argument"},
		{[]string{"user", "frob"}, 2, "unknown command \"frob\""},
		{[]string{"group"}, 2, "unknown command \"group\""},
		{[]string{"--config", "x.yaml", "user", "list"}, 2, "not both"},
	} {
		code, _, errOut := adminCmd(t, data, "", c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("admin %q: exit %d, %q; want %d with %q", c.args, code, errOut, c.code, c.want)
		}
	}

	// A file with bad lines is refused whole, with line numbers.
	file := filepath.Join(t.TempDir(), "users.txt")
	os.WriteFile(file, []byte("dan pw\nerin\nfrank@elsewhere.org pw\ngina pw\n"), 0o600)
	code, _, errOut := adminCmd(t, data, "", "user", "import", file)
	if code != 1 || !strings.Contains(errOut, "line 2: expected") || !strings.Contains(errOut, "line 3: ") || !strings.Contains(errOut, "nothing imported") {
		t.Fatalf("import with bad lines: %d %q", code, errOut)
	}
	_, out, _ := adminCmd(t, data, "", "user", "list")
	if strings.Contains(out, "dan@") || strings.Contains(out, "gina@") {
		t.Fatalf("a refused import left accounts behind:\n%s", out)
	}
}

// With the daemon stopped, admin works on the database directly; with the
// database locked and no socket, it says what is wrong.
func TestAdminWithoutDaemon(t *testing.T) {
	data := dataDir(t)
	// Provisioning before the first start.
	code, _, errOut := adminCmd(t, data, "pw-a\n", "user", "add", "alice", "--password-stdin")
	if code != 0 || !strings.Contains(errOut, "created a new database") {
		t.Fatalf("add before first start: %d %q", code, errOut)
	}
	code, _, errOut = adminCmd(t, data, "pw-a2\n", "user", "passwd", "alice@localhost", "--password-stdin")
	if code != 0 || !strings.Contains(errOut, "not running; working on") {
		t.Fatalf("passwd: %d %q", code, errOut)
	}
	for _, args := range [][]string{{"user", "disable", "alice"}, {"user", "enable", "alice"}, {"user", "disable", "alice"}} {
		if code, out, errOut := adminCmd(t, data, "", args...); code != 0 {
			t.Fatalf("%q: %d %q %q", args, code, out, errOut)
		}
	}
	code, out, _ := adminCmd(t, data, "", "user", "list")
	if code != 0 || !regexp.MustCompile(`alice@localhost\s+member\s+disabled\s+0`).MatchString(out) {
		t.Fatalf("list:\n%s", out)
	}

	d := startDev(t, data)
	if _, err := d.login(t, "alice", "pw-a2", false); err == nil {
		t.Fatal("a disabled account logged in")
	}
	if code, _, _ := adminCmd(t, data, "", "user", "enable", "alice"); code != 0 {
		t.Fatal("enable through the daemon failed")
	}
	if s, err := d.login(t, "alice", "pw-a2", false); err != nil {
		t.Fatalf("login with the new password after enable: %v", err)
	} else {
		s.Close()
	}
	d.stop(t)

	code, out, _ = adminCmd(t, data, "", "user", "delete", "alice")
	if code != 0 || !strings.Contains(out, "alice deleted (0 sessions ended)") {
		t.Fatalf("delete without daemon: %d %q", code, out)
	}

	// Something holds the database but the socket is gone.
	st, err := boltstore.Open(filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	code, _, errOut = adminCmd(t, data, "", "user", "list")
	if code != 1 || !strings.Contains(errOut, "daemon seems to be running but its admin socket is not reachable") || !strings.Contains(errOut, filepath.Join(data, "admin.sock")) {
		t.Fatalf("locked database: %d %q", code, errOut)
	}

	// A mistyped directory is not silently a new instance for reading.
	code, _, errOut = adminCmd(t, data+"-typo", "", "user", "list")
	if code != 1 || !strings.Contains(errOut, "no hearth instance") {
		t.Fatalf("missing instance: %d %q", code, errOut)
	}
}

func TestHelpTexts(t *testing.T) {
	var b bytes.Buffer
	Usage(&b)
	for _, cmd := range []string{"dev", "run", "admin", "version", "help"} {
		if !regexp.MustCompile(`(?m)^  ` + cmd + ` `).MatchString(b.String()) {
			t.Errorf("top-level help lacks %q:\n%s", cmd, b.String())
		}
	}
	for name, fn := range map[string]func(Env, []string) int{"run": Run, "admin": Admin, "version": Version} {
		code, out, _ := run(t, "", fn, "--help")
		if code != 0 || !strings.Contains(out, "Usage:\n  hearth "+name) {
			t.Errorf("%s --help: %d\n%s", name, code, out)
		}
	}
	code, out, _ := run(t, "", Admin, "user", "--help")
	for _, verb := range []string{"add", "list", "passwd", "disable", "enable", "delete", "import"} {
		if code != 0 || !strings.Contains(out, "  "+verb+" ") && !strings.Contains(out, "  "+verb+"\n") {
			t.Errorf("admin user --help lacks %q:\n%s", verb, out)
		}
	}
	code, out, _ = run(t, "", Admin, "user", "import", "--help")
	if code != 0 || !strings.Contains(out, "--replace") {
		t.Errorf("admin user import --help:\n%s", out)
	}
	code, out, _ = run(t, "", Version)
	if code != 0 || !strings.HasPrefix(out, "hearth ") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestRunNeedsAValidConfig(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := run(t, "", Run, "--config", filepath.Join(dir, "missing.yaml"))
	if code != 1 || !strings.Contains(errOut, "read config") {
		t.Fatalf("missing config: %d %q", code, errOut)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("domain: example.org\nauth:\n  scram_iterations: 1000\n"), 0o600)
	code, _, errOut = run(t, "", Run, "--config", bad)
	if code != 1 || !strings.Contains(errOut, "below the minimum of 4096") {
		t.Fatalf("bad config: %d %q", code, errOut)
	}
}

func TestRunFromConfig(t *testing.T) {
	data := dataDir(t)
	cfgFile := filepath.Join(t.TempDir(), "hearth.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`domain: chat.example.org
data_dir: %s
listen:
  addresses: ["127.0.0.1"]
  c2s_port: 0
  tls_port: 0
tls:
  self_signed: true
auth:
  scram_iterations: 4096
`, data)), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *supervisor.Instance, 1)
	var out, errb buffer
	code := make(chan int, 1)
	go func() {
		code <- Run(Env{Ctx: ctx, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Ready: func(i *supervisor.Instance) { ready <- i }}, []string{"--config", cfgFile})
	}()
	select {
	case <-ready:
	case c := <-code:
		t.Fatalf("run exited with %d: %s", c, errb.String())
	}
	c, stdout, stderr := run(t, "", Admin, "--config", cfgFile, "user", "add", "zoe@chat.example.org")
	if c != 0 || !strings.Contains(stdout, "created zoe@chat.example.org") || strings.Contains(stderr, "not running") {
		t.Fatalf("admin against hearth run: %d %q %q", c, stdout, stderr)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("run exited with %d: %s", c, errb.String())
	}
}
