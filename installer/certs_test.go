package installer_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/merveilles/hearth/installer"
	"github.com/merveilles/hearth/installer/installertest"
)

// A fresh host gets a self-signed certificate for every name, the path
// unit, and the unit enabled; once systemd has it, nothing is planned.
func TestCertsStep(t *testing.T) {
	h, r := installertest.Host(t, nil)
	enabled := false
	r.OnPrefix("systemctl show", func(string, []byte) installertest.Reply {
		if enabled {
			return installertest.Reply{Out: "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\nNeedDaemonReload=no\n"}
		}
		return installertest.Reply{Out: "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n"}
	})
	r.On("systemctl daemon-reload", "")
	r.OnFunc("systemctl enable --now hearth-certs.path", func([]byte) installertest.Reply { enabled = true; return installertest.Reply{} })
	r.OnPrefix("chown hearth:hearth ", func(string, []byte) installertest.Reply { return installertest.Reply{} })
	step := installer.Certs{
		CertFile: "/var/lib/hearth/tls/fullchain.pem", KeyFile: "/var/lib/hearth/tls/key.pem",
		Names: []string{"chat.example.org", "share.chat.example.org"}, Owner: "hearth:hearth",
	}
	ctx := context.Background()
	if err := installer.Apply(ctx, h, []installer.Step{step}); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(h.Path(step.CertFile), h.Path(step.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.Leaf.VerifyHostname("share.chat.example.org"); err != nil {
		t.Error(err)
	}
	unit, ok, _ := h.ReadFile("/etc/systemd/system/hearth-certs.path")
	if !ok || !strings.Contains(string(unit), "PathChanged=/var/lib/hearth/tls/fullchain.pem") {
		t.Errorf("path unit: %q", unit)
	}
	calls := strings.Join(r.Calls(), "\n")
	for _, want := range []string{"chown hearth:hearth " + h.Path("/var/lib/hearth/tls/key.pem"), "systemctl daemon-reload", "systemctl enable --now hearth-certs.path"} {
		if !strings.Contains(calls, want) {
			t.Errorf("did not run %q; ran:\n%s", want, calls)
		}
	}
	acts, err := step.Plan(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 0 {
		t.Errorf("second plan: %+v", acts)
	}
}

// setup runs certificates, then nginx (whose nginx -t needs the files),
// before the service; the configuration it writes has ACME on for every
// name, writing where nginx reads.
func TestSetupStepsIncludeCertsAndNginx(t *testing.T) {
	a := &installer.Answers{Domain: "chat.example.org", ACMEEmail: "ops@example.org", UploadLimitMB: 50}
	var names []string
	for _, s := range installer.Steps(a, "ada") {
		names = append(names, s.Name())
		if n, ok := s.(installer.Nginx); ok {
			if n.Params.UploadLimit != 50<<20 || n.Params.CertFile != installer.CertFile || n.Params.ShareDomain != "share.chat.example.org" {
				t.Errorf("nginx params: %+v", n.Params)
			}
		}
	}
	got := strings.Join(names, ",")
	if !strings.Contains(got, "certificates,nginx,service") {
		t.Errorf("steps %s", got)
	}
	b, err := installer.ConfigFile{Answers: a}.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"enabled: true", `"rooms.chat.example.org"`, `cert_file: "/var/lib/hearth/tls/fullchain.pem"`, `email: "ops@example.org"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("hearth.yaml lacks %s", want)
		}
	}
}
