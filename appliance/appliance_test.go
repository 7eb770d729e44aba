//go:build appliance

package appliance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/templates"
)

// answers for "hearth setup --answers": no separate data volume (the
// storage step is covered by the installer's own tests), no federation.
const answers = `domain: chat.example.org
acme_email: admin@example.org
sysadmins: [ada]
chat_admins: [bob]
`

const (
	domain   = "chat.example.org"
	account  = "alice@" + domain
	password = "appliance-test-password"
)

// TestAppliance installs the freshly built .deb on a booted Debian system
// and walks the sysadmin's path: install, configure, start, a member logs
// in, upgrade while running and while stopped, purge, reinstall onto the
// data purge left behind.
func TestAppliance(t *testing.T) {
	began := time.Now()
	if os.Geteuid() != 0 {
		t.Fatal("the appliance test boots a container: run it as root (make test-appliance)")
	}
	for _, tool := range []string{"mmdebstrap", "systemd-nspawn", "nsenter", "make", "lintian"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install mmdebstrap systemd-container lintian", tool)
		}
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()

	// Three builds: the first install, an upgrade while running, an
	// upgrade while stopped. Each stamps its version into the binary.
	versions := []string{"0.0.1~appliance1", "0.0.1~appliance2", "0.0.1~appliance3"}
	debs := make([]string, len(versions))
	for i, v := range versions {
		debs[i] = buildDeb(t, repo, v, tmp)
	}
	if out, err := exec.Command("lintian", "--fail-on", "error,warning", debs[0]).CombinedOutput(); err != nil {
		t.Errorf("lintian: %v\n%s", err, out)
	}
	login := filepath.Join(tmp, "xmpplogin")
	if out, err := exec.Command("go", "build", "-o", login, "./xmpplogin").CombinedOutput(); err != nil {
		t.Fatalf("build xmpplogin: %v\n%s", err, out)
	}
	debSize := fileSize(t, debs[0])

	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", root, "-xf", rootTarball(t)).CombinedOutput(); err != nil {
		t.Fatalf("unpack the root filesystem: %v\n%s", err, out)
	}
	for i, d := range debs {
		copyFile(t, d, filepath.Join(root, "root", fmt.Sprintf("hearth-%d.deb", i+1)))
	}
	loop := attachLoop(t, tmp)
	var bootExtra []string
	if loop != "" {
		bootExtra = append(bootExtra, "--bind="+loop)
	}
	bootStart := time.Now()
	c := boot(t, root, filepath.Join(tmp, "console.log"), bootExtra...)
	t.Logf("container booted in %s", time.Since(bootStart).Round(time.Millisecond))

	// Install: the user and directories exist, nothing prompts or starts.
	out := c.must("dpkg", "-i", "/root/hearth-1.deb")
	if !strings.Contains(out, "sudo hearth setup") {
		t.Errorf("postinst does not tell the sysadmin to run sudo hearth setup:\n%s", out)
	}
	if got := c.must("getent", "passwd", "hearth"); !strings.HasSuffix(strings.TrimSpace(got), ":/var/lib/hearth:/usr/sbin/nologin") {
		t.Errorf("hearth user: %q", got)
	}
	for path, want := range map[string]string{"/etc/hearth": "root:hearth 750", "/var/lib/hearth": "hearth:hearth 751"} {
		if got := strings.TrimSpace(c.must("stat", "-c", "%U:%G %a", path)); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	if got := c.show("hearth.service", "ActiveState"); got != "inactive" {
		t.Errorf("hearth.service is %s right after install, want inactive (setup starts it)", got)
	}
	c.must("systemd-analyze", "verify", "--man=no", "/lib/systemd/system/hearth.service")
	score := securityScore(t, c)

	// Configure the host the sysadmin's way, unattended. ada is the
	// sysadmin, bob a chat admin.
	c.must("useradd", "--create-home", "--shell", "/bin/bash", "ada")
	c.must("useradd", "--create-home", "--shell", "/bin/bash", "bob")
	if err := os.WriteFile(c.path("root/setup.yaml"), []byte(answers), 0o600); err != nil {
		t.Fatal(err)
	}
	setupStart := time.Now()
	out = c.must("hearth", "setup", "--answers", "/root/setup.yaml", "--yes")
	setupTime := time.Since(setupStart)
	t.Logf("hearth setup:\n%s", out)
	assertReady(t, c)
	coldStart := readyAfter(t, c)
	if out, err := c.run("", "hearth", "plan", "--answers", "/root/setup.yaml"); err != nil {
		t.Errorf("hearth plan after setup: %v (exit 3 means it would change something)\n%s", err, out)
	}
	if got := c.must("ufw", "status"); !strings.Contains(got, "Status: active") || !strings.Contains(got, "5222") || !strings.Contains(got, "5223") {
		t.Errorf("ufw status after setup:\n%s", got)
	}
	c.must("nginx", "-t")
	if got := c.must("id", "-nG", "ada"); !strings.Contains(got, "sudo") || !strings.Contains(got, "hearth-sysadmin") {
		t.Errorf("sysadmin ada's groups: %s", got)
	}
	if got := c.must("id", "-nG", "bob"); !strings.Contains(got, "hearth-admin") || strings.Contains(got, "sudo") {
		t.Errorf("chat admin bob's groups: %s", got)
	}
	if got := c.must("/usr/sbin/sshd", "-T"); !strings.Contains(got, "allowgroups hearth-sysadmin") {
		t.Errorf("sshd does not restrict logins to hearth-sysadmin")
	}
	time.Sleep(5 * time.Second) // let the startup garbage be collected before measuring rest
	rss, pss := memory(t, c)

	// A member logs in from outside the container, over both ports. The
	// chat admin (no sudo) creates the account through the daemon's socket.
	// bob cannot read /etc/hearth/hearth.yaml (it holds secrets); hearth
	// admin then uses the installed socket and learns the domain from the
	// daemon, so he needs no flags.
	c.mustStdin(password+"\n", "runuser", "-u", "bob", "--", "hearth", "admin",
		"user", "add", account, "--password-stdin")
	ca := filepath.Join(tmp, "cert.pem")
	copyFile(t, c.path("var/lib/hearth/tls/fullchain.pem"), ca)
	clientLogin(t, c, login, ca, "127.0.0.1:5222", false, password, true)
	clientLogin(t, c, login, ca, "[::1]:5223", true, password, true)
	clientLogin(t, c, login, ca, "127.0.0.1:5222", false, "not-the-password", false)

	// A real HTTPS request through nginx, from outside the container.
	out, err = c.netns("curl", "--fail", "--silent", "--show-error", "--max-time", "20",
		"--cacert", ca, "--resolve", domain+":443:127.0.0.1", "--dump-header", "-",
		"https://"+domain+"/.well-known/host-meta")
	if err != nil || !strings.Contains(out, "urn:xmpp:alt-connections:websocket") ||
		!strings.Contains(strings.ToLower(out), "strict-transport-security") {
		t.Errorf("host-meta over HTTPS through nginx: %v\n%s", err, out)
	}

	// `systemctl reload` re-reads the configuration in the same process,
	// which keeps serving.
	pid := c.show("hearth.service", "MainPID")
	c.must("systemctl", "reload", "hearth.service")
	if after := c.show("hearth.service", "MainPID"); after != pid || c.show("hearth.service", "ActiveState") != "active" {
		t.Errorf("reload: MainPID %s -> %s, state %s", pid, after, c.show("hearth.service", "ActiveState"))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := c.run("", "journalctl", "--no-pager", "-u", "hearth.service", "_PID="+pid)
		if strings.Contains(out, "configuration reloaded") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("no 'configuration reloaded' in the journal after systemctl reload:\n%s", out)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	clientLogin(t, c, login, ca, "127.0.0.1:5222", false, password, true)

	// The sysadmin adds a block volume: setup formats it (it is empty and
	// named twice), moves the data onto it, and the service comes back with
	// every account; a second run changes nothing.
	if loop != "" {
		withVolume := answers + "data_device: " + loop + "\nformat_device: " + loop + "\n"
		if err := os.WriteFile(c.path("root/setup-volume.yaml"), []byte(withVolume), 0o600); err != nil {
			t.Fatal(err)
		}
		out = c.must("hearth", "setup", "--answers", "/root/setup-volume.yaml", "--yes")
		t.Logf("hearth setup with a volume:\n%s", out)
		assertReady(t, c)
		if src := strings.TrimSpace(c.must("findmnt", "--noheadings", "--output", "SOURCE", "/var/lib/hearth")); src != loop {
			t.Errorf("/var/lib/hearth is mounted from %q, want %s", src, loop)
		}
		clientLogin(t, c, login, ca, "127.0.0.1:5222", false, password, true)
		if out, err := c.run("", "hearth", "plan", "--answers", "/root/setup-volume.yaml"); err != nil {
			t.Errorf("hearth plan after adding the volume: %v\n%s", err, out)
		}
	}

	// Upgrade while running: the new binary serves, under a new process.
	before := c.show("hearth.service", "MainPID")
	c.must("dpkg", "-i", "/root/hearth-2.deb")
	assertReady(t, c)
	if after := c.show("hearth.service", "MainPID"); after == before {
		t.Errorf("upgrade did not restart the running service (MainPID %s before and after)", before)
	}
	assertVersion(t, c, versions[1])
	clientLogin(t, c, login, ca, "127.0.0.1:5222", false, password, true)

	// Upgrade while stopped: it stays stopped.
	c.must("systemctl", "stop", "hearth.service")
	c.must("dpkg", "-i", "/root/hearth-3.deb")
	if got := c.show("hearth.service", "ActiveState"); got != "inactive" {
		t.Errorf("upgrade started a stopped service: %s", got)
	}
	assertVersion(t, c, versions[2])

	// Purge while running: service stopped, config, user and unit gone, the
	// data kept and the sysadmin told where.
	c.must("systemctl", "start", "hearth.service")
	assertReady(t, c)
	out = c.must("dpkg", "--purge", "hearth")
	if !strings.Contains(out, "/var/lib/hearth") {
		t.Errorf("purge does not say where the data remains:\n%s", out)
	}
	for _, p := range []string{"etc/hearth", "usr/bin/hearth", "lib/systemd/system/hearth.service",
		"etc/systemd/system/multi-user.target.wants/hearth.service"} {
		if c.exists(p) {
			t.Errorf("/%s still exists after purge", p)
		}
	}
	for _, db := range []string{"passwd", "group"} {
		if out, err := c.run("", "getent", db, "hearth"); err == nil {
			t.Errorf("%s entry hearth still exists after purge: %s", db, out)
		}
	}
	// Asked inside the container: the data may be on a volume mounted only
	// in the container's mount namespace.
	if _, err := c.run("", "test", "-f", "/var/lib/hearth/hearth.db"); err != nil {
		t.Error("purge removed the database /var/lib/hearth/hearth.db")
	}
	if out, err := c.run("", "pgrep", "-x", "hearth"); err == nil {
		t.Errorf("hearth still runs after purge: %s", out)
	}

	// Reinstall onto the data purge left: the account still logs in.
	c.must("dpkg", "-i", "/root/hearth-3.deb")
	writeConfig(t, c)
	c.must("systemctl", "enable", "--now", "hearth.service")
	assertReady(t, c)
	if err := os.WriteFile(ca, []byte(c.must("cat", "/var/lib/hearth/cert.pem")), 0o644); err != nil {
		t.Fatal(err)
	}
	clientLogin(t, c, login, ca, "127.0.0.1:5222", false, password, true)

	t.Logf("MEASURE deb_size_bytes=%d (%.1f MiB)", debSize, float64(debSize)/(1<<20))
	t.Logf("MEASURE setup_time=%s", setupTime.Round(time.Millisecond))
	t.Logf("MEASURE cold_start_to_ready=%s", coldStart)
	t.Logf("MEASURE resting_rss=%.1f MiB resting_pss=%.1f MiB", rss, pss)
	t.Logf("MEASURE systemd_analyze_security=%s", score)
	t.Logf("MEASURE appliance_test_total=%s", time.Since(began).Round(time.Second))
}

// buildDeb runs "make deb" for version and moves the package into dir.
func buildDeb(t *testing.T, repo, version, dir string) string {
	t.Helper()
	cmd := exec.Command("make", "-C", repo, "deb", "VERSION="+version)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb VERSION=%s: %v\n%s", version, err, tail(out, 30))
	}
	goarch, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("hearth_%s_%s.deb", version, strings.TrimSpace(string(goarch)))
	dst := filepath.Join(dir, name)
	if err := os.Rename(filepath.Join(repo, "dist", name), dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// writeConfig installs the default configuration with a self-signed
// certificate, readable by the daemon's group only: the reinstall after a
// purge uses it to show the kept data serves again.
func writeConfig(t *testing.T, c *container) {
	t.Helper()
	raw, err := templates.Config(templates.ConfigParams{Domain: domain, SelfSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.path("root/hearth.yaml"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("install", "-o", "root", "-g", "hearth", "-m", "0640", "/root/hearth.yaml", "/etc/hearth/hearth.yaml")
}

// assertReady checks the unit is active: with Type=notify that means the
// daemon sent READY=1, and its first STATUS= line arrives with it.
func assertReady(t *testing.T, c *container) {
	t.Helper()
	if got := c.show("hearth.service", "ActiveState"); got != "active" {
		out, _ := c.run("", "journalctl", "-u", "hearth", "--no-pager", "-n", "30")
		t.Fatalf("hearth.service is %s, want active\n%s", got, out)
	}
	if got := c.show("hearth.service", "StatusText"); !strings.HasPrefix(got, "sessions ") {
		t.Errorf("StatusText = %q, want the session count", got)
	}
}

// readyAfter is the time from the daemon's exec to its READY=1, as systemd
// recorded them.
func readyAfter(t *testing.T, c *container) time.Duration {
	t.Helper()
	start, err1 := strconv.ParseInt(c.show("hearth.service", "ExecMainStartTimestampMonotonic"), 10, 64)
	ready, err2 := strconv.ParseInt(c.show("hearth.service", "ActiveEnterTimestampMonotonic"), 10, 64)
	if err1 != nil || err2 != nil || ready < start {
		t.Fatalf("start/ready timestamps: %d %d (%v %v)", start, ready, err1, err2)
	}
	return time.Duration(ready-start) * time.Microsecond
}

// memory returns the daemon's RSS and PSS in MiB. (The container's cgroup
// tree has no memory controller on this host, so MemoryCurrent is unset.)
func memory(t *testing.T, c *container) (rss, pss float64) {
	t.Helper()
	pid := c.show("hearth.service", "MainPID")
	rollup := c.must("cat", "/proc/"+pid+"/smaps_rollup")
	kib := func(field string) float64 {
		m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindStringSubmatch(rollup)
		if m == nil {
			t.Fatalf("no %s in /proc/%s/smaps_rollup:\n%s", field, pid, rollup)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v / 1024
	}
	return kib("Rss"), kib("Pss")
}

// securityScore runs systemd-analyze security inside the container and
// checks the unit's exposure against the target of 2.0.
func securityScore(t *testing.T, c *container) string {
	t.Helper()
	out := c.must("systemd-analyze", "security", "--no-pager", "hearth.service")
	m := regexp.MustCompile(`Overall exposure level for hearth\.service: ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in systemd-analyze security output:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "✗") {
			t.Logf("security: %s", strings.Join(strings.Fields(line), " "))
		}
	}
	if v, _ := strconv.ParseFloat(m[1], 64); v > 2.0 {
		t.Errorf("systemd-analyze security: exposure %s, target ≤ 2.0\n%s", m[1], out)
	}
	return m[1]
}

func assertVersion(t *testing.T, c *container, want string) {
	t.Helper()
	if got := c.must("hearth", "version"); !strings.Contains(got, "hearth "+want+" ") {
		t.Errorf("hearth version = %q, want %s", got, want)
	}
	pid := c.show("hearth.service", "MainPID")
	if pid == "0" {
		return
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%s/exe", hostPID(t, c, pid))); err != nil || strings.HasSuffix(exe, "(deleted)") {
		t.Errorf("the running daemon's binary is %q (%v): not the installed one", exe, err)
	}
}

// hostPID maps a PID inside the container to the host's PID, through the
// NSpid line of the host's /proc.
func hostPID(t *testing.T, c *container, inner string) string {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*/status")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if fs := strings.Fields(line); len(fs) == 3 && fs[0] == "NSpid:" && fs[2] == inner {
				if ns, err := os.Readlink(filepath.Join(filepath.Dir(f), "ns/pid")); err == nil {
					if mine, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", c.pid1)); err == nil && ns == mine {
						return fs[1]
					}
				}
			}
		}
	}
	t.Fatalf("no host PID for container PID %s", inner)
	return ""
}

// clientLogin logs account in from the host through the container's
// network namespace; ok says whether the login must succeed.
func clientLogin(t *testing.T, c *container, login, ca, addr string, direct bool, pw string, ok bool) {
	t.Helper()
	out, err := c.netns(login, "-addr", addr, "-jid", account, "-password", pw, "-ca", ca,
		"-direct="+strconv.FormatBool(direct))
	switch {
	case ok && (err != nil || !strings.HasPrefix(out, "bound "+account+"/")):
		t.Errorf("login to %s (direct=%v) failed: %v\n%s", addr, direct, err, out)
	case !ok && err == nil:
		t.Errorf("login to %s with a wrong password succeeded: %s", addr, out)
	case !ok && !strings.Contains(out, "wrong username or password"):
		t.Errorf("login to %s with a wrong password failed for another reason: %s", addr, out)
	}
}

func (c *container) mustStdin(stdin string, args ...string) string {
	c.t.Helper()
	out, err := c.run(stdin, args...)
	if err != nil {
		c.t.Fatalf("in the container: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
