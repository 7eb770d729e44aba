package installer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/installer"
	"github.com/merveilles/hearth/installer/installertest"
	"github.com/merveilles/hearth/server/config"
)

// setupHost is a host with three login users, a system disk and an empty
// second disk, whose group database really changes when setup runs
// groupadd/gpasswd.
func setupHost(t *testing.T) (*installer.Host, *installertest.Runner) {
	uid, gid := os.Getuid(), os.Getgid()
	h, r := installertest.Host(t, map[string]string{
		// The fake root and hearth ids are the test process's, so the
		// ownership the config step sets is what the disk shows.
		"/etc/passwd": fmt.Sprintf("root:x:%d:%d::/root:/bin/sh\nhearth:x:998:%d::/var/lib/hearth:/usr/sbin/nologin\n", uid, gid, gid) +
			"ada:x:1000:1000::/home/ada:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/bash\ncy:x:1002:1002::/home/cy:/bin/bash\n",
		"/etc/group":                    fmt.Sprintf("root:x:0:\nsudo:x:27:\nhearth:x:%d:\n", gid),
		"/usr/sbin/sshd":                "",
		"/etc/ssh/sshd_config":          "Include /etc/ssh/sshd_config.d/*.conf\n",
		"/sys/block/vda/size":           "41943040\n",
		"/sys/block/vda/vda1/partition": "1\n",
		"/sys/block/vda/vda1/size":      "41940992\n",
		"/sys/block/vdb/size":           "20971520\n",
		"/sys/block/loop0/size":         "2048\n", // no backing file: not offered
		"/dev/vda":                      "",
		"/dev/vda1":                     "",
		"/dev/vdb":                      "",
		"/proc/self/mountinfo":          "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n",
	})
	r.On("blkid -p -o export /dev/vda", "PTUUID=x\nPTTYPE=gpt\n")
	r.On("blkid -p -o export /dev/vda1", "UUID=root-uuid\nTYPE=ext4\n")
	r.OnErr("blkid -p -o export /dev/vdb", installertest.ExitError{Code: 2})
	groupFile := h.Path("/etc/group")
	editGroups := func(edit func(lines []string) []string) {
		b, _ := os.ReadFile(groupFile)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		os.WriteFile(groupFile, []byte(strings.Join(edit(lines), "\n")+"\n"), 0o644)
	}
	r.OnPrefix("groupadd --system ", func(line string, _ []byte) installertest.Reply {
		name := strings.Fields(line)[2]
		editGroups(func(l []string) []string { return append(l, name+":x:900:") })
		return installertest.Reply{}
	})
	r.OnPrefix("gpasswd ", func(line string, _ []byte) installertest.Reply {
		f := strings.Fields(line) // gpasswd -a|-d user group
		editGroups(func(l []string) []string {
			for i, g := range l {
				parts := strings.Split(g, ":")
				if parts[0] != f[3] {
					continue
				}
				var members []string
				if parts[3] != "" {
					members = strings.Split(parts[3], ",")
				}
				if f[1] == "-a" {
					members = append(members, f[2])
				} else {
					var keep []string
					for _, m := range members {
						if m != f[2] {
							keep = append(keep, m)
						}
					}
					members = keep
				}
				parts[3] = strings.Join(members, ",")
				l[i] = strings.Join(parts, ":")
			}
			return l
		})
		return installertest.Reply{}
	})
	r.OnPrefix("chown root:hearth ", func(string, []byte) installertest.Reply { return installertest.Reply{} })
	r.On("/usr/sbin/sshd -t", "")
	r.On("systemctl reload-or-restart ssh.service", "")
	r.On("systemctl show -p LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,StatusText hearth.service", "ActiveState=active\nSubState=running\nStatusText=0 sessions\n")
	return h, r
}

// Everything the wizard asks, with wrong answers that must be refused.
var wizardScript = []string{
	"Not A Domain", "chat.example.org", // domain
	"",                     // rooms: default rooms.chat.example.org
	"chat.example.org", "", // share must differ from the domain
	"nope", "admin@example.org", // ACME email
	"/dev/vda ", "", // partitioned disk: refused, enter to choose again
	"/dev/vdb", "/dev/vdx", // typed the wrong name: choose again
	"/dev/vdb", "/dev/vdb", // typed the right name: format allowed
	"bob", "ada", // sysadmins must include the invoker
	"bob,cy",                     // chat admins
	"n",                          // federation
	"12h", "30d", "", "", "", "", // retention (personal archive under a day refused)
	"0", "50", // upload limit
	"Keycloak", "http://id.example.org", "https://id.example.org/realms/m", "hearth", "s3cret",
}

