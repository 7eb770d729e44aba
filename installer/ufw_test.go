package installer_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/merveilles/hearth/installer"
	"github.com/merveilles/hearth/installer/installertest"
)

const ufwDefaults = `IPV6=yes
DEFAULT_INPUT_POLICY="DROP"
DEFAULT_OUTPUT_POLICY="ACCEPT"
`

func ufwHost(t *testing.T, enabled, input, rules string) (*installer.Host, *installertest.Runner) {
	h, r := installertest.Host(t, map[string]string{
		"/usr/sbin/ufw":       "",
		"/usr/sbin/sshd":      "",
		"/etc/ufw/ufw.conf":   "# comment\nENABLED=" + enabled + "\nLOGLEVEL=low\n",
		"/etc/default/ufw":    strings.Replace(ufwDefaults, "DROP", input, 1),
		"/etc/ufw/user.rules": "*filter\n" + rules + "COMMIT\n",
	})
	r.On("/usr/sbin/sshd -T", "port 22\nport 2222\naddressfamily any\nlistenaddress [::]:22\nlistenaddress 0.0.0.0:22\n")
	return h, r
}

func summaries(acts []installer.Action) []string {
	var out []string
	for _, a := range acts {
		out = append(out, a.Summary)
	}
	return out
}

func tuple(action string, port string) string {
	return "### tuple ### " + action + " tcp " + port + " 0.0.0.0/0 any 0.0.0.0/0 in\n"
}

func TestUFWFreshHost(t *testing.T) {
	h, _ := ufwHost(t, "no", "ACCEPT", "")
	acts, err := installer.UFW{}.Plan(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"run: ufw default deny incoming",
		"run: ufw limit 22/tcp",
		"run: ufw limit 2222/tcp",
		"run: ufw allow 80/tcp",
		"run: ufw allow 443/tcp",
		"run: ufw allow 5222/tcp",
		"run: ufw allow 5223/tcp",
		"run: ufw --force enable",
	}
	if got := summaries(acts); !reflect.DeepEqual(got, want) {
		t.Fatalf("plan:\n%s", strings.Join(got, "\n"))
	}
}

func TestUFWCorrectHostPlansNothing(t *testing.T) {
	rules := tuple("limit", "22") + tuple("limit", "2222") + tuple("allow", "80") + tuple("allow", "443") +
		tuple("allow", "5222") + tuple("allow", "5223") + tuple("allow", "5269")
	h, _ := ufwHost(t, "yes", "DROP", rules)
	acts, err := installer.UFW{Federation: true}.Plan(context.Background(), h)
	if err != nil || len(acts) != 0 {
		t.Fatalf("plan on a correct host: %v %q", err, summaries(acts))
	}
	// Federation withdrawn: 5269 closes, and the active firewall reloads.
	acts, err = installer.UFW{Federation: false}.Plan(context.Background(), h)
	want := []string{"run: ufw delete allow 5269/tcp", "run: ufw reload"}
	if err != nil || !reflect.DeepEqual(summaries(acts), want) {
		t.Fatalf("plan without federation: %v %q", err, summaries(acts))
	}
}

func TestUFWApplyRunsThePlannedCommands(t *testing.T) {
	h, r := ufwHost(t, "yes", "DROP", tuple("allow", "22")+tuple("allow", "80"))
	r.OnPrefix("ufw ", func(string, []byte) installertest.Reply { return installertest.Reply{} })
	if err := installer.Apply(context.Background(), h, []installer.Step{installer.UFW{Federation: true}}); err != nil {
		t.Fatal(err)
	}
	var ran []string
	for _, c := range r.Calls() {
		if strings.HasPrefix(c, "ufw ") {
			ran = append(ran, c)
		}
	}
	want := []string{"ufw limit 22/tcp", "ufw limit 2222/tcp", "ufw allow 443/tcp", "ufw allow 5222/tcp", "ufw allow 5223/tcp", "ufw allow 5269/tcp", "ufw reload"}
	if !reflect.DeepEqual(ran, want) {
		t.Fatalf("ran %q", ran)
	}
}

func TestSSHPortsWithoutSSHD(t *testing.T) {
	h, _ := installertest.Host(t, nil)
	ports, err := installer.SSHPorts(context.Background(), h)
	if err != nil || len(ports) != 0 {
		t.Fatalf("%v %v", ports, err)
	}
}
