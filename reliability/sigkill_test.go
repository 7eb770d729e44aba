//go:build reliability

package reliability

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/servertest"
)

const (
	total  = 900 // below the default offline queue limit (1000)
	killAt = 300 // acked messages before the kill
	ahead  = 100 // unacked messages the sender allows itself
)

var (
	ackRe  = regexp.MustCompile(`<a xmlns=["']urn:xmpp:sm:3["'] h=["'](\d+)["']`)
	bodyRe = regexp.MustCompile(`<body>m-(\d+)</body>`)
)

// A real hearth is killed with SIGKILL while a client using stream
// management sends to it (an offline recipient: every message is stored);
// after a restart, every message the server acknowledged must be delivered.
func TestAckedMessagesSurviveSIGKILL(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hearth")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/hearth").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(t.TempDir(), "data")
	c2s := freePort(t)
	start(t, bin, data, c2s).terminate(t) // creates the instance
	spw, rpw := addUser(t, bin, data, "sender"), addUser(t, bin, data, "rcpt")
	srv := start(t, bin, data, c2s)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c2s))

	r := servertest.DialRaw(t, addr)
	r.Login("sender", spw, "load", "")
	r.Write("<enable xmlns='urn:xmpp:sm:3'/>")
	if out := r.ReadUntil("/>"); !strings.Contains(out, "enabled") {
		t.Fatalf("enable: %s", out)
	}
	var acked atomic.Uint32
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			out, err := r.ReadUntilErr("/>", time.Minute)
			for _, m := range ackRe.FindAllStringSubmatch(out, -1) {
				h, _ := strconv.ParseUint(m[1], 10, 32)
				if uint32(h) > acked.Load() {
					acked.Store(uint32(h))
				}
			}
			if err != nil {
				return
			}
		}
	}()
	killed := make(chan struct{})
	go func() {
		for acked.Load() < killAt {
			time.Sleep(time.Millisecond)
		}
		_ = srv.cmd.Process.Kill() // SIGKILL, by PID
		close(killed)
	}()
	sent := 0
	for ; sent < total; sent++ {
		for uint32(sent)-acked.Load() >= ahead {
			select {
			case <-killed:
				goto dead
			case <-time.After(time.Millisecond):
			}
		}
		if err := r.Write(fmt.Sprintf("<message to='rcpt@localhost' type='chat' id='m-%d'><body>m-%d</body></message>", sent, sent)); err != nil {
			break
		}
		if sent%10 == 9 {
			if err := r.Write("<r xmlns='urn:xmpp:sm:3'/>"); err != nil {
				break
			}
		}
	}
dead:
	<-killed
	<-srv.exited
	r.Conn.Close()
	<-readerDone
	a := int(acked.Load())
	t.Logf("sent %d messages, %d acknowledged before SIGKILL", sent, a)

	start(t, bin, data, c2s)
	rc := servertest.DialRaw(t, addr)
	rc.Login("rcpt", rpw, "check", "")
	rc.Write("<presence/>")
	// The server's output accumulates in rc until it stays quiet.
	var got map[int]int
	for prev := -1; ; {
		out, _ := rc.ReadUntilErr("\x00never", 3*time.Second)
		got = map[int]int{}
		for _, m := range bodyRe.FindAllStringSubmatch(out, -1) {
			i, _ := strconv.Atoi(m[1])
			got[i]++
		}
		if len(out) == prev {
			break
		}
		prev = len(out)
	}
	lost, dup := 0, 0
	for i := 0; i < a; i++ {
		if got[i] == 0 {
			lost++
		}
	}
	for _, c := range got {
		if c > 1 {
			dup++
		}
	}
	t.Logf("after restart: %d of %d acknowledged messages delivered from storage, %d lost; %d unacknowledged ones stored too; %d duplicates",
		a-lost, a, lost, len(got)-(a-lost), dup)
	if lost > 0 {
		t.Fatalf("%d acknowledged messages lost", lost)
	}
	if a < killAt {
		t.Fatalf("only %d acks before the kill", a)
	}
}

type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// runner makes the command that runs a program: on this host, or inside
// a namespace.
type runner func(args ...string) *exec.Cmd

// onHost runs programs in the test's own namespaces.
func onHost(args ...string) *exec.Cmd { return exec.Command(args[0], args[1:]...) }

func start(t *testing.T, bin, data string, c2s int) *proc {
	t.Helper()
	return startWith(t, onHost, bin, data, c2s)
}

// startWith starts hearth dev through run and waits until it listens.
func startWith(t *testing.T, run runner, bin, data string, c2s int) *proc {
	t.Helper()
	cmd := run(bin, "dev", "--data", data, "--bind", "127.0.0.1", "--e2ee", "off",
		"--c2s-port", strconv.Itoa(c2s), "--tls-port", strconv.Itoa(freePort(t)),
		"--http-port", strconv.Itoa(freePort(t)), "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c2s)), time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.exited:
			t.Fatal("hearth dev exited at start")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("hearth dev does not listen")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) terminate(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("hearth dev did not stop on SIGTERM")
	}
}

func addUser(t *testing.T, bin, data, user string) string {
	t.Helper()
	return addUserWith(t, onHost, bin, data, user)
}

// addUserWith creates user@localhost with a random password through run.
func addUserWith(t *testing.T, run runner, bin, data, user string) string {
	t.Helper()
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	pw := hex.EncodeToString(b)
	cmd := run(bin, "admin", "--data", data, "user", "add", user+"@localhost", "--password-stdin")
	cmd.Stdin = strings.NewReader(pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("add %s: %v\n%s", user, err, out)
	}
	return pw
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
