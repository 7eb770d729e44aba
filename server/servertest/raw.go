package servertest

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Raw is a hand-driven client connection for tests that must send what no
// well-behaved library would: spoofed headers, malformed XML, floods.
type Raw struct {
	t    testing.TB
	Conn net.Conn
	got  strings.Builder
}

// DialRaw opens a TCP connection to addr.
func DialRaw(t testing.TB, addr string) *Raw {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Raw{t: t, Conn: c}
}

// Write sends raw bytes.
func (r *Raw) Write(s string) error {
	_ = r.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := r.Conn.Write([]byte(s))
	return err
}

// ReadUntil reads until the accumulated input contains substr (returning
// everything read so far) or the deadline passes (failing the test).
func (r *Raw) ReadUntil(substr string) string {
	r.t.Helper()
	s, err := r.ReadUntilErr(substr, 5*time.Second)
	if err != nil {
		r.t.Fatalf("waiting for %q: %v; got %q", substr, err, s)
	}
	return s
}

// ReadUntilErr is ReadUntil returning an error instead of failing.
func (r *Raw) ReadUntilErr(substr string, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	buf := make([]byte, 4096)
	for !strings.Contains(r.got.String(), substr) {
		_ = r.Conn.SetReadDeadline(deadline)
		n, err := r.Conn.Read(buf)
		r.got.Write(buf[:n])
		if err != nil {
			return r.got.String(), err
		}
	}
	out := r.got.String()
	i := strings.Index(out, substr) + len(substr)
	rest := out[i:]
	r.got.Reset()
	r.got.WriteString(rest)
	return out[:i], nil
}

// Header is a client stream header with an optional claimed 'from'.
func Header(from string) string {
	f := ""
	if from != "" {
		f = " from='" + from + "'"
	}
	return "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='" + Domain + "' version='1.0'" + f + ">"
}

// StartTLS negotiates STARTTLS on a fresh connection.
func (r *Raw) StartTLS(claimFrom string) {
	r.t.Helper()
	r.Write(Header(claimFrom))
	r.ReadUntil("</stream:features>")
	r.Write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	r.ReadUntil("<proceed")
	tc := tls.Client(r.Conn, TLSConfig())
	if err := tc.Handshake(); err != nil {
		r.t.Fatalf("TLS: %v", err)
	}
	r.Conn = tc
	r.got.Reset()
}

var jidRe = regexp.MustCompile(`<jid>([^<]+)</jid>`)

// Login runs STARTTLS, SASL PLAIN and binds resource, claiming claimFrom
// in every stream header. It returns the bound JID.
func (r *Raw) Login(user, password, resource, claimFrom string) string {
	r.t.Helper()
	r.StartTLS(claimFrom)
	r.Write(Header(claimFrom))
	r.ReadUntil("</stream:features>")
	auth := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	r.Write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + auth + "</auth>")
	r.ReadUntil("<success")
	r.Write(Header(claimFrom))
	r.ReadUntil("</stream:features>")
	r.Write(fmt.Sprintf("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>%s</resource></bind></iq>", resource))
	out := r.ReadUntil("</iq>")
	m := jidRe.FindStringSubmatch(out)
	if m == nil {
		r.t.Fatalf("bind failed: %s", out)
	}
	return m[1]
}
