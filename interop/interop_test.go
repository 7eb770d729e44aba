//go:build interop

package interop

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/internal/devinstance"
)

const domain = "localhost"

// Accounts used by slixmpp_suite.py. They are created with the daemon
// stopped (hearth admin opens the store directly), except liveAccounts,
// which are added through the admin socket of the running daemon.
var (
	offlineAccounts = []string{"alice", "bob", "dave", "erin", "frank", "grace", "heidi",
		"ivan", "judy", "mallory", "olga", "rosa", "peggy", "nina", "oscar",
		"pat", "quinn", "rita", "sam", "carl", "tina", "uma", "victor"}
	liveAccounts = []string{"carol"}
)

func TestSlixmpp(t *testing.T) {
	python := pythonWithSlixmpp(t)
	bin, dir, data, c2s, direct := newInstance(t, startHearth)

	passwords := make(map[string]string)
	for _, u := range offlineAccounts {
		passwords[u] = addUser(t, bin, data, u)
	}

	srv := startHearth(t, bin, data, c2s, direct)
	for _, u := range liveAccounts {
		passwords[u] = addUser(t, bin, data, u)
	}

	args := suiteArgs("slixmpp_suite.py", data, c2s, direct, writeAccounts(t, dir, passwords))
	if only := os.Getenv("HEARTH_INTEROP_ONLY"); only != "" {
		args = append(args, "--only", only)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, args...)
	var out bytes.Buffer
	if testing.Verbose() {
		cmd.Stdout = io.MultiWriter(&out, os.Stdout)
	} else {
		cmd.Stdout = &out
	}
	cmd.Stderr = cmd.Stdout
	runErr := cmd.Run()
	if runErr != nil {
		t.Errorf("slixmpp scenarios failed (%v):\n%s", runErr, out.String())
		t.Logf("server log (last lines):\n%s", srv.LogTail(150))
	} else if !testing.Verbose() {
		t.Logf("slixmpp scenarios:\n%s", out.String())
	}

	// On SIGTERM the daemon ends open streams properly and exits with 0.
	watchShutdown(ctx, t, srv, python, append(args, "--watch-shutdown", "--scenario-timeout", "30"))
}

// TestSlixmppE2EE runs the E2EE scenarios against a second instance
// started like the README's first command, with the default policy
// (required): a plaintext 1:1 message bounces, an OMEMO one passes, and
// real OMEMO sessions (python3-omemo, both namespaces) work through PEP.
// Then, with the server stopped, the data file must hold the archived
// OMEMO messages but none of their plaintexts.
func TestSlixmppE2EE(t *testing.T) {
	python := pythonWithSlixmpp(t)
	requirePythonModules(t, python, "omemo", "oldmemo.etree", "twomemo.etree")
	bin, dir, data, c2s, direct := newInstance(t, startHearthArgs)
	passwords := make(map[string]string)
	for _, u := range []string{"alice", "bob"} {
		passwords[u] = addUser(t, bin, data, u)
	}
	accountsFile := writeAccounts(t, dir, passwords)
	srv := startHearthArgs(t, bin, data, c2s, direct)
	recordFile := filepath.Join(dir, "omemo-record.txt")
	args := suiteArgs("slixmpp_suite.py", data, c2s, direct, accountsFile, "--suite", "e2ee", "--omemo-record", recordFile)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, args...).CombinedOutput()
	if err != nil {
		t.Errorf("slixmpp E2EE scenarios failed (%v):\n%s", err, out)
		t.Logf("server log (last lines):\n%s", srv.LogTail(100))
	} else {
		t.Logf("slixmpp E2EE scenarios:\n%s", out)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("stopping hearth dev: %v", err)
	}
	checkNoPlaintextAtRest(t, filepath.Join(data, "hearth.db"), recordFile)
}

// checkNoPlaintextAtRest reads the stopped server's bbolt file as raw bytes
// (free pages included) and checks that no OMEMO plaintext the clients
// exchanged is in it, while every message id is: the archive kept the
// messages, only never their content. Two namespaces, three messages each.
func checkNoPlaintextAtRest(t *testing.T, dbPath, recordFile string) {
	t.Helper()
	record, err := os.ReadFile(recordFile)
	if err != nil {
		t.Errorf("no record of the OMEMO scenarios (did they run?): %v", err)
		return
	}
	db, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatalf("reading the data file: %v", err)
	}
	var plain, ids, leaked int
	for _, line := range strings.Split(strings.TrimSpace(string(record)), "\n") {
		kind, value, ok := strings.Cut(line, " ")
		if !ok || value == "" {
			t.Errorf("bad line in %s: %q", recordFile, line)
			continue
		}
		switch kind {
		case "plain":
			plain++
			if bytes.Contains(db, []byte(value)) {
				leaked++
				t.Errorf("plaintext %q is in %s", value, dbPath)
			}
		case "id":
			ids++
			if !bytes.Contains(db, []byte(value)) {
				t.Errorf("message id %q is not in %s: the archive did not keep the message", value, dbPath)
			}
		default:
			t.Errorf("bad line in %s: %q", recordFile, line)
		}
	}
	if plain != 6 || ids != 6 {
		t.Errorf("want 6 plaintexts and 6 ids (two namespaces, three messages each), got %d and %d", plain, ids)
	}
	t.Logf("%s (%d bytes): checked %d message ids (must be present) and %d OMEMO plaintexts (must be absent); plaintexts found: %d", dbPath, len(db), ids, plain, leaked)
}

