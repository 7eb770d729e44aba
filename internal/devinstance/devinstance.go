// Package devinstance runs the hearth binary built from this checkout as a
// "hearth dev" child process, for the suites that test the real program
// from outside (interop, compliance, reliability): build it, pick free
// loopback ports, start it and wait until it listens, add accounts, and
// stop it by its PID.
package devinstance

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Build compiles cmd/hearth from this checkout into a temporary directory,
// so a suite never runs a stale binary.
func Build(t testing.TB) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("build cmd/hearth: no go tool in PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "hearth")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/merveilles/hearth/cmd/hearth").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/hearth: %v\n%s", err, out)
	}
	return bin
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Runner makes the command that runs a program: on this host, or inside
// a namespace the test made.
type Runner func(args ...string) *exec.Cmd

// OnHost runs programs in the test's own namespaces.
func OnHost(args ...string) *exec.Cmd { return exec.Command(args[0], args[1:]...) }

// Options say how to start hearth dev.
type Options struct {
	Data     string   // --data
	C2S, TLS int      // ports; 0 picks free ones
	Args     []string // more flags, after the defaults (a later flag wins)
	LogLevel string   // "" is info
	Run      Runner   // nil is OnHost
}

// Instance is a running hearth dev.
type Instance struct {
	C2S, TLS int
	cmd      *exec.Cmd
	logPath  string
	exited   chan struct{}
	waitErr  error
}

// Start runs hearth dev on 127.0.0.1 and waits until both XMPP ports
// accept connections. At the end of the test it is stopped, by its PID,
// if it still runs.
func Start(t testing.TB, bin string, o Options) *Instance {
	t.Helper()
	if o.C2S == 0 {
		o.C2S = FreePort(t)
	}
	if o.TLS == 0 {
		o.TLS = FreePort(t)
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.Run == nil {
		o.Run = OnHost
	}
	logPath := filepath.Join(t.TempDir(), "hearth.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{bin, "dev", "--data", o.Data, "--bind", "127.0.0.1",
		"--c2s-port", strconv.Itoa(o.C2S), "--tls-port", strconv.Itoa(o.TLS),
		"--http-port", strconv.Itoa(FreePort(t)), "--log-level", o.LogLevel}
	cmd := o.Run(append(args, o.Args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start hearth dev: %v", err)
	}
	in := &Instance{C2S: o.C2S, TLS: o.TLS, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		in.waitErr = cmd.Wait()
		logf.Close()
		close(in.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-in.exited:
			return // stopped or killed by the test itself
		default:
		}
		if err := in.Stop(); err != nil {
			t.Errorf("stop hearth dev: %v\n%s", err, in.LogTail(60))
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for _, port := range []int{o.C2S, o.TLS} {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-in.exited:
				t.Fatalf("hearth dev exited before listening (%v):\n%s", in.waitErr, in.LogTail(60))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("hearth dev does not listen on %s after 30s:\n%s", addr, in.LogTail(60))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("hearth dev running as PID %d on 127.0.0.1:%d (STARTTLS) and :%d (direct TLS)", cmd.Process.Pid, o.C2S, o.TLS)
	return in
}

// PID is the process's ID.
func (in *Instance) PID() int { return in.cmd.Process.Pid }

// Exited is closed once the process has ended.
func (in *Instance) Exited() <-chan struct{} { return in.exited }

// Stop sends SIGTERM and waits for a clean exit (status 0); after 15 s it
// kills the process and says so.
func (in *Instance) Stop() error {
	select {
	case <-in.exited:
		return in.waitErr
	default:
	}
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM to PID %d: %w", in.PID(), err)
	}
	select {
	case <-in.exited:
		if in.waitErr != nil {
			return fmt.Errorf("hearth dev exited with %v after SIGTERM", in.waitErr)
		}
		return nil
	case <-time.After(15 * time.Second):
		_ = in.cmd.Process.Kill()
		<-in.exited
		return fmt.Errorf("hearth dev (PID %d) did not exit within 15s of SIGTERM; killed", in.PID())
	}
}

// Kill sends SIGKILL, as a crash would, and waits for the process to end.
func (in *Instance) Kill() {
	_ = in.cmd.Process.Kill()
	<-in.exited
}

// LogTail returns the last n lines the process logged.
func (in *Instance) LogTail(n int) string {
	f, err := os.Open(in.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// AddUser creates an account with a random password through "hearth
// admin" (the daemon's socket when it runs, the store otherwise) and
// returns the password. role "" keeps the default.
func AddUser(t testing.TB, run Runner, bin, data, jid, role string) string {
	t.Helper()
	if run == nil {
		run = OnHost
	}
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	pw := "pw-" + hex.EncodeToString(b)
	args := []string{bin, "admin", "--data", data, "user", "add", jid, "--password-stdin"}
	if role != "" {
		args = append(args, "--role", role)
	}
	cmd := run(args...)
	cmd.Stdin = strings.NewReader(pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hearth admin user add %s %s: %v\n%s", jid, role, err, out)
	}
	return pw
}
