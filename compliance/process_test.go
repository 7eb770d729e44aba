//go:build compliance

package compliance

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemon is a "hearth dev" child process of the test.
type daemon struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error
}

// build compiles cmd/hearth from this checkout, so the test never runs a
// stale binary.
func build(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "hearth")
	if out, err := exec.Command(goBin, "build", "-o", bin, "../cmd/hearth").CombinedOutput(); err != nil {
		t.Fatalf("build cmd/hearth: %v\n%s", err, out)
	}
	return bin
}

// port returns a loopback port that was free a moment ago.
func port(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs hearth dev with E2EE off (the checks exchange plaintext
// messages) and waits until both XMPP ports accept connections.
func start(t *testing.T, bin, data string, c2s, direct int) *daemon {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "hearth.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "dev", "--data", data, "--bind", "127.0.0.1",
		"--c2s-port", strconv.Itoa(c2s), "--tls-port", strconv.Itoa(direct),
		"--http-port", strconv.Itoa(port(t)), "--e2ee", "off")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start hearth dev: %v", err)
	}
	d := &daemon{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		f.Close()
		close(d.exited)
	}()
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("stop hearth dev: %v\n%s", err, d.tail())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range []int{c2s, direct} {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-d.exited:
				t.Fatalf("hearth dev exited (%v):\n%s", d.err, d.tail())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("hearth dev not listening on %s after 30s:\n%s", addr, d.tail())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return d
}

// stop sends SIGTERM to this child's PID and waits; after 15 s it kills it.
func (d *daemon) stop() error {
	select {
	case <-d.exited:
		return d.err
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM to PID %d: %w", d.cmd.Process.Pid, err)
	}
	select {
	case <-d.exited:
		return d.err
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("PID %d ignored SIGTERM for 15s; killed", d.cmd.Process.Pid)
	}
}

func (d *daemon) tail() string {
	b, err := os.ReadFile(d.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	return strings.Join(lines, "\n")
}

// addUser creates localpart@localhost through "hearth admin" (the running
// daemon's admin socket) and returns its random password.
func addUser(t *testing.T, bin, data, localpart string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	pw := hex.EncodeToString(b)
	cmd := exec.Command(bin, "admin", "--data", data, "user", "add", localpart+"@localhost", "--password-stdin")
	cmd.Stdin = strings.NewReader(pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hearth admin user add %s: %v\n%s", localpart, err, out)
	}
	return pw
}
