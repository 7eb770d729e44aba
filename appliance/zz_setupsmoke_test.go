//go:build appliance && setupsmoke

package appliance

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSetupSmoke(t *testing.T) {
	rootPackages = append(rootPackages, "ufw", "openssh-server", "sudo", "passwd", "nginx")
	repo, _ := filepath.Abs("..")
	tmp := t.TempDir()
	deb := buildDeb(t, repo, "0.0.1~smoke1", tmp)
	root := filepath.Join(tmp, "root")
	os.Mkdir(root, 0o755)
	if out, err := runCmd("tar", "-C", root, "-xf", rootTarball(t)); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	copyFile(t, deb, filepath.Join(root, "root", "hearth.deb"))
	os.WriteFile(filepath.Join(root, "root", "a.yaml"), []byte("domain: chat.example.org\nacme_email: admin@example.org\nsysadmins: [ada]\nchat_admins: [bob]\n"), 0o600)
	c := boot(t, root, filepath.Join(tmp, "console.log"))
	c.must("dpkg", "-i", "/root/hearth.deb")
	c.must("useradd", "-m", "-u", "1000", "-s", "/bin/bash", "ada")
	c.must("useradd", "-m", "-u", "1001", "-s", "/bin/bash", "bob")
	out, err := c.run("", "hearth", "plan", "--answers", "/root/a.yaml")
	t.Logf("plan: %v\n%s", err, out)
	out, err = c.run("", "hearth", "setup", "--answers", "/root/a.yaml", "--yes")
	t.Logf("setup: %v\n%s", err, out)
	for _, cmd := range [][]string{{"ufw", "status", "verbose"}, {"getent", "group", "sudo", "hearth-sysadmin", "hearth-admin"},
		{"cat", "/etc/ssh/sshd_config.d/hearth.conf"}, {"sshd", "-t"}, {"systemctl", "show", "-p", "ActiveState,StatusText", "hearth.service"},
		{"ls", "-l", "/etc/hearth", "/var/lib/hearth"}, {"cat", "/var/lib/hearth-installer/state.json"}} {
		out, err := c.run("", cmd...)
		t.Logf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
	}
	out, err = c.run("", "hearth", "setup", "--answers", "/root/a.yaml", "--yes")
	t.Logf("setup again: %v\n%s", err, out)
	if !strings.Contains(out, "Nothing to change") {
		t.Error("second run changed something")
	}
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
