package xmpp_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/servertest"
)

// TLS 1.0 and 1.1 are refused on both client ports, STARTTLS and direct
// TLS; 1.2 and 1.3 are accepted and the stream goes on over them.
func TestTLSVersionsOnBothPorts(t *testing.T) {
	s := servertest.Start(t)
	for _, tc := range []struct {
		name    string
		version uint16
		ok      bool
	}{
		{"TLS 1.0", tls.VersionTLS10, false},
		{"TLS 1.1", tls.VersionTLS11, false},
		{"TLS 1.2", tls.VersionTLS12, true},
		{"TLS 1.3", tls.VersionTLS13, true},
	} {
		for _, direct := range []bool{false, true} {
			port := "STARTTLS"
			if direct {
				port = "direct TLS"
			}
			t.Run(tc.name+" "+port, func(t *testing.T) {
				// The client offers exactly one version, so the server
				// cannot fall back to a newer one.
				cfg := servertest.TLSConfig()
				cfg.MinVersion, cfg.MaxVersion = tc.version, tc.version
				var conn *tls.Conn
				var err error
				if direct {
					cfg.NextProtos = []string{"xmpp-client"}
					conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.DirectAddr, cfg)
				} else {
					r := servertest.DialRaw(t, s.Addr)
					r.Write(servertest.Header(""))
					r.ReadUntil("</stream:features>")
					r.Write("<starttls xmlns='" + nsTLS + "'/>")
					r.ReadUntil("<proceed")
					_ = r.Conn.SetDeadline(time.Now().Add(5 * time.Second))
					conn = tls.Client(r.Conn, cfg)
					err = conn.Handshake()
				}
				if !tc.ok {
					if err == nil {
						conn.Close()
						t.Fatalf("handshake with %s succeeded (negotiated %s)", tc.name, tls.VersionName(conn.ConnectionState().Version))
					}
					// The refusal must be about the version, not some
					// other failure that would hide an accepted 1.0.
					if !strings.Contains(err.Error(), "protocol version") {
						t.Fatalf("handshake with %s failed, but not for its version: %v", tc.name, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("handshake with %s: %v", tc.name, err)
				}
				defer conn.Close()
				if got := conn.ConnectionState().Version; got != tc.version {
					t.Fatalf("negotiated %s, want %s", tls.VersionName(got), tc.name)
				}
				// The stream restarts over the new layer and offers SASL.
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := conn.Write([]byte(servertest.Header(""))); err != nil {
					t.Fatal(err)
				}
				var got strings.Builder
				buf := make([]byte, 4096)
				for !strings.Contains(got.String(), "</stream:features>") {
					n, err := conn.Read(buf)
					got.Write(buf[:n])
					if err != nil {
						t.Fatalf("reading features over %s: %v; got %q", tc.name, err, got.String())
					}
				}
				if !strings.Contains(got.String(), "<mechanisms") {
					t.Fatalf("no SASL mechanisms over %s: %q", tc.name, got.String())
				}
			})
		}
	}
}
