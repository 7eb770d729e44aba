package nginx

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func prodParams() Params {
	return Params{
		Domain:      "chat.example.org",
		Upstream:    "127.0.0.1:5280",
		CertFile:    "/var/lib/hearth/tls/fullchain.pem",
		KeyFile:     "/var/lib/hearth/tls/key.pem",
		UploadLimit: 100 << 20,
	}
}

// Every template, rendered with production values, matches its golden file.
func TestGolden(t *testing.T) {
	files, err := Render(prodParams())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("rendered %d files, want 3", len(files))
	}
	for _, f := range files {
		golden := filepath.Join("testdata", f.Name)
		if *update {
			if err := os.WriteFile(golden, f.Content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (go test ./templates/nginx -update creates it)", err)
		}
		if !bytes.Equal(f.Content, want) {
			t.Errorf("%s differs from the rendered template (go test ./templates/nginx -update if intended):\n%s", golden, f.Content)
		}
	}
}

// nginx 1.22 (Debian bookworm) rejects "http2 on;"; the listen form works
// on 1.22 and 1.24 alike.
func TestHTTP2OnListenLine(t *testing.T) {
	files, err := Render(prodParams())
	if err != nil {
		t.Fatal(err)
	}
	all := ""
	for _, f := range files {
		all += string(f.Content)
	}
	if strings.Contains(all, "http2 on") {
		t.Error(`"http2 on;" would fail on nginx 1.22`)
	}
	for _, want := range []string{
		"listen 443 ssl http2;", "listen [::]:443 ssl http2;",
		"client_max_body_size 100m;", "ssl_protocols TLSv1.2 TLSv1.3;",
		"Strict-Transport-Security", "server_name chat.example.org share.chat.example.org rooms.chat.example.org;",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("rendered vhosts lack %q", want)
		}
	}
}

// The serial changes with the content and is what the port-80 server
// answers, so a reload can be confirmed.
func TestSerialFollowsContent(t *testing.T) {
	a, err := Render(prodParams())
	if err != nil {
		t.Fatal(err)
	}
	p := prodParams()
	p.UploadLimit = 10 << 20
	b, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	sa, sb := Serial(a), Serial(b)
	if sa == "" || sb == "" || sa == sb {
		t.Fatalf("serials %q and %q", sa, sb)
	}
	again, _ := Render(prodParams())
	if Serial(again) != sa {
		t.Error("the same parameters gave another serial")
	}
}

func TestSizeDirective(t *testing.T) {
	for n, want := range map[int64]string{100 << 20: "100m", 1000: "1k", 1025: "2k", 1 << 30: "1024m"} {
		if got := sizeDirective(n); got != want {
			t.Errorf("sizeDirective(%d) = %q, want %q", n, got, want)
		}
	}
}

// A value that would add a directive is refused.
func TestRenderRefusesInjection(t *testing.T) {
	for name, mod := range map[string]func(*Params){
		"domain":   func(p *Params) { p.Domain = "a.example; include /etc/passwd" },
		"cert":     func(p *Params) { p.CertFile = "/x; ssl off" },
		"key":      func(p *Params) { p.KeyFile = "relative/key.pem" },
		"upstream": func(p *Params) { p.Upstream = "evil.example:80" },
		"listen":   func(p *Params) { p.ListenHTTP = []string{"80 default_server"} },
		"limit":    func(p *Params) { p.UploadLimit = 0 },
		"share":    func(p *Params) { p.ShareDomain = "Share.Example.org" },
	} {
		p := prodParams()
		mod(&p)
		if _, err := Render(p); err == nil {
			t.Errorf("%s: rendered a bad value", name)
		}
	}
}
