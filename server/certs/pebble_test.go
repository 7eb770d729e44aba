package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/certs"
	"github.com/merveilles/hearth/server/certs/pebbletest"
	"github.com/merveilles/hearth/server/tlscert"
	"github.com/merveilles/hearth/templates/nginx"
	"github.com/merveilles/hearth/templates/nginx/nginxtest"
)

type staticResolver map[string]string

func (r staticResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	ip, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []net.IPAddr{{IP: net.ParseIP(ip)}}, nil
}

func servedLeaf(t *testing.T, addr, name string) *x509.Certificate {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// The whole path against a real CA (Pebble) and a real nginx: while DNS
// points elsewhere nothing is asked; once it points here, the HTTP-01
// challenge goes through nginx to hearth's handler, the new certificate
// lands in the shared files, hearth's own TLS holder reloads it and nginx,
// reloaded as the path unit would, serves it.
func TestIssueThroughNginxWithPebble(t *testing.T) {
	dir := t.TempDir()
	ports := nginxtest.FreePorts(t, 3)
	p80, p443, hearthHTTP := nginxtest.Listen(ports[0]), nginxtest.Listen(ports[1]), nginxtest.Listen(ports[2])
	// Pebble resolves every name to 127.0.0.1 and validates HTTP-01 on
	// our nginx's port 80.
	ca := pebbletest.Start(t, ports[0])

	names := []string{"chat.example.org", "share.chat.example.org", "rooms.chat.example.org"}
	tlsDir := filepath.Join(dir, "tls")
	certFile, keyFile := filepath.Join(tlsDir, "fullchain.pem"), filepath.Join(tlsDir, "key.pem")
	var hearthCerts *tlscert.Holder
	reloads := 0
	resolver := staticResolver{}
	m, err := certs.New(certs.Config{
		Names: names, Email: "admin@example.org",
		Directory: ca.Directory, Roots: ca.Roots,
		StorageDir: filepath.Join(dir, "acme"), CertFile: certFile, KeyFile: keyFile,
		HTTPAddr: hearthHTTP, Resolver: resolver, ProbePort: ports[0],
		OnRenew: func() error { reloads++; return hearthCerts.Reload() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.EnsureFiles(); err != nil {
		t.Fatal(err)
	}
	hearthCerts, err = tlscert.Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}

	// hearth's HTTP port: challenges, and a 404 for the rest.
	ln, err := net.Listen("tcp", hearthHTTP)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: m.Handler(http.NotFoundHandler())}
	go srv.Serve(ln)
	defer srv.Close()

	ng := nginxtest.New(t)
	files, err := nginx.Render(nginx.Params{
		Domain: names[0], Upstream: hearthHTTP, CertFile: certFile, KeyFile: keyFile,
		UploadLimit: 1 << 20, ListenHTTP: []string{p80}, ListenHTTPS: []string{p443},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		os.WriteFile(filepath.Join(ng.ConfD, f.Name), f.Content, 0o644)
	}
	ng.Start(t, p443)
	if leaf := servedLeaf(t, p443, names[0]); !strings.Contains(leaf.Subject.String(), "hearth self-signed") {
		t.Fatalf("nginx starts with %s, want the self-signed certificate", leaf.Subject)
	}

	// DNS points elsewhere: no order, the self-signed files stay.
	before, _ := os.ReadFile(certFile)
	// (127.0.0.2 is not an interface address, and nothing answers there.)
	resolver[names[0]], resolver[names[1]], resolver[names[2]] = "127.0.0.1", "127.0.0.2", "127.0.0.1"
	changed, err := m.Renew(context.Background())
	if !errors.Is(err, certs.ErrDNSNotHere) || changed {
		t.Fatalf("Renew with DNS elsewhere: changed=%v err=%v", changed, err)
	}
	if after, _ := os.ReadFile(certFile); string(after) != string(before) {
		t.Fatal("the certificate changed although DNS points elsewhere")
	}

	// DNS points here: issued through nginx.
	resolver[names[1]] = "127.0.0.1"
	changed, err = m.Renew(context.Background())
	if err != nil || !changed {
		t.Fatalf("Renew: changed=%v err=%v\nnginx: %s", changed, err, ng.ErrorLog())
	}
	fileLeaf, err := certs.ReadLeaf(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fileLeaf.Issuer.CommonName, "Pebble") {
		t.Errorf("issued by %q, want Pebble", fileLeaf.Issuer)
	}
	for _, n := range names {
		if err := fileLeaf.VerifyHostname(n); err != nil {
			t.Errorf("issued certificate: %v", err)
		}
	}
	// hearth's own ports.
	if hl, err := hearthCerts.Leaf(); err != nil || reloads != 1 || hl.SerialNumber.Cmp(fileLeaf.SerialNumber) != 0 {
		t.Errorf("hearth serves serial %v after %d reloads, want %v (%v)", hl.SerialNumber, reloads, fileLeaf.SerialNumber, err)
	}
	// nginx, reloaded as the path unit does.
	if err := ng.Reload(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		leaf := servedLeaf(t, p443, names[1])
		if leaf.SerialNumber.Cmp(fileLeaf.SerialNumber) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx still serves %s", leaf.Subject)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, err := m.Current(time.Now())
	if err != nil || st.SelfSigned || st.Due || len(st.Missing) > 0 {
		t.Errorf("status after issuance: %+v, %v", st, err)
	}
	// Not due: no second order.
	if changed, err := m.Renew(context.Background()); changed || err != nil {
		t.Errorf("second Renew: changed=%v err=%v", changed, err)
	}
}
