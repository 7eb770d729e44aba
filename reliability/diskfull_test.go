//go:build reliability

package reliability

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/merveilles/hearth/internal/devinstance"
	"github.com/merveilles/hearth/server/servertest"
)

// The data directory is a tmpfs of this size, mounted only inside a private
// mount namespace that the test creates (the host's mounts are untouched).
const (
	tmpfsSize = "8m"
	fillerMiB = 1     // freed later to let the server recover
	bodyBytes = 16000 // the offline queue (1000 messages) must not fill before the disk
	maxSend   = 4000  // the disk is full long before this
)

var (
	errIDRe  = regexp.MustCompile(`<message[^>]*type=["']error["'][^>]*id=["']m-(\d+)["']|<message[^>]*id=["']m-(\d+)["'][^>]*type=["']error["']`)
	mBodyRe  = regexp.MustCompile(`<body>m-(\d+)-x+</body>`)
	lastIDRe = regexp.MustCompile(`<last>([^<]+)</last>`)
)

// A real hearth runs with its data directory on a small tmpfs; a client
// using stream management sends to an offline and to an online (archived)
// recipient until the disk is full. Failed writes must come back as errors
// and never be acknowledged; the server must keep serving, recover once
// space returns, and after a restart hold every acknowledged message.
func TestDiskFull(t *testing.T) {
	for _, tool := range []string{"unshare", "nsenter", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs in a private mount namespace")
	}
	bin := devinstance.Build(t)
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	ns := mountNamespace(t, data)
	run := func(args ...string) string {
		t.Helper()
		out, err := ns.cmd(args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}

	c2s := devinstance.FreePort(t)
	stopDev(t, startDev(t, ns.cmd, bin, data, c2s))
	spw := devinstance.AddUser(t, ns.cmd, bin, data, "sender@localhost", "")
	opw := devinstance.AddUser(t, ns.cmd, bin, data, "online@localhost", "")
	fpw := devinstance.AddUser(t, ns.cmd, bin, data, "offline@localhost", "")
	filler := filepath.Join(data, "filler")
	run("dd", "if=/dev/zero", "of="+filler, "bs=1M", fmt.Sprintf("count=%d", fillerMiB))
	run("dd", "if=/dev/zero", "of="+filepath.Join(data, "filler-small"), "bs=64k", "count=4")
	srv := startDev(t, ns.cmd, bin, data, c2s)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c2s))

	// Archiving off for the sender and the offline recipient: a message to
	// the offline one is then stored by the offline queue alone, so its
	// failure is the only thing that may hold the ack back. The online
	// recipient archives (the asynchronous, group-committed write path).
	for _, u := range []struct{ user, pw string }{{"sender", spw}, {"offline", fpw}} {
		c := dial(t, addr, u.user, u.pw, "prefs", false)
		c.r.Write("<iq type='set' id='prefs1'><prefs xmlns='urn:xmpp:mam:2' default='never'/></iq>")
		if !c.waitFor("prefs1", 30*time.Second) || strings.Contains(c.text(), "type='error'") {
			t.Fatalf("mam prefs for %s: %s", u.user, c.tail())
		}
		c.r.Conn.Close()
	}
	// The online recipient does not use stream management: a raw client
	// that never answers <r/> would have its session closed by the server.
	online := dial(t, addr, "online", opw, "phone", false)
	online.r.Write("<presence/>")
	body := strings.Repeat("x", bodyBytes)
	wantOff, wantOn := map[int]bool{}, map[int]bool{}
	// fill sends to one recipient on a new stream-managed session until the
	// server has refused a few writes, and checks that no refused message
	// is acknowledged. Message numbers start at base.
	fill := func(phase, resource, to string, base int, want map[int]bool) {
		t.Helper()
		sender := dialSM(t, addr, "sender", spw, resource)
		defer sender.r.Conn.Close()
		sent := 0
		for ; sent < maxSend; sent++ {
			// Keep at most 20 unacknowledged; once writes fail, acks stop, so
			// wait a while for the errors instead.
			for wait := 0; sent-sender.acked() >= 20 && wait < 2000; wait++ {
				if len(sender.errors()) > 0 && sent-sender.acked() >= 40 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			if len(sender.errors()) >= 10 {
				break
			}
			n := base + sent
			sender.r.Write(fmt.Sprintf("<message to='%s' type='chat' id='m-%d'><body>m-%d-%s</body></message><r xmlns='urn:xmpp:sm:3'/>",
				to, n, n, body))
		}
		// The ping answer comes after every earlier stanza was handled; the
		// archive's bounces are asynchronous, so give them a moment more.
		sender.r.Write("<iq type='get' id='ping1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq><r xmlns='urn:xmpp:sm:3'/>")
		if !sender.waitFor("ping1", 30*time.Second) {
			t.Fatalf("%s: no ping answer while the disk is full; got %s", phase, sender.tail())
		}
		time.Sleep(2 * time.Second)
		errs, acked := sender.errors(), sender.acked()
		t.Logf("%s: sent %d messages of %d bytes, %d acknowledged, %d refused with a stanza error, %d neither (df: %s)",
			phase, sent, bodyBytes, acked, len(errs), sent-acked-len(errs), strings.Join(strings.Fields(run("df", "-k", data))[7:], " "))
		if len(errs) == 0 {
			t.Fatalf("%s: the disk never filled up: no stanza error after %d messages", phase, sent)
		}
		if acked == 0 {
			t.Fatalf("%s: nothing acknowledged at all", phase)
		}
		for _, i := range errs {
			if i < base+acked {
				t.Errorf("%s: message m-%d was refused with an error but acknowledged (h=%d)", phase, i, acked)
			}
		}
		for i := base; i < base+acked; i++ {
			want[i] = true
		}
	}
	// Offline storage: a synchronous write in the routing path.
	fill("offline recipient", "load1", "offline@localhost", 0, wantOff)
	// Free a little space so that the archive has some to fill again.
	run("rm", filepath.Join(data, "filler-small"))
	// Archive: an asynchronous, group-committed write holding the ack.
	fill("online recipient (archive)", "load2", "online@localhost", 100000, wantOn)

	// The server still serves: a fresh login works while the disk is full.
	probe := dialSM(t, addr, "offline", fpw, "probe")
	probe.r.Write("<iq type='get' id='ping2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	if !probe.waitFor("ping2", 30*time.Second) {
		t.Fatalf("no ping answer on a new session while the disk is full")
	}
	probe.r.Conn.Close()

	// Space returns: new messages are stored, acknowledged and delivered.
	run("rm", filler)
	again := dialSM(t, addr, "sender", spw, "again")
	const more = 20
	const base = 200000
	target := func(i int) string {
		if i%2 == 0 {
			return "offline@localhost"
		}
		return "online@localhost"
	}
	for i := 0; i < more; i++ {
		n := base + i
		again.r.Write(fmt.Sprintf("<message to='%s' type='chat' id='m-%d'><body>m-%d-%s</body></message><r xmlns='urn:xmpp:sm:3'/>",
			target(n), n, n, "xx"))
	}
	deadline := time.Now().Add(60 * time.Second)
	for again.acked() < more && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := again.acked(); got != more || len(again.errors()) > 0 {
		t.Fatalf("after freeing space: %d of %d acknowledged, errors for %v", got, more, again.errors())
	}
	liveOK := 0
	for i := 0; i < more; i++ {
		n := base + i
		if target(n) == "online@localhost" && online.waitFor(fmt.Sprintf("<body>m-%d-", n), 30*time.Second) {
			liveOK++
		}
	}
	if liveOK != more/2 {
		t.Fatalf("after freeing space only %d of %d messages reached the online recipient", liveOK, more/2)
	}
	t.Logf("after freeing space: %d of %d new messages acknowledged, %d of %d delivered live", more, more, liveOK, more/2)
	online.r.Conn.Close()
	again.r.Conn.Close()

	// Restart on the same data: it opens, and every acknowledged message is kept.
	stopDev(t, srv)
	startDev(t, ns.cmd, bin, data, c2s)
	for i := base; i < base+more; i++ {
		if target(i) == "offline@localhost" {
			wantOff[i] = true
		} else {
			wantOn[i] = true
		}
	}
	off := dialSM(t, addr, "offline", fpw, "check")
	off.r.Write("<presence/>")
	gotOff := off.bodiesWhenQuiet()
	lostOff := 0
	for i := range wantOff {
		if gotOff[i] == 0 {
			lostOff++
		}
	}
	on := dial(t, addr, "online", opw, "check", false)
	gotOn := on.archive(t)
	lostOn := 0
	for i := range wantOn {
		if gotOn[i] == 0 {
			lostOn++
		}
	}
	t.Logf("after restart: offline queue delivered %d messages (%d acknowledged ones expected, %d lost); online recipient's archive holds %d (%d acknowledged expected, %d lost)",
		len(gotOff), len(wantOff), lostOff, len(gotOn), len(wantOn), lostOn)
	if lostOff+lostOn > 0 {
		t.Fatalf("%d acknowledged messages lost", lostOff+lostOn)
	}
}

