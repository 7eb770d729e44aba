package installer_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/merveilles/hearth/installer"
	"github.com/merveilles/hearth/installer/installertest"
)

const passwd = `root:x:0:0:root:/root:/bin/bash
hearth:x:998:998::/var/lib/hearth:/usr/sbin/nologin
ada:x:1000:1000:Ada:/home/ada:/bin/bash
bob:x:1001:1001:Bob:/home/bob:/bin/bash
cy:x:1002:1002:Cy:/home/cy:/bin/bash
`

func accountsHost(t *testing.T, group string) (*installer.Host, *installertest.Runner) {
	return installertest.Host(t, map[string]string{
		"/etc/passwd":          passwd,
		"/etc/group":           group,
		"/usr/sbin/sshd":       "",
		"/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n",
	})
}

func TestAccountsFreshHost(t *testing.T) {
	h, r := accountsHost(t, "root:x:0:\nsudo:x:27:\nhearth:x:998:\n")
	step := installer.Accounts{Sysadmins: []string{"ada"}, ChatAdmins: []string{"bob", "cy"}, Invoker: "ada"}
	acts, err := step.Plan(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"run: groupadd --system hearth-sysadmin",
		"run: groupadd --system hearth-admin",
		"run: gpasswd -a ada sudo",
		"run: gpasswd -a ada hearth-sysadmin",
		"run: gpasswd -a bob hearth-admin",
		"run: gpasswd -a cy hearth-admin",
		"run: gpasswd -a hearth hearth-admin",
		"create /etc/ssh/sshd_config.d/hearth.conf (mode 644)",
		"run: systemctl reload-or-restart ssh.service",
	}
	if got := summaries(acts); !reflect.DeepEqual(got, want) {
		t.Fatalf("plan:\n%s", strings.Join(got, "\n"))
	}
	if !strings.Contains(acts[7].Detail, "AllowGroups hearth-sysadmin") {
		t.Fatalf("drop-in: %s", acts[6].Detail)
	}
	r.OnPrefix("groupadd ", func(string, []byte) installertest.Reply { return installertest.Reply{} })
	r.OnPrefix("gpasswd ", func(string, []byte) installertest.Reply { return installertest.Reply{} })
	r.On("/usr/sbin/sshd -t", "")
	r.On("systemctl reload-or-restart ssh.service", "")
	if err := installer.Apply(context.Background(), h, []installer.Step{step}); err != nil {
		t.Fatal(err)
	}
	if b, _, _ := h.ReadFile("/etc/ssh/sshd_config.d/hearth.conf"); !strings.Contains(string(b), "\nAllowGroups hearth-sysadmin\n") {
		t.Fatalf("drop-in on disk: %q", b)
	}
}

func TestAccountsCorrectHostAndRemovals(t *testing.T) {
	h, r := accountsHost(t, "sudo:x:27:ada\nhearth-sysadmin:x:997:ada,bob\nhearth-admin:x:996:cy,hearth\n")
	installertest.WriteFile(t, h.Root, "/etc/ssh/sshd_config.d/hearth.conf", string(installer.SSHDropIn()))
	h.UpdateState(func(s *installer.State) {
		s.Files["/etc/ssh/sshd_config.d/hearth.conf"] = installer.Hash(installer.SSHDropIn())
	})
	acts, err := installer.Accounts{Sysadmins: []string{"ada", "bob"}, ChatAdmins: []string{"cy"}}.Plan(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"run: gpasswd -a bob sudo"}
	if got := summaries(acts); !reflect.DeepEqual(got, want) {
		t.Fatalf("plan: %q", got)
	}
	// bob is no longer a sysadmin: he leaves hearth-sysadmin (sudo stays).
	acts, _ = installer.Accounts{Sysadmins: []string{"ada"}, ChatAdmins: []string{"cy"}}.Plan(context.Background(), h)
	if got := summaries(acts); !reflect.DeepEqual(got, []string{"run: gpasswd -d bob hearth-sysadmin"}) {
		t.Fatalf("plan: %q", got)
	}
	_ = r
}

func TestAccountsRefusesLockout(t *testing.T) {
	h, _ := accountsHost(t, "sudo:x:27:\n")
	ctx := context.Background()
	if _, err := (installer.Accounts{Sysadmins: []string{"bob"}, Invoker: "ada"}).Plan(ctx, h); err == nil || !strings.Contains(err.Error(), "lock you out") {
		t.Fatalf("invoker not a sysadmin: %v", err)
	}
	if _, err := (installer.Accounts{}).Plan(ctx, h); err == nil || !strings.Contains(err.Error(), "no sysadmin") {
		t.Fatalf("no sysadmin: %v", err)
	}
	if _, err := (installer.Accounts{Sysadmins: []string{"zed"}}).Plan(ctx, h); err == nil || !strings.Contains(err.Error(), `"zed" does not exist`) {
		t.Fatalf("unknown user: %v", err)
	}
}

// sshd -t rejecting the drop-in rolls it back: sshd keeps its old, working
// configuration and the reload never runs.
func TestAccountsDropInRolledBackWhenSSHDRejectsIt(t *testing.T) {
	h, r := accountsHost(t, "sudo:x:27:ada\nhearth-sysadmin:x:997:ada\nhearth-admin:x:996:hearth\n")
	r.OnErr("/usr/sbin/sshd -t", errors.New("Bad configuration option"))
	err := installer.Apply(context.Background(), h, []installer.Step{installer.Accounts{Sysadmins: []string{"ada"}}})
	if err == nil || !strings.Contains(err.Error(), "old file restored") {
		t.Fatalf("apply: %v", err)
	}
	if h.Exists("/etc/ssh/sshd_config.d/hearth.conf") {
		t.Fatal("rejected drop-in left in place")
	}
	for _, c := range r.Calls() {
		if strings.Contains(c, "reload") {
			t.Fatalf("ssh reloaded after a rejected drop-in: %q", r.Calls())
		}
	}
}
