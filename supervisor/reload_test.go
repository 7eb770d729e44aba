package supervisor

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// logBuffer collects log output for assertions; reads and writes may come
// from different goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitLog waits for a log line holding every one of parts, after offset
// bytes of the log; it returns the line and where the next search starts.
func waitLog(t *testing.T, logs *logBuffer, offset int, parts ...string) (string, int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		all := logs.String()
		rest := all[offset:]
		start := offset
		for line := range strings.Lines(rest) {
			start += len(line)
			if !strings.HasSuffix(line, "\n") {
				break // not finished being written
			}
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return line, start
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q; log since the mark:\n%s", parts, rest)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeConfig(t *testing.T, path string, cfg *config.Config) {
	t.Helper()
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func hup(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

func isBody(text string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		return e.Name.Local == "message" && e.Get("type") != "error" && e.ChildText("", "body") == text
	}
}

// plaintext sends a plaintext chat message from a to b and checks that it
// bounced with policy-violation (bounce) or reached b (!bounce), and not
// the other way too.
func plaintext(t *testing.T, a, b *servertest.Client, id string, bounce bool) {
	t.Helper()
	text := "plaintext " + id
	a.SendRaw("<message id='" + id + "' to='bob@localhost' type='chat'><body>" + text + "</body></message>")
	bounced := func(e *elem.Element) bool {
		return e.Name.Local == "message" && e.Get("type") == "error" && e.Get("id") == id
	}
	if bounce {
		if c := servertest.ErrorCondition(a.Expect(bounced)); c != "policy-violation" {
			t.Fatalf("%s bounced with %q, want policy-violation", id, c)
		}
		b.ExpectNone(300*time.Millisecond, isBody(text))
		return
	}
	if b.ExpectWithin(5*time.Second, isBody(text)) == nil {
		t.Fatalf("%s was not delivered; sender got: %s", id, a.Pending())
	}
	a.ExpectNone(300*time.Millisecond, bounced)
}

// A SIGHUP re-reads the configuration file: live settings change on the
// sessions already bound (here the E2EE policy goes from required to off),
// an invalid file changes nothing and says why, and a changed port is
// reported as needing a restart while the old one keeps serving.
func TestSIGHUPReloadsConfig(t *testing.T) {
	notes := notifySocket(t)
	logs := &logBuffer{}
	var out io.Writer = logs
	if os.Getenv("HEARTH_TEST_DEBUG") != "" {
		out = io.MultiWriter(logs, os.Stderr)
	}
	level := new(slog.LevelVar)
	level.Set(slog.LevelInfo)
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))

	cfg := testConfig(t)
	cfg.E2EE.Policy = "required"
	path := filepath.Join(t.TempDir(), "hearth.yaml")
	writeConfig(t, path, cfg)
	loaded, err := config.Load(path)
	if err != nil {
		t.Fatalf("the test's config file does not load: %v", err)
	}
	inst, err := Start(loaded, log)
	if err != nil {
		t.Fatal(err)
	}
	inst.ConfigFile, inst.LogLevel = path, level
	st, dt := inst.Addrs()
	srv := inst.Server()
	ts := &servertest.Server{Server: srv, Addr: st[0].String(), DirectAddr: dt[0].String()}
	ts.AddUser(t, "alice", "pa")
	ts.AddUser(t, "bob", "pb")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inst.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}()
	expectNotify(t, notes, "READY=1")

	a := ts.Dial(t, "alice", "pa", "phone")
	b := ts.Dial(t, "bob", "pb", "laptop")
	for _, c := range []*servertest.Client{a, b} {
		c.SendRaw("<presence/>")
		c.Expect(func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("from") == c.JID.String() })
	}
	plaintext(t, a, b, "before", true)

	// An invalid file: nothing changes, and the log names the problem.
	bad := *cfg
	bad.E2EE.Policy = "sometimes"
	bad.Limits.MaxRosterItems = 1
	writeConfig(t, path, &bad)
	mark := len(logs.String())
	hup(t)
	expectNotify(t, notes, "RELOADING=1")
	line, mark := waitLog(t, logs, mark, "level=ERROR", "reload failed", "configuration not reloaded", "e2ee.policy", "sometimes")
	if !strings.Contains(line, path) {
		t.Errorf("the error does not name the file %s: %s", path, line)
	}
	expectNotify(t, notes, "READY=1")
	if got := srv.XMPP.Config().Limits.MaxRosterItems; got != cfg.Limits.MaxRosterItems {
		t.Errorf("an invalid file changed max_roster_items to %d", got)
	}
	plaintext(t, a, b, "after-invalid", true) // an invalid file left the policy

	// A valid file: policy off and debug logging now; a new port later.
	good := *cfg
	good.E2EE.Policy = "off"
	good.LogLevel = "debug"
	good.Limits.MaxOfflineMessages = 7
	good.StreamManagement.ResumeWindow = config.Duration(42 * time.Second)
	good.Retention.Archive = config.Duration(48 * time.Hour)
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	newPort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	good.Listen.C2SPort = newPort
	writeConfig(t, path, &good)
	hup(t)
	expectNotify(t, notes, "RELOADING=1")
	line, mark = waitLog(t, logs, mark, "level=WARN", "needs a restart", "setting=listen.c2s_port", "file="+strconv.Itoa(newPort))
	if !strings.Contains(line, "running=0") {
		t.Errorf("the warning does not give the running value: %s", line)
	}
	line, _ = waitLog(t, logs, mark, "level=INFO", "configuration reloaded", "changed=")
	for _, f := range []string{"e2ee.policy", "log_level", "limits.max_offline_messages", "stream_management.resume_window", "retention.archive"} {
		if !strings.Contains(line, f) {
			t.Errorf("the reload log does not list %s: %s", f, line)
		}
	}
	if strings.Contains(line, "listen.c2s_port") {
		t.Errorf("the port is listed as applied: %s", line)
	}
	expectNotify(t, notes, "READY=1")

	// The same sessions, the same chat service: nothing was restarted.
	if inst.Server() != srv {
		t.Fatal("the chat service was replaced by the reload")
	}
	if n := srv.XMPP.Router().SessionCount(); n != 2 {
		t.Fatalf("%d sessions after the reload, want the 2 from before", n)
	}
	plaintext(t, a, b, "after-reload", false) // policy off now
	// The server advertises the new policy (and so a new caps hash).
	info := a.IQ("<iq type='get' to='localhost' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if !strings.Contains(info.String(), "<value>off</value>") {
		t.Errorf("disco#info does not advertise policy off: %s", info)
	}
	live := srv.XMPP.Config()
	if live.Limits.MaxOfflineMessages != 7 || live.StreamManagement.ResumeWindow.D() != 42*time.Second || live.Retention.Archive.D() != 48*time.Hour {
		t.Errorf("live settings not applied: offline cap %d, resume window %s, archive %s",
			live.Limits.MaxOfflineMessages, live.StreamManagement.ResumeWindow.D(), live.Retention.Archive.D())
	}
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level is %s after reloading with debug", level.Level())
	}

	// The port needs a restart: the live config keeps the old one, the old
	// address still serves, and nothing was opened on the new one.
	if live.Listen.C2SPort != 0 {
		t.Errorf("live c2s_port is %d, want the running 0", live.Listen.C2SPort)
	}
	if st2, _ := inst.Addrs(); !slices.EqualFunc(st, st2, func(x, y net.Addr) bool { return x.String() == y.String() }) {
		t.Errorf("listen addresses changed from %v to %v", st, st2)
	}
	c := ts.Dial(t, "alice", "pa", "tablet")
	c.SendRaw("<presence/>")
	c.Expect(func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("from") == c.JID.String() })
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(newPort)), time.Second); err == nil {
		conn.Close()
		t.Errorf("the new port %d accepts connections without a restart", newPort)
	}

	// The original sessions are still connected and working both ways.
	b.SendRaw("<message id='back' to='alice@localhost/phone' type='chat'><body>still here</body></message>")
	a.Expect(isBody("still here"))
}

