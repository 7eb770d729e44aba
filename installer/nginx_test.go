package installer_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/installer"
	"github.com/merveilles/hearth/server/tlscert"
	"github.com/merveilles/hearth/templates/nginx"
	"github.com/merveilles/hearth/templates/nginx/nginxtest"
)

type nginxHost struct {
	h                   *installer.Host
	ng                  *nginxtest.Nginx
	step                installer.Nginx
	httpAddr, httpsAddr string
}

// newNginxHost is a fake host whose /etc/nginx is served by a real nginx
// (our own child process on 127.0.0.1 high ports), with another site
// already on port 80 as on a Debian host.
func newNginxHost(t *testing.T) *nginxHost {
	root := t.TempDir()
	dir := filepath.Join(root, "etc/nginx")
	ng := nginxtest.NewAt(t, dir)
	ports := nginxtest.FreePorts(t, 2)
	httpAddr, httpsAddr := nginxtest.Listen(ports[0]), nginxtest.Listen(ports[1])
	other := "server {\n    listen " + httpAddr + " default_server;\n    return 404;\n}\n"
	if err := os.WriteFile(filepath.Join(ng.ConfD, "default.conf"), []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	ng.Start(t, httpAddr)
	certDir := filepath.Join(root, "var/lib/hearth/tls")
	if _, err := tlscert.SelfSigned(certDir, []string{"chat.example.org"}); err != nil {
		t.Fatal(err)
	}
	step := installer.Nginx{
		Params: nginx.Params{
			Domain:      "chat.example.org",
			Upstream:    "127.0.0.1:1", // nothing behind it: these tests ask nginx only
			CertFile:    filepath.Join(certDir, "cert.pem"),
			KeyFile:     filepath.Join(certDir, "key.pem"),
			UploadLimit: 10 << 20,
			ListenHTTP:  []string{httpAddr},
			ListenHTTPS: []string{httpsAddr},
		},
		Binary:   ng.Bin,
		TestArgs: []string{"-e", filepath.Join(dir, "logs/error.log")},
		Reload:   []string{"kill", "-HUP", strconv.Itoa(ng.PID())},
		Probe:    httpAddr,
		Wait:     20 * time.Second,
	}
	return &nginxHost{
		h:  &installer.Host{Root: root, Run: installer.ExecRunner{}},
		ng: ng, step: step, httpAddr: httpAddr, httpsAddr: httpsAddr,
	}
}

func (n *nginxHost) plan(t *testing.T) []installer.Action {
	t.Helper()
	acts, err := n.step.Plan(context.Background(), n.h)
	if err != nil {
		t.Fatal(err)
	}
	return acts
}

func (n *nginxHost) apply() error {
	return installer.Apply(context.Background(), n.h, []installer.Step{n.step})
}

// serving asks nginx which configuration serves, as the step does.
func (n *nginxHost) serving(t *testing.T) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, n.httpAddr)
	}}}
	resp, err := c.Get("http://chat.example.org/.well-known/hearth-nginx")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.Status
	}
	return strings.TrimSpace(string(b))
}

func (n *nginxHost) serial(t *testing.T) string {
	files, err := nginx.Render(n.step.Params)
	if err != nil {
		t.Fatal(err)
	}
	return nginx.Serial(files)
}

