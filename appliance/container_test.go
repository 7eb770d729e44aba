//go:build appliance

package appliance

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The container's root filesystem: Debian bookworm stands in for Ubuntu LTS
// (only Debian's archive is reachable here). What an Ubuntu server has
// (systemd, ssh, sudo, procps, ufw) plus the package's other dependency,
// nginx, because dpkg -i cannot fetch dependencies in the offline container.
const (
	suite  = "bookworm"
	mirror = "http://deb.debian.org/debian"
)

var rootPackages = []string{"systemd", "systemd-sysv", "dbus", "adduser", "procps", "iproute2",
	"openssh-server", "sudo", "ufw", "nginx"}

// rootTarball returns a cached mmdebstrap tarball of the root filesystem,
// building it on first use (about a minute). The cache lives in
// $HEARTH_APPLIANCE_CACHE or /var/cache/hearth-appliance, keyed by suite and
// package list.
func rootTarball(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HEARTH_APPLIANCE_CACHE")
	if dir == "" {
		dir = "/var/cache/hearth-appliance"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(suite + " " + mirror + " " + strings.Join(rootPackages, ",")))
	path := filepath.Join(dir, suite+"-"+hex.EncodeToString(sum[:6])+".tar")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	partial := path + ".partial"
	start := time.Now()
	out, err := exec.Command("mmdebstrap", "--variant=minbase", "--format=tar",
		"--include="+strings.Join(rootPackages, ","), suite, partial, mirror).CombinedOutput()
	if err != nil {
		os.Remove(partial)
		t.Fatalf("mmdebstrap: %v\n%s", err, tail(out, 40))
	}
	if err := os.Rename(partial, path); err != nil {
		t.Fatal(err)
	}
	t.Logf("built the %s root filesystem in %s: %s", suite, time.Since(start).Round(time.Second), path)
	return path
}

// container is a booted systemd-nspawn container.
type container struct {
	t      *testing.T
	root   string
	nspawn *exec.Cmd
	exited chan error
	pid1   int // the container's systemd, as the host sees it
}

// boot starts systemd in root with its own network namespace. PID 1 of this
// machine is not systemd, so the container is not registered with machined
// (--register=no, --keep-unit); it gets a pure cgroup v2 tree so systemd's
// sandboxing works inside, and the bpf syscall for device and IP policies.
func boot(t *testing.T, root, logFile string, extra ...string) *container {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("hearth-appliance\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--boot", "--register=no", "--keep-unit",
		"--private-network", "--system-call-filter=bpf",
		"--machine=hearth-appliance", "--directory=" + root}, extra...)
	cmd := exec.Command("systemd-nspawn", args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("systemd-nspawn: %v", err)
	}
	c := &container{t: t, root: root, nspawn: cmd, exited: make(chan error, 1)}
	go func() { c.exited <- cmd.Wait(); log.Close() }()
	t.Cleanup(c.stop)

	deadline := time.Now().Add(60 * time.Second)
	for c.pid1 == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the container's init did not appear; console:\n%s", readTail(logFile))
		}
		select {
		case err := <-c.exited:
			c.exited <- err
			t.Fatalf("systemd-nspawn exited: %v; console:\n%s", err, readTail(logFile))
		case <-time.After(100 * time.Millisecond):
		}
		c.pid1 = containerInit(cmd.Process.Pid)
	}
	for {
		out, _ := exec.Command("nsenter", "-t", strconv.Itoa(c.pid1), "-a", "systemctl", "is-system-running").Output()
		state := strings.TrimSpace(string(out))
		if state == "running" || state == "degraded" {
			if state == "degraded" {
				failed, _ := exec.Command("nsenter", "-t", strconv.Itoa(c.pid1), "-a", "systemctl", "--failed", "--no-pager").Output()
				t.Logf("container booted degraded:\n%s", failed)
			}
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container did not finish booting (state %q); console:\n%s", state, readTail(logFile))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// containerInit finds the child of systemd-nspawn that is PID 1 in its own
// PID namespace.
func containerInit(nspawn int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", nspawn))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(field)
			if err != nil {
				continue
			}
			status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			for _, line := range strings.Split(string(status), "\n") {
				if f := strings.Fields(line); len(f) == 3 && f[0] == "NSpid:" && f[2] == "1" {
					return pid
				}
			}
		}
	}
	return 0
}

// stop powers the container off (SIGRTMIN+4 to its systemd) and, if it
// does not go within 30 s, kills systemd-nspawn and the container's init.
func (c *container) stop() {
	if c.pid1 != 0 {
		_ = syscall.Kill(c.pid1, syscall.Signal(34+4))
	} else {
		_ = c.nspawn.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-c.exited:
		return
	case <-time.After(30 * time.Second):
	}
	c.t.Logf("container did not power off in 30s; killing systemd-nspawn (pid %d)", c.nspawn.Process.Pid)
	_ = c.nspawn.Process.Kill()
	if c.pid1 != 0 {
		_ = syscall.Kill(c.pid1, syscall.SIGKILL)
	}
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.t.Errorf("systemd-nspawn (pid %d) did not exit", c.nspawn.Process.Pid)
	}
}

// run runs a command as a transient service of the container's systemd, as
// an administrator's shell would, and returns its output (stdout and
// stderr) and exit error.
func (c *container) run(stdin string, args ...string) (string, error) {
	cmdline := append([]string{"-t", strconv.Itoa(c.pid1), "-a",
		"systemd-run", "--wait", "--pipe", "--quiet", "--collect",
		"--setenv=DEBIAN_FRONTEND=noninteractive", "--"}, args...)
	cmd := exec.Command("nsenter", cmdline...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// must is run that fails the test on error.
func (c *container) must(args ...string) string {
	c.t.Helper()
	out, err := c.run("", args...)
	if err != nil {
		c.t.Fatalf("in the container: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// show returns one property of a unit.
func (c *container) show(unit, prop string) string {
	c.t.Helper()
	return strings.TrimSpace(c.must("systemctl", "show", "--value", "-p", prop, unit))
}

// netns runs a host binary inside the container's network namespace only:
// a client on the host reaching the container's ports.
func (c *container) netns(args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/" + strconv.Itoa(c.pid1) + "/ns/net", "--"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *container) path(p string) string { return filepath.Join(c.root, p) }

func (c *container) exists(p string) bool {
	_, err := os.Lstat(c.path(p))
	return !errors.Is(err, os.ErrNotExist)
}

func tail(b []byte, lines int) string {
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	return tail(b, 30)
}

// attachLoop backs a loop device with an empty file, as the block volume a
// sysadmin adds to a VPS. It returns "" when this machine has no loop
// devices; the volume step is then covered by the installer's unit tests
// only. The device is detached when the test ends. Nothing is mounted on
// the host: formatting and mounting happen inside the container.
func attachLoop(t *testing.T, dir string) string {
	t.Helper()
	img := filepath.Join(dir, "volume.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(256 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Logf("no loop device here (%v: %s): the data volume step is not exercised in the container", err, strings.TrimSpace(string(out)))
		return ""
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Logf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}