// requirePythonModules fails the test early, with the Debian packages to
// install, when python cannot import a module a scenario needs.
func requirePythonModules(t *testing.T, python string, modules ...string) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import "+strings.Join(modules, ", ")).CombinedOutput()
	if err != nil {
		t.Fatalf("%s cannot import %s (apt-get install python3-omemo python3-oldmemo python3-twomemo python3-xeddsa python3-xmlschema): %v\n%s",
			python, strings.Join(modules, ", "), err, out)
	}
}

// watchShutdown runs the suite's --watch-shutdown mode: a client logs in
// and prints READY; then the server gets SIGTERM and the client reports
// how its stream ended.
func watchShutdown(ctx context.Context, t *testing.T, srv *devinstance.Instance, python string, args []string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, python, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var lines []string // written by the reader until done is closed
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if sc.Text() == "READY" && len(lines) == 1 {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-done:
	case <-time.After(30 * time.Second):
	}
	stopErr := srv.Stop()
	<-done
	waitErr := cmd.Wait()
	out := strings.Join(lines, "\n") + "\n" + stderr.String()
	if waitErr != nil {
		t.Errorf("shutdown with a client connected (%v):\n%s", waitErr, out)
	} else {
		t.Logf("%s", strings.TrimSpace(out))
	}
	if stopErr != nil {
		t.Errorf("stopping hearth dev: %v\nserver log (last lines):\n%s", stopErr, srv.LogTail(60))
	}
}

// pythonWithSlixmpp returns the Debian python3 (or $HEARTH_INTEROP_PYTHON)
// after checking it can import slixmpp.
func pythonWithSlixmpp(t *testing.T) string {
	t.Helper()
	py := os.Getenv("HEARTH_INTEROP_PYTHON")
	if py == "" {
		// Debian's interpreter, where python3-slixmpp installs; a python3
		// earlier in PATH (pyenv, venv) usually cannot see it.
		py = "/usr/bin/python3"
	}
	out, err := exec.Command(py, "-c", "import slixmpp; print(slixmpp.__version__)").CombinedOutput()
	if err != nil {
		t.Fatalf("%s cannot import slixmpp (apt-get install python3-slixmpp, or set HEARTH_INTEROP_PYTHON): %v\n%s", py, err, out)
	}
	t.Logf("slixmpp %s (%s)", strings.TrimSpace(string(out)), py)
	return py
}

// writeAccounts writes the "localpart password" lines the Python suites
// read and returns the file's path.
func writeAccounts(t *testing.T, dir string, passwords map[string]string) string {
	t.Helper()
	var b strings.Builder
	for u, pw := range passwords {
		fmt.Fprintf(&b, "%s %s\n", u, pw)
	}
	path := filepath.Join(dir, "accounts.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// suiteArgs is the command line of a Python suite run against a hearth dev
// instance; extra comes last.
func suiteArgs(script, data string, c2s, direct int, accountsFile string, extra ...string) []string {
	args := []string{script,
		"--host", "127.0.0.1", "--domain", domain,
		"--c2s-port", strconv.Itoa(c2s), "--tls-port", strconv.Itoa(direct),
		"--cafile", filepath.Join(data, "cert.pem"),
		"--accounts", accountsFile,
	}
	if os.Getenv("HEARTH_INTEROP_DEBUG") != "" {
		args = append(args, "--debug")
	}
	return append(args, extra...)
}

// newInstance builds hearth and creates an instance with a first start
// (database, certificate, admin account), which must then stop cleanly on
// SIGTERM. start is startHearth or startHearthArgs.
func newInstance(t *testing.T, start func(t *testing.T, bin, data string, c2s, direct int, extra ...string) *devinstance.Instance) (bin, dir, data string, c2s, direct int) {
	t.Helper()
	bin, dir = devinstance.Build(t), t.TempDir()
	data = filepath.Join(dir, "data")
	c2s, direct = devinstance.FreePort(t), devinstance.FreePort(t)
	first := start(t, bin, data, c2s, direct)
	if err := first.Stop(); err != nil {
		t.Fatalf("first start of hearth dev: %v\n%s", err, first.LogTail(60))
	}
	return bin, dir, data, c2s, direct
}

// startHearth runs hearth dev with E2EE off (the main scenarios exchange
// plaintext 1:1 messages, which the default policy would bounce); extra
// flags come last and so override.
func startHearth(t *testing.T, bin, data string, c2s, direct int, extra ...string) *devinstance.Instance {
	t.Helper()
	return startHearthArgs(t, bin, data, c2s, direct, append([]string{"--e2ee", "off"}, extra...)...)
}

// startHearthArgs is startHearth with hearth dev's defaults (E2EE
// required) and extra flags; HEARTH_INTEROP_DEBUG turns on debug logs.
func startHearthArgs(t *testing.T, bin, data string, c2s, direct int, extra ...string) *devinstance.Instance {
	t.Helper()
	level := "info"
	if os.Getenv("HEARTH_INTEROP_DEBUG") != "" {
		level = "debug"
	}
	return devinstance.Start(t, bin, devinstance.Options{Data: data, C2S: c2s, TLS: direct, Args: extra, LogLevel: level})
}

// addUser creates localpart@domain with a random password; addUserRole
// also gives it a server role.
func addUser(t *testing.T, bin, data, localpart string) string {
	t.Helper()
	return devinstance.AddUser(t, nil, bin, data, localpart+"@"+domain, "")
}

func addUserRole(t *testing.T, bin, data, localpart, role string) string {
	t.Helper()
	return devinstance.AddUser(t, nil, bin, data, localpart+"@"+domain, role)
}
