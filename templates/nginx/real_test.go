package nginx_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/merveilles/hearth/server/tlscert"
	"github.com/merveilles/hearth/templates/nginx"
	"github.com/merveilles/hearth/templates/nginx/nginxtest"
)

// client talks to the test nginx at addr whatever host name it asks for.
func client(addr string, tc *tls.Config) *http.Client {
	if tc == nil {
		tc = &tls.Config{InsecureSkipVerify: true}
	}
	tr := &http.Transport{
		TLSClientConfig:   tc,
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// The rendered vhosts, served by a real nginx: host-meta answers, ACME
// challenges and uploads reach hearth, an upload over the limit gets 413,
// TLS below 1.2 is refused, and HTTP/2 is offered.
func TestRealNginxServesRenderedVhosts(t *testing.T) {
	ng := nginxtest.New(t)
	ports := nginxtest.FreePorts(t, 2)
	httpAddr, httpsAddr := nginxtest.Listen(ports[0]), nginxtest.Listen(ports[1])

	var uploaded atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/"):
			io.WriteString(w, "key-auth-for-"+strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")+"@"+r.Host)
		case r.Method == http.MethodPut:
			n, _ := io.Copy(io.Discard, r.Body)
			uploaded.Store(n)
			w.WriteHeader(http.StatusCreated)
		default:
			io.WriteString(w, "portal "+r.Host)
		}
	}))
	defer backend.Close()

	certDir := t.TempDir()
	if _, err := tlscert.SelfSigned(certDir, []string{"chat.example.org", "share.chat.example.org"}); err != nil {
		t.Fatal(err)
	}
	files, err := nginx.Render(nginx.Params{
		Domain:      "chat.example.org",
		Upstream:    strings.TrimPrefix(backend.URL, "http://"),
		CertFile:    filepath.Join(certDir, "cert.pem"),
		KeyFile:     filepath.Join(certDir, "key.pem"),
		UploadLimit: 1 << 20,
		ListenHTTP:  []string{httpAddr},
		ListenHTTPS: []string{httpsAddr},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(ng.ConfD, f.Name), f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(ng.TestCommand()[0], ng.TestCommand()[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	ng.Start(t, httpsAddr)

	https := client(httpsAddr, nil)
	plain := client(httpAddr, nil)
	get := func(c *http.Client, url string) (*http.Response, string) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v\n%s", url, err, ng.ErrorLog())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	resp, body := get(https, "https://chat.example.org/.well-known/host-meta")
	if resp.StatusCode != 200 || !strings.Contains(body, `rel="urn:xmpp:alt-connections:websocket" href="wss://chat.example.org:`) {
		t.Errorf("host-meta: %d %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/xrd+xml" {
		t.Errorf("host-meta Content-Type %q", ct)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("host-meta headers: %v", resp.Header)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("served over %s, want HTTP/2", resp.Proto)
	}
	resp, body = get(https, "https://chat.example.org/.well-known/host-meta.json")
	if resp.StatusCode != 200 || !strings.Contains(body, `"href":"wss://chat.example.org:`) {
		t.Errorf("host-meta.json: %d %q", resp.StatusCode, body)
	}

	// Port 80: challenges for every name reach hearth; the rest redirects.
	for _, host := range []string{"chat.example.org", "share.chat.example.org", "rooms.chat.example.org"} {
		resp, body = get(plain, "http://"+host+"/.well-known/acme-challenge/tok123")
		if resp.StatusCode != 200 || body != "key-auth-for-tok123@"+host {
			t.Errorf("ACME challenge for %s: %d %q", host, resp.StatusCode, body)
		}
	}
	resp, _ = get(plain, "http://chat.example.org/invite/abc")
	if loc := resp.Header.Get("Location"); resp.StatusCode != 301 || loc != "https://chat.example.org:"+strings.Split(httpsAddr, ":")[1]+"/invite/abc" {
		t.Errorf("port 80 redirect: %d %q", resp.StatusCode, loc)
	}
	_, body = get(plain, "http://chat.example.org/.well-known/hearth-nginx")
	if strings.TrimSpace(body) != nginx.Serial(files) {
		t.Errorf("serial endpoint says %q, want %q", body, nginx.Serial(files))
	}

	resp, body = get(https, "https://chat.example.org/account")
	if resp.StatusCode != 200 || body != "portal chat.example.org" {
		t.Errorf("portal proxy: %d %q", resp.StatusCode, body)
	}

	// Uploads: at the limit reaches hearth, above it is refused by nginx.
	put := func(n int) int {
		req, _ := http.NewRequest(http.MethodPut, "https://share.chat.example.org/upload/x/file.bin", bytes.NewReader(make([]byte, n)))
		resp, err := https.Do(req)
		if err != nil {
			t.Fatalf("PUT %d bytes: %v", n, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := put(1 << 20); code != http.StatusCreated || uploaded.Load() != 1<<20 {
		t.Errorf("upload at the limit: %d, backend got %d bytes", code, uploaded.Load())
	}
	uploaded.Store(0)
	if code := put(1<<20 + 1); code != http.StatusRequestEntityTooLarge {
		t.Errorf("upload over the limit: %d, want 413", code)
	}
	if uploaded.Load() != 0 {
		t.Error("the oversized upload reached hearth")
	}

	// TLS 1.1 is refused.
	c, err := tls.Dial("tcp", httpsAddr, &tls.Config{InsecureSkipVerify: true, ServerName: "chat.example.org", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		c.Close()
		t.Error("nginx accepted TLS 1.1")
	}
}