// Apply writes the vhosts, reloads, and returns once nginx serves them;
// a second plan is empty; a changed limit is one action that is served
// when Apply returns.
func TestNginxStepAppliesAndConverges(t *testing.T) {
	n := newNginxHost(t)
	acts := n.plan(t)
	if len(acts) != 1 || acts[0].Blocked != "" || !strings.Contains(acts[0].Detail, "create /etc/nginx/conf.d/hearth-chat.example.org.conf") {
		t.Fatalf("first plan: %+v", acts)
	}
	if err := n.apply(); err != nil {
		t.Fatalf("apply: %v\n%s", err, n.ng.ErrorLog())
	}
	// No wait here: Apply returned only once the new config serves.
	if got, want := n.serving(t), n.serial(t); got != want {
		t.Fatalf("after apply nginx serves %q, want %q", got, want)
	}
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, n.httpsAddr)
		},
	}}
	resp, err := c.Get("https://chat.example.org/.well-known/host-meta")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("host-meta after apply: %s", resp.Status)
	}
	if acts := n.plan(t); len(acts) != 0 {
		t.Fatalf("second plan is not empty: %+v", acts)
	}

	old := n.serial(t)
	n.step.Params.UploadLimit = 20 << 20
	acts = n.plan(t)
	if len(acts) != 1 || !strings.Contains(acts[0].Detail, "+    client_max_body_size 20m;") {
		t.Fatalf("plan after a limit change: %+v", acts)
	}
	if err := n.apply(); err != nil {
		t.Fatal(err)
	}
	if got := n.serving(t); got == old || got != n.serial(t) {
		t.Fatalf("after the change nginx serves %q (old %q, want %q)", got, old, n.serial(t))
	}
}

// A configuration nginx rejects never reaches conf.d; a reload that fails
// puts the old files back; a hand edit is refused.
func TestNginxStepRollsBack(t *testing.T) {
	n := newNginxHost(t)
	if err := n.apply(); err != nil {
		t.Fatal(err)
	}
	good := n.serial(t)
	vhost := n.h.Path("/etc/nginx/conf.d/hearth-chat.example.org.conf")
	before, _ := os.ReadFile(vhost)

	// nginx -t fails: the certificate does not exist.
	bad := n.step
	bad.Params.CertFile = "/nonexistent/cert.pem"
	err := installer.Apply(context.Background(), n.h, []installer.Step{bad})
	if err == nil || !strings.Contains(err.Error(), "nginx rejects the new vhosts") {
		t.Fatalf("apply of a broken config: %v", err)
	}
	if after, _ := os.ReadFile(vhost); string(after) != string(before) {
		t.Error("a rejected vhost replaced the live one")
	}
	if got := n.serving(t); got != good {
		t.Errorf("nginx serves %q after a rejected change", got)
	}
	if matches, _ := filepath.Glob(n.h.Path("/etc/.nginx-hearth-candidate-*")); len(matches) != 0 {
		t.Errorf("candidate trees left behind: %v", matches)
	}

	// The reload fails: the new files are taken back.
	noReload := n.step
	noReload.Params.UploadLimit = 30 << 20
	// The first reload fails, the one after the rollback works.
	marker := filepath.Join(t.TempDir(), "failed-once")
	noReload.Reload = []string{"sh", "-c", `if [ -e "$1" ]; then kill -HUP "$2"; else touch "$1"; exit 1; fi`, "reload", marker, strconv.Itoa(n.ng.PID())}
	if err := installer.Apply(context.Background(), n.h, []installer.Step{noReload}); err == nil || !strings.Contains(err.Error(), "old vhosts are back") {
		t.Fatalf("apply with a failing reload: %v", err)
	}
	if after, _ := os.ReadFile(vhost); string(after) != string(before) {
		t.Error("the vhost was not restored after the reload failed")
	}
	if acts := n.plan(t); len(acts) != 0 {
		t.Errorf("after the rollback the host is not as before: %+v", acts)
	}
	if got := n.serving(t); got != good {
		t.Errorf("nginx serves %q after the rollback", got)
	}

	// A hand edit blocks the next change.
	if err := os.WriteFile(vhost, append(before, []byte("# mine\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	n.step.Params.UploadLimit = 40 << 20
	acts := n.plan(t)
	if len(acts) != 1 || !strings.Contains(acts[0].Blocked, "edited by hand") {
		t.Fatalf("plan over a hand edit: %+v", acts)
	}
	if err := n.apply(); err == nil {
		t.Fatal("applied over a hand edit")
	}
}