// merge applies what may change live and keeps every restart-only
// setting, naming both kinds.
func TestMergeKeepsRestartOnlySettings(t *testing.T) {
	old := config.Default("chat.example.org")
	next := config.Default("chat.example.org")
	next.Domain = "other.example.org"
	next.DataDir = "/srv/hearth"
	next.Listen.Addresses = []string{"127.0.0.1"}
	next.TLS.CertFile = "/etc/ssl/x.pem"
	next.ACME.Names = []string{"chat.example.org"}
	next.Admin.Group = "wheel"
	next.E2EE.Policy = "optional"
	next.Limits.MaxRosterItems = 10
	next.Auth.FailuresPerIP = 3
	next.LogLevel = "warn"

	merged, live, restart := merge(old, next)
	wantRestart := []string{"domain", "data_dir", "listen.addresses", "tls.cert_file", "admin.group", "acme.names"}
	wantLive := []string{"auth.failures_per_ip", "limits.max_roster_items", "e2ee.policy", "log_level"}
	slices.Sort(wantRestart)
	slices.Sort(wantLive)
	slices.Sort(restart)
	slices.Sort(live)
	if !slices.Equal(restart, wantRestart) {
		t.Errorf("restart-only changes %v, want %v", restart, wantRestart)
	}
	if !slices.Equal(live, wantLive) {
		t.Errorf("live changes %v, want %v", live, wantLive)
	}
	if merged.Domain != old.Domain || merged.DataDir != old.DataDir || merged.TLS.CertFile != "" ||
		!slices.Equal(merged.Listen.Addresses, old.Listen.Addresses) || merged.Admin.Group != "" || len(merged.ACME.Names) != 0 {
		t.Errorf("a restart-only setting changed: %+v", merged)
	}
	if merged.E2EE.Policy != "optional" || merged.Limits.MaxRosterItems != 10 || merged.Auth.FailuresPerIP != 3 || merged.LogLevel != "warn" {
		t.Errorf("a live setting was not applied: %+v", merged)
	}
	if old.E2EE.Policy != "required" || next.Domain != "other.example.org" {
		t.Error("merge changed its inputs")
	}
	if _, live, restart := merge(old, old); len(live)+len(restart) != 0 {
		t.Errorf("no change reported as %v and %v", live, restart)
	}
}