func TestWizardAsksValidatesAndRemembers(t *testing.T) {
	h, _ := setupHost(t)
	p := &installertest.Prompter{Answers: append([]string(nil), wizardScript...)}
	a, err := installer.Ask(context.Background(), p, h, nil, "ada")
	if err != nil {
		t.Fatalf("%v\nasked: %q\nrejected: %q", err, p.Asked, p.Rejected)
	}
	if len(p.Answers) != 0 {
		t.Fatalf("unused answers %q; asked %q", p.Answers, p.Asked)
	}
	if len(p.Rejected) != 7 {
		t.Errorf("rejected %d answers, want 7:\n%s", len(p.Rejected), strings.Join(p.Rejected, "\n"))
	}
	want := installer.DefaultAnswers()
	want.Domain, want.RoomsDomain, want.ShareDomain = "chat.example.org", "rooms.chat.example.org", "share.chat.example.org"
	want.ACMEEmail = "admin@example.org"
	want.DataDevice, want.FormatDevice = "/dev/vdb", "/dev/vdb"
	want.Sysadmins, want.ChatAdmins = []string{"ada"}, []string{"bob", "cy"}
	want.Retention.PersonalArchive = config.Duration(30 * 24 * 3600e9)
	want.UploadLimitMB = 50
	want.OIDC = installer.OIDC{Issuer: "https://id.example.org/realms/m", ClientID: "hearth", ClientSecret: "s3cret"}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("answers\n%+v\nwant\n%+v", a, want)
	}
	// The partitioned system disk was listed and refused.
	var refused bool
	for _, q := range p.Asked {
		refused = refused || strings.HasPrefix(q, "/dev/vda cannot be used: has partitions")
	}
	if !refused {
		t.Fatalf("partitioned disk not refused: %q", p.Asked)
	}
	// Saved answers are the next run's defaults: all-enter reproduces them
	// (the secret is kept when left empty).
	if err := h.SaveAnswers(a); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(h.Path(installer.AnswersPath)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("setup.yaml mode %o", fi.Mode().Perm())
	}
	saved, err := h.SavedAnswers()
	if err != nil || saved.FormatDevice != "" {
		t.Fatalf("saved %+v %v (the permission to format must not be kept)", saved, err)
	}
	saved.FormatDevice = a.FormatDevice
	if !reflect.DeepEqual(saved, a) {
		t.Fatalf("saved %+v", saved)
	}
	saved.FormatDevice = ""
	// Enter everywhere, except retyping the still-empty device's name.
	script := []string{"", "", "", "", "", "/dev/vdb"}
	script = append(script, make([]string, 13)...)
	p2 := &installertest.Prompter{Answers: script}
	again, err := installer.Ask(context.Background(), p2, h, saved, "ada")
	if err != nil {
		t.Fatalf("%v; asked %q", err, p2.Asked)
	}
	if len(p2.Answers) != 0 || len(p2.Rejected) != 0 {
		t.Fatalf("second wizard: left %q, rejected %q", p2.Answers, p2.Rejected)
	}
	if !reflect.DeepEqual(again, a) {
		t.Fatalf("defaults not remembered:\n%+v\n%+v", again, a)
	}
}

func TestAnswersFileStrict(t *testing.T) {
	_, err := installer.ParseAnswers([]byte("domain: chat.example.org\nacme_email: a@example.org\nsysadmins: [ada]\nfederaton_allowed: true\n"))
	if err == nil || !strings.Contains(err.Error(), "federaton_allowed") {
		t.Fatalf("typo accepted: %v", err)
	}
	_, err = installer.ParseAnswers([]byte("domain: chat.example.org\nacme_email: a@example.org\nsysadmins: [ada]\ndata_device: /dev/vdb\nformat_device: /dev/vdc\n"))
	if err == nil || !strings.Contains(err.Error(), "format_device") {
		t.Fatalf("mismatched format_device: %v", err)
	}
	a, err := installer.ParseAnswers([]byte("domain: chat.example.org\nacme_email: a@example.org\nsysadmins: [ada]\n"))
	if err != nil || a.RoomsDomain != "rooms.chat.example.org" || a.UploadLimitMB != 100 || a.Retention.Invites.D().Hours() != 14*24 {
		t.Fatalf("minimal answers: %+v %v", a, err)
	}
}

