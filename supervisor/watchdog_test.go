package supervisor

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The watchdog is fed once per passing probe and never while it fails.
func TestWatchdogFedOnlyWhileProbePasses(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdw")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "30000000")

	script := []bool{true, true, false, false, false, true}
	var mu sync.Mutex
	calls := 0
	enough := make(chan struct{})
	probe := func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == len(script)+2 {
			close(enough)
		}
		if calls <= len(script) && script[calls-1] {
			return nil
		}
		return errors.New("scripted failure")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- watchdog{notify: Notifier{}, probe: probe, log: testLogger(), every: time.Millisecond}.run(ctx)
	}()
	select {
	case <-enough:
	case <-time.After(30 * time.Second):
		t.Fatal("the probe was not called repeatedly")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Every datagram sent is in the socket's buffer now.
	fed := 0
	buf := make([]byte, 256)
	for {
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			break
		}
		if string(buf[:n]) == "WATCHDOG=1" {
			fed++
		}
	}
	if fed != 3 {
		t.Errorf("watchdog fed %d times for 3 passing probes", fed)
	}
}

// Without WATCHDOG_USEC the watchdog service only waits.
func TestWatchdogOffWithoutSystemd(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	called := false
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (watchdog{probe: func(context.Context) error { called = true; return nil }, log: testLogger()}).run(ctx); err != nil || called {
		t.Errorf("run = %v, probe called %v", err, called)
	}
}

// Under systemd with a watchdog, a real instance feeds it through the
// loopback XMPP probe and reports health in STATUS; the probe fails once
// the service is gone.
func TestInstanceWatchdogAndStatus(t *testing.T) {
	notes := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "400000")
	cfg := testConfig(t)
	inst, err := Start(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	inst.StatusEvery = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inst.Run(ctx) }()
	expectNotify(t, notes, "READY=1")
	expectNotify(t, notes, "WATCHDOG=1")
	var status string
	deadline := time.After(10 * time.Second)
	for status == "" {
		select {
		case m := <-notes:
			if strings.HasPrefix(m, "STATUS=sessions 0, up ") && strings.Contains(m, "disk free ") && strings.Contains(m, "mem available ") {
				status = m
			}
		case <-deadline:
			t.Fatal("no health STATUS line")
		}
	}
	st, dt := inst.Addrs()
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if err := probeXMPP(pctx, cfg.Domain, st, dt); err != nil {
		t.Fatalf("probe against the running server: %v", err)
	}
	if err := probeXMPP(pctx, cfg.Domain, st, nil); err != nil {
		t.Fatalf("probe on the STARTTLS port: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := probeXMPP(pctx, cfg.Domain, st, dt); err == nil {
		t.Fatal("probe passes with the server stopped")
	}
}
