package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hearthBin builds this command once per test binary.
func hearthBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hearth")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestCommandLine(t *testing.T) {
	bin := hearthBin(t)
	for _, c := range []struct {
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{[]string{"--help"}, 0, "Commands:\n  dev ", ""},
		{[]string{"help"}, 0, "  admin ", ""},
		{nil, 2, "", "Usage:"},
		{[]string{"frobnicate"}, 2, "", "hearth: unknown command \"frobnicate\""},
		{[]string{"version"}, 0, "hearth ", ""},
		{[]string{"dev", "--help"}, 0, "--tls-port", ""},
		{[]string{"run", "-h"}, 0, "re-reads the configuration file and the", ""},
		{[]string{"admin", "--help"}, 0, "user import FILE", ""},
		{[]string{"dev", "--nope"}, 2, "", "flag provided but not defined: -nope"},
	} {
		cmd := exec.Command(bin, c.args...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		code := exitCode(cmd.Run())
		if code != c.code || !strings.Contains(out.String(), c.wantStdout) || !strings.Contains(errb.String(), c.wantStderr) {
			t.Errorf("hearth %q: exit %d (want %d)\nstdout: %s\nstderr: %s", c.args, code, c.code, out.String(), errb.String())
		}
	}
}

// The real process under a fake systemd: READY=1 once listening, STOPPING=1
// and exit status 0 on SIGTERM.
func TestRunUnderSystemdStopsOnSIGTERM(t *testing.T) {
	bin := hearthBin(t)
	dir, err := os.MkdirTemp("", "hmain")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	notifyPath := filepath.Join(dir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	cfg := filepath.Join(dir, "hearth.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("domain: example.org\ndata_dir: %s\nlisten:\n  addresses: [127.0.0.1]\n  c2s_port: 0\n  tls_port: 0\ntls:\n  self_signed: true\n", filepath.Join(dir, "data"))), 0o600)

	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()

	notes := make(chan string, 10)
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := notify.Read(buf)
			if err != nil {
				return
			}
			notes <- string(buf[:n])
		}
	}()
	expect := func(want string) {
		t.Helper()
		for {
			select {
			case m := <-notes:
				if strings.Contains(m, want) {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("systemd never got %q", want)
			}
		}
	}
	expect("READY=1")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("STOPPING=1")
	var all []string
	for l := range logs {
		all = append(all, l)
	}
	if code := exitCode(cmd.Wait()); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, strings.Join(all, "\n"))
	}
	if !strings.Contains(strings.Join(all, "\n"), "msg=stopped") {
		t.Errorf("no clean stop logged:\n%s", strings.Join(all, "\n"))
	}
}
