package supervisor

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crypto/tls"

	"github.com/merveilles/hearth/server/certs/pebbletest"
)

// The daemon with ACME on: it starts on a self-signed certificate it
// writes itself, obtains one from the CA (Pebble) through its own HTTP
// port, and its XMPP ports serve the new one without a restart or SIGHUP.
func TestDaemonObtainsCertificate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ca := pebbletest.Start(t, httpPort)

	cfg := testConfig(t)
	cfg.TLS.SelfSigned = false
	cfg.TLS.CertFile = filepath.Join(cfg.DataDir, "tls", "fullchain.pem")
	cfg.TLS.KeyFile = filepath.Join(cfg.DataDir, "tls", "key.pem")
	cfg.Listen.HTTPPort = httpPort
	cfg.ACME.Enabled = true
	cfg.ACME.Directory = ca.Directory
	cfg.ACME.Names = []string{"localhost"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	inst, err := Start(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	inst.acmeRoots = ca.Roots
	if _, err := os.Stat(cfg.TLS.KeyFile); err != nil {
		t.Fatalf("Start wrote no first certificate: %v", err)
	}
	_, direct := inst.Addrs()
	issuer := func() string {
		d := &net.Dialer{Timeout: 10 * time.Second, Deadline: time.Now().Add(10 * time.Second)}
		c, err := tls.DialWithDialer(d, "tcp", direct[0].String(), &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Issuer.String()
	}
	first, err := os.ReadFile(cfg.TLS.CertFile)
	if err != nil || !strings.Contains(string(first), "CERTIFICATE") {
		t.Fatalf("first certificate: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inst.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(60 * time.Second)
	for got := issuer(); !strings.Contains(got, "Pebble"); got = issuer() {
		if time.Now().After(deadline) {
			t.Fatalf("the XMPP port still serves a certificate from %q", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
