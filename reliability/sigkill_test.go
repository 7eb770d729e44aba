//go:build reliability

package reliability

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/merveilles/hearth/internal/devinstance"
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
	bin := devinstance.Build(t)
	data := filepath.Join(t.TempDir(), "data")
	c2s := devinstance.FreePort(t)
	stopDev(t, startDev(t, nil, bin, data, c2s)) // creates the instance
	spw := devinstance.AddUser(t, nil, bin, data, "sender@localhost", "")
	rpw := devinstance.AddUser(t, nil, bin, data, "rcpt@localhost", "")
	srv := startDev(t, nil, bin, data, c2s)
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
		srv.Kill() // SIGKILL, by PID
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
	<-srv.Exited()
	r.Conn.Close()
	<-readerDone
	a := int(acked.Load())
	t.Logf("sent %d messages, %d acknowledged before SIGKILL", sent, a)

	startDev(t, nil, bin, data, c2s)
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

// startDev runs hearth dev (E2EE off: the tests send plaintext) through
// run, on this host or inside a test's namespace.
func startDev(t *testing.T, run devinstance.Runner, bin, data string, c2s int) *devinstance.Instance {
	t.Helper()
	return devinstance.Start(t, bin, devinstance.Options{Data: data, C2S: c2s, Run: run, LogLevel: "warn", Args: []string{"--e2ee", "off"}})
}

// stopDev stops hearth dev with SIGTERM and wants a clean exit.
func stopDev(t *testing.T, in *devinstance.Instance) {
	t.Helper()
	if err := in.Stop(); err != nil {
		t.Fatalf("stop hearth dev: %v\n%s", err, in.LogTail(40))
	}
}
