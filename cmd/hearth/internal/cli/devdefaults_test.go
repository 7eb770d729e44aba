package cli

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/servertest"
)

var listeningAddr = regexp.MustCompile(`msg=listening .*addr=(\S+)`)

// Without --bind, dev listens on 127.0.0.1 only: the log says so, and the
// same ports on every other local address refuse connections.
func TestDevListensOnLoopbackOnlyByDefault(t *testing.T) {
	d := startDev(t, dataDir(t))
	st, dt := d.inst.Addrs()
	if len(st) != 1 || len(dt) != 1 {
		t.Fatalf("listeners: STARTTLS %v, direct TLS %v; want one of each", st, dt)
	}
	ports := map[string]bool{}
	for _, a := range append(st, dt...) {
		host, port, err := net.SplitHostPort(a.String())
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("listening on %s, want 127.0.0.1", a)
		}
		ports[port] = true
	}

	logged := listeningAddr.FindAllStringSubmatch(d.stderr.String(), -1)
	if len(logged) != 2 {
		t.Fatalf("%d listen lines in the log, want 2:\n%s", len(logged), d.stderr)
	}
	for _, m := range logged {
		host, port, err := net.SplitHostPort(m[1])
		if err != nil || host != "127.0.0.1" || !ports[port] {
			t.Errorf("log says listening on %s, want 127.0.0.1 and one of the bound ports", m[1])
		}
	}

	// Other addresses of this machine: ::1 and 127.0.0.2 (loopback, but
	// not 127.0.0.1; both answer on Linux) and those of its interfaces.
	// A wildcard bind would accept on each of them.
	probes := []string{"::1", "127.0.0.2"}
	if ifAddrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifAddrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
				continue
			}
			probes = append(probes, ipn.IP.String())
		}
	}
	t.Logf("probing %v", probes)
	for port := range ports {
		// The probe must be able to succeed: the port answers on 127.0.0.1.
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 2*time.Second)
		if err != nil {
			t.Fatalf("port %s on 127.0.0.1: %v", port, err)
		}
		c.Close()
		for _, ip := range probes {
			addr := net.JoinHostPort(ip, port)
			if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
				c.Close()
				t.Errorf("%s accepted a connection; dev must listen on 127.0.0.1 only", addr)
			}
		}
	}
}

// The self-signed certificate made on first start is kept: a second start
// serves the same certificate on both ports, and the files are unchanged.
func TestDevKeepsItsSelfSignedCertificate(t *testing.T) {
	data := dataDir(t)
	d := startDev(t, data)
	certPEM := devFile(t, filepath.Join(data, "cert.pem"))
	keyPEM := devFile(t, filepath.Join(data, "key.pem"))
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("cert.pem holds no certificate: %q", certPEM)
	}
	first := servedCerts(t, d)
	for port, der := range first {
		if !bytes.Equal(der, block.Bytes) {
			t.Fatalf("%s serves %x, not the certificate in cert.pem (%x)", port, sha256.Sum256(der), sha256.Sum256(block.Bytes))
		}
	}
	d.stop(t)

	d2 := startDev(t, data)
	if got := devFile(t, filepath.Join(data, "cert.pem")); !bytes.Equal(got, certPEM) {
		t.Error("cert.pem changed across a restart")
	}
	if got := devFile(t, filepath.Join(data, "key.pem")); !bytes.Equal(got, keyPEM) {
		t.Error("key.pem changed across a restart")
	}
	for port, der := range servedCerts(t, d2) {
		if !bytes.Equal(der, block.Bytes) {
			t.Errorf("after a restart %s serves %x, first start served %x", port, sha256.Sum256(der), sha256.Sum256(block.Bytes))
		}
	}
}

// servedCerts returns the leaf certificate a TLS client sees on each port.
func servedCerts(t *testing.T, d *devRun) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}

	r := servertest.DialRaw(t, d.srv.Addr)
	r.StartTLS("")
	tc, ok := r.Conn.(*tls.Conn)
	if !ok {
		t.Fatalf("STARTTLS left a %T", r.Conn)
	}
	out["STARTTLS port"] = servedLeaf(t, tc)
	tc.Close()

	cfg := servertest.TLSConfig()
	cfg.NextProtos = []string{"xmpp-client"}
	dc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", d.srv.DirectAddr, cfg)
	if err != nil {
		t.Fatalf("direct TLS: %v", err)
	}
	out["direct TLS port"] = servedLeaf(t, dc)
	dc.Close()
	return out
}

func servedLeaf(t *testing.T, c *tls.Conn) []byte {
	t.Helper()
	certs := c.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		t.Fatal("no peer certificate")
	}
	return certs[0].Raw
}

func devFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
