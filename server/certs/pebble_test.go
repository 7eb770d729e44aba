package certs_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/certs"
	"github.com/merveilles/hearth/server/tlscert"
	"github.com/merveilles/hearth/templates/nginx"
	"github.com/merveilles/hearth/templates/nginx/nginxtest"
)

// startProc runs a child process until the test ends; it is stopped by
// its own PID.
func startProc(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(t.TempDir(), filepath.Base(name)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s output:\n%s", name, b)
		}
	})
}

func waitListen(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pebbleTLS makes the certificate Pebble's API serves and a pool that
// trusts it.
func pebbleTLS(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pebble test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "pebble-cert.pem"), filepath.Join(dir, "pebble-key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	leaf, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(leaf)
	return certFile, keyFile, pool
}

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
	if _, err := exec.LookPath("pebble"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("pebble is not installed (apt-get install pebble)")
		}
		t.Skip("pebble is not installed (apt-get install pebble)")
	}
	dir := t.TempDir()
	ports := nginxtest.FreePorts(t, 7)
	p80, p443, hearthHTTP := nginxtest.Listen(ports[0]), nginxtest.Listen(ports[1]), nginxtest.Listen(ports[2])
	dnsAddr, chalMgmt := nginxtest.Listen(ports[3]), nginxtest.Listen(ports[4])
	acmeAddr, acmeMgmt := nginxtest.Listen(ports[5]), nginxtest.Listen(ports[6])

	// Pebble resolves every name to 127.0.0.1 through its challenge test
	// server's DNS, and validates HTTP-01 on our nginx's port 80.
	startProc(t, nil, "pebble-challtestsrv", "-dns01", dnsAddr, "-http01", "", "-https01", "", "-tlsalpn01", "",
		"-management", chalMgmt, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	pcert, pkey, roots := pebbleTLS(t, dir)
	conf, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress": acmeAddr, "managementListenAddress": acmeMgmt,
		"certificate": pcert, "privateKey": pkey,
		"httpPort": ports[0], "tlsPort": ports[1],
	}})
	confFile := filepath.Join(dir, "pebble.json")
	os.WriteFile(confFile, conf, 0o644)
	startProc(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, "pebble", "-config", confFile, "-dnsserver", dnsAddr)
	waitListen(t, acmeAddr)

	names := []string{"chat.example.org", "share.chat.example.org", "rooms.chat.example.org"}
	tlsDir := filepath.Join(dir, "tls")
	certFile, keyFile := filepath.Join(tlsDir, "fullchain.pem"), filepath.Join(tlsDir, "key.pem")
	var hearthCerts *tlscert.Holder
	reloads := 0
	resolver := staticResolver{}
	m, err := certs.New(certs.Config{
		Names: names, Email: "admin@example.org",
		Directory: "https://" + acmeAddr + "/dir", Roots: roots,
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
