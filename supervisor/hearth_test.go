package supervisor

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/tlscert"
)

func testConfig(t *testing.T) *config.Config {
	cfg := config.Default("localhost")
	cfg.DataDir = t.TempDir()
	cfg.TLS.SelfSigned = true
	cfg.Listen.Addresses = []string{"127.0.0.1"}
	cfg.Listen.C2SPort, cfg.Listen.TLSPort = 0, 0
	cfg.Auth.ScramIterations = 4096
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("HEARTH_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// notifySocket stands in for systemd: it collects what sd_notify sends.
func notifySocket(t *testing.T) <-chan string {
	// Unix socket paths are short (108 bytes); TempDir can be long.
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	out := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			out <- string(buf[:n])
		}
	}()
	return out
}

func expectNotify(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	var seen []string
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-ch:
			if strings.Contains(m, want) {
				return
			}
			seen = append(seen, m)
		case <-timeout:
			t.Fatalf("no %q sent to systemd; got %q", want, seen)
		}
	}
}

func serial(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"xmpp-client"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// The whole life of a supervised instance: systemd hears READY, the
// session count and STOPPING; SIGHUP swaps the certificate without a
// restart; cancelling ends sessions and removes the admin socket.
func TestInstanceLifecycleWithSystemd(t *testing.T) {
	notes := notifySocket(t)
	cfg := testConfig(t)
	inst, err := Start(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	inst.StatusEvery = 20 * time.Millisecond
	st, dt := inst.Addrs()
	ts := &servertest.Server{Addr: st[0].String(), DirectAddr: dt[0].String()}
	ts.Server = inst.Server()
	ts.AddUser(t, "alice", "pw-alice")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inst.Run(ctx) }()
	expectNotify(t, notes, "READY=1")

	sess, err := ts.DialErr("alice", "pw-alice", "r1", false, sasl.ScramSha256)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- sess.Serve(nil) }()
	expectNotify(t, notes, "STATUS=sessions 1")

	// A new certificate on disk is served after SIGHUP.
	before := serial(t, ts.DirectAddr)
	if err := os.Remove(filepath.Join(cfg.DataDir, "cert.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := tlscert.SelfSigned(cfg.DataDir, []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	if got := serial(t, ts.DirectAddr); got != before {
		t.Fatal("the certificate changed before SIGHUP")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expectNotify(t, notes, "RELOADING=1")
	expectNotify(t, notes, "READY=1")
	if got := serial(t, ts.DirectAddr); got == before {
		t.Fatal("SIGHUP did not reload the certificate")
	}

	cancel()
	expectNotify(t, notes, "STOPPING=1")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "system-shutdown") {
			t.Errorf("client stream ended with %v, want the system-shutdown stream error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client's stream was not closed at shutdown")
	}
	if _, err := os.Stat(cfg.AdminSocket()); !os.IsNotExist(err) {
		t.Errorf("admin socket still there after stop: %v", err)
	}
	if _, err := net.Dial("tcp", ts.Addr); err == nil {
		t.Error("client port still accepting after stop")
	}
}

// Start failures are reported at once, not retried: here the port is taken.
func TestStartFailsOnBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t)
	cfg.Listen.C2SPort = ln.Addr().(*net.TCPAddr).Port
	if _, err := Start(cfg, testLogger()); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start on a busy port: %v", err)
	}
	// Nothing was left holding the database.
	cfg.Listen.C2SPort = 0
	inst, err := Start(cfg, testLogger())
	if err != nil {
		t.Fatalf("second Start: %v", err)
	}
	st, dt := inst.Addrs()
	if err := inst.Close(); err != nil {
		t.Fatal(err)
	}
	// Close after a Start without Run frees the ports, the socket and the
	// database.
	for _, a := range append(st, dt...) {
		if c, err := net.Dial("tcp", a.String()); err == nil {
			c.Close()
			t.Errorf("%s still accepts after Close", a)
		}
	}
	if _, err := os.Stat(cfg.AdminSocket()); !os.IsNotExist(err) {
		t.Errorf("admin socket left after Close: %v", err)
	}
	again, err := Start(cfg, testLogger())
	if err != nil {
		t.Fatalf("Start after Close: %v", err)
	}
	again.Close()
}