// namespace is a process holding a private mount namespace with a tmpfs.
type namespace struct{ pid int }

func mountNamespace(t *testing.T, dir string) *namespace {
	t.Helper()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o size=`+tmpfsSize+`,mode=0700 tmpfs "$0" && echo mounted && exec sleep 3600`, dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "mounted" {
		t.Fatalf("mount tmpfs in a private namespace: %q", line)
	}
	return &namespace{pid: cmd.Process.Pid}
}

// cmd runs a program inside the namespace (nsenter execs it: its PID is
// the program's own).
func (n *namespace) cmd(args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(n.pid), "-m", "--"}, args...)...)
}

// smClient is a raw client with stream management on and a reader that
// keeps everything the server sent.
type smClient struct {
	r   *servertest.Raw
	mu  sync.Mutex
	buf strings.Builder
	h   int
}

func dialSM(t *testing.T, addr, user, pw, resource string) *smClient {
	t.Helper()
	return dial(t, addr, user, pw, resource, true)
}

func dial(t *testing.T, addr, user, pw, resource string, sm bool) *smClient {
	t.Helper()
	r := servertest.DialRaw(t, addr)
	r.Login(user, pw, resource, "")
	if sm {
		r.Write("<enable xmlns='urn:xmpp:sm:3'/>")
		if out := r.ReadUntil("/>"); !strings.Contains(out, "enabled") {
			t.Fatalf("enable: %s", out)
		}
	}
	c := &smClient{r: r}
	go func() {
		b := make([]byte, 1<<16)
		for {
			_ = r.Conn.SetReadDeadline(time.Now().Add(10 * time.Minute))
			n, err := r.Conn.Read(b)
			c.mu.Lock()
			c.buf.Write(b[:n])
			for _, m := range ackRe.FindAllStringSubmatch(c.buf.String()[max(0, c.buf.Len()-n-64):], -1) {
				if h, _ := strconv.Atoi(m[1]); h > c.h {
					c.h = h
				}
			}
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return c
}

func (c *smClient) acked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.h
}

func (c *smClient) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func (c *smClient) tail() string {
	s := c.text()
	return s[max(0, len(s)-2000):]
}

// errors lists the message numbers the server bounced with an error.
func (c *smClient) errors() []int {
	var out []int
	seen := map[int]bool{}
	for _, m := range errIDRe.FindAllStringSubmatch(c.text(), -1) {
		s := m[1] + m[2]
		i, _ := strconv.Atoi(s)
		if !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out
}

func (c *smClient) waitFor(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(c.text(), s) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// bodiesWhenQuiet counts the test messages received once the stream stays
// quiet for a few seconds.
func (c *smClient) bodiesWhenQuiet() map[int]int {
	prev := -1
	for {
		time.Sleep(3 * time.Second)
		s := c.text()
		if len(s) == prev {
			got := map[int]int{}
			for _, m := range mBodyRe.FindAllStringSubmatch(s, -1) {
				i, _ := strconv.Atoi(m[1])
				got[i]++
			}
			return got
		}
		prev = len(s)
	}
}

// archive pages through the whole MAM archive and counts the test messages.
func (c *smClient) archive(t *testing.T) map[int]int {
	t.Helper()
	after := ""
	for page := 0; ; page++ {
		set := "<set xmlns='http://jabber.org/protocol/rsm'><max>250</max>" + after + "</set>"
		id := fmt.Sprintf("mam%d", page)
		mark := len(c.text())
		c.r.Write(fmt.Sprintf("<iq type='set' id='%s'><query xmlns='urn:xmpp:mam:2' queryid='%s'>%s</query></iq>", id, id, set))
		var out string
		deadline := time.Now().Add(60 * time.Second)
		for {
			out = c.text()[mark:]
			if i := strings.Index(out, "</fin>"); i >= 0 || strings.Contains(out, "complete='true'/>") || strings.Contains(out, `complete="true"/>`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("MAM page %d: no answer; got %s", page, out[max(0, len(out)-2000):])
			}
			time.Sleep(10 * time.Millisecond)
		}
		if strings.Contains(out, `complete='true'`) || strings.Contains(out, `complete="true"`) {
			break
		}
		m := lastIDRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("MAM page %d without <last>: %s", page, out[max(0, len(out)-2000):])
		}
		after = "<after>" + m[1] + "</after>"
	}
	got := map[int]int{}
	for _, m := range mBodyRe.FindAllStringSubmatch(c.text(), -1) {
		i, _ := strconv.Atoi(m[1])
		got[i]++
	}
	return got
}