func testSteps(a *installer.Answers, invoker string) []installer.Step {
	return []installer.Step{
		installer.ConfigFile{Answers: a},
		installer.Accounts{Sysadmins: a.Sysadmins, ChatAdmins: a.ChatAdmins, Invoker: invoker},
	}
}

// setup: wizard, whole plan, confirmation, apply; a second run with the
// saved answers plans nothing; "hearth plan" prints without changing.
func TestSetupThenNoChanges(t *testing.T) {
	h, r := setupHost(t)
	ctx := context.Background()
	var out bytes.Buffer
	p := &installertest.Prompter{Answers: append(append([]string(nil), wizardScript...), "y")}
	_, err := installer.Setup(ctx, installer.Options{Host: h, Prompter: p, Invoker: "ada", Out: &out, Steps: testSteps})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, s := range []string{"configuration:\n  + create /etc/hearth/hearth.yaml (mode 640)", "run: gpasswd -a ada hearth-sysadmin", "AllowGroups hearth-sysadmin", "Done in"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
	cfg, err := config.Load(h.Path(installer.ConfigPath))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Domain != "chat.example.org" || cfg.DataVolume != "required" || cfg.Admin.Group != "hearth-admin" ||
		cfg.Retention.Archive.D() != 30*24*time.Hour || cfg.Retention.Offline.D() != 30*24*time.Hour {
		t.Fatalf("config %+v", cfg)
	}
	if b, _ := os.ReadFile(h.Path(installer.AnswersPath)); !bytes.Contains(b, []byte("client_secret: s3cret")) {
		t.Fatalf("answers not saved:\n%s", b)
	}

	// Unattended, with the saved answers as the answers file.
	r.Reset()
	out.Reset()
	answers := filepath.Join(t.TempDir(), "setup.yaml")
	b, _ := os.ReadFile(h.Path(installer.AnswersPath))
	os.WriteFile(answers, b, 0o600)
	_, err = installer.Setup(ctx, installer.Options{Host: h, AnswersFile: answers, Yes: true, Invoker: "ada", Out: &out, Steps: testSteps})
	if err != nil || !strings.Contains(out.String(), "Nothing to change") {
		t.Fatalf("second run: %v\n%s", err, out.String())
	}
	for _, c := range r.Calls() {
		if !strings.HasPrefix(c, "blkid") && !strings.HasPrefix(c, "systemctl show") {
			t.Errorf("second run ran %q", c)
		}
	}

	// A hand edit of hearth.yaml is reported and kept.
	os.WriteFile(h.Path(installer.ConfigPath), []byte("domain: mine.example.org\n"), 0o640)
	out.Reset()
	_, err = installer.Setup(ctx, installer.Options{Host: h, PlanOnly: true, Out: &out, Steps: testSteps})
	if err == nil || !errors.Is(err, installer.ErrBlocked) || !strings.Contains(out.String(), "edited by hand") {
		t.Fatalf("plan over a hand edit: %v\n%s", err, out.String())
	}
	if b, _ := os.ReadFile(h.Path(installer.ConfigPath)); string(b) != "domain: mine.example.org\n" {
		t.Fatal("plan changed the file")
	}
}

func TestSetupWithoutTerminal(t *testing.T) {
	h, _ := setupHost(t)
	_, err := installer.Setup(context.Background(), installer.Options{Host: h, Out: &bytes.Buffer{}})
	if !errors.Is(err, installer.ErrNoTerminal) || !strings.Contains(err.Error(), "--answers FILE") {
		t.Fatalf("%v", err)
	}
	// --answers without --yes and without a terminal does not apply.
	answers := filepath.Join(t.TempDir(), "a.yaml")
	os.WriteFile(answers, []byte("domain: chat.example.org\nacme_email: a@example.org\nsysadmins: [ada]\n"), 0o600)
	var out bytes.Buffer
	_, err = installer.Setup(context.Background(), installer.Options{Host: h, AnswersFile: answers, Out: &out, Steps: testSteps, Invoker: "ada"})
	if err == nil || !strings.Contains(err.Error(), "--yes") || h.Exists(installer.ConfigPath) {
		t.Fatalf("%v", err)
	}
}
