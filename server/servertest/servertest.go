// Package servertest starts a real hearth server in-process on loopback and
// connects real mellium clients to it, for feature tests.
package servertest

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server"
	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/elem"
	hsasl "github.com/merveilles/hearth/server/xmpp/sasl"
)

// Domain is the test server's domain.
const Domain = "localhost"

// Server is a running in-process hearth.
type Server struct {
	*server.Server
	Addr       string // STARTTLS
	DirectAddr string // direct TLS
	cancel     context.CancelFunc
	done       chan error
}

// Option changes the configuration before start.
type Option func(*config.Config)

// Start runs a server with a fresh data directory; it stops at test end.
// Unlike production, the E2EE policy is "off" unless an Option sets it.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := config.Default(Domain)
	cfg.DataDir = t.TempDir()
	cfg.TLS.SelfSigned = true
	cfg.Listen.Addresses = []string{"127.0.0.1"}
	cfg.Listen.C2SPort, cfg.Listen.TLSPort = 0, 0
	cfg.Auth.ScramIterations = 4096
	// Feature tests send plaintext one-to-one messages; the production
	// default ("required") would bounce them. Tests of the policy itself
	// ask for it with an Option.
	cfg.E2EE.Policy = "off"
	for _, o := range opts {
		o(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	level := slog.LevelWarn
	if os.Getenv("HEARTH_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	s, err := server.New(cfg, log)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	if err := s.Listen(); err != nil {
		t.Fatalf("listen: %v", err)
	}
	st, dt := s.Addrs()
	ctx, cancel := context.WithCancel(context.Background())
	ts := &Server{Server: s, Addr: st[0].String(), DirectAddr: dt[0].String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ctx) }()
	t.Cleanup(ts.Stop)
	return ts
}

// Stop shuts the server down and waits for it.
func (s *Server) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	<-s.done
}

// AddUser creates an account with a password.
func (s *Server) AddUser(t testing.TB, localpart, password string) {
	t.Helper()
	creds, err := hsasl.DeriveCredentials(localpart, password, s.Config.Auth.ScramIterations)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Store.CreateAccount(context.Background(), store.Account{Localpart: localpart, Role: store.RoleMember, Created: time.Now(), Scram: creds})
	if err != nil {
		t.Fatal(err)
	}
}

// Client is a logged-in mellium session whose incoming stanzas are
// collected for the test to inspect.
type Client struct {
	*xmpp.Session
	JID jid.JID
	t   testing.TB
	in  chan *elem.Element
	mu  sync.Mutex
	buf []*elem.Element
}

// TLSConfig trusts the test server's self-signed certificate.
func TLSConfig() *tls.Config {
	return &tls.Config{ServerName: Domain, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
}

// Dial logs in over STARTTLS with SCRAM-SHA-256 and binds resource.
func (s *Server) Dial(t testing.TB, localpart, password, resource string) *Client {
	t.Helper()
	c, err := s.DialErr(localpart, password, resource, false, sasl.ScramSha256)
	if err != nil {
		t.Fatalf("login %s: %v", localpart, err)
	}
	return s.wrap(t, c)
}

// DialDirect logs in over direct TLS (XEP-0368).
func (s *Server) DialDirect(t testing.TB, localpart, password, resource string) *Client {
	t.Helper()
	c, err := s.DialErr(localpart, password, resource, true, sasl.ScramSha256)
	if err != nil {
		t.Fatalf("login %s: %v", localpart, err)
	}
	return s.wrap(t, c)
}

// DialErr logs in and returns the error instead of failing the test.
func (s *Server) DialErr(localpart, password, resource string, direct bool, mech ...sasl.Mechanism) (*xmpp.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := localpart + "@" + Domain
	if resource != "" {
		addr += "/" + resource
	}
	origin := jid.MustParse(addr)
	var conn net.Conn
	var err error
	features := []xmpp.StreamFeature{xmpp.SASL("", password, mech...), xmpp.BindResource()}
	if direct {
		cfg := TLSConfig()
		cfg.NextProtos = []string{"xmpp-client"}
		conn, err = tls.Dial("tcp", s.DirectAddr, cfg)
	} else {
		conn, err = net.Dial("tcp", s.Addr)
		features = append([]xmpp.StreamFeature{xmpp.StartTLS(TLSConfig())}, features...)
	}
	if err != nil {
		return nil, err
	}
	sess, err := xmpp.NewClientSession(ctx, origin, conn, features...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return sess, nil
}

func (s *Server) wrap(t testing.TB, sess *xmpp.Session) *Client {
	c := &Client{Session: sess, JID: sess.LocalAddr(), t: t, in: make(chan *elem.Element, 1024)}
	go func() {
		_ = sess.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			e, err := ReadElement(r, *start)
			if err != nil {
				return err
			}
			c.in <- e
			return nil
		}))
		close(c.in)
	}()
	t.Cleanup(func() { sess.Close() })
	return c
}

// ReadElement reads the rest of an element whose start was already read.
func ReadElement(r xml.TokenReader, start xml.StartElement) (*elem.Element, error) {
	root := &elem.Element{Name: start.Name}
	for _, a := range start.Attr {
		if a.Name.Space != "xmlns" && a.Name.Local != "xmlns" {
			root.Attr = append(root.Attr, a)
		}
	}
	stack := []*elem.Element{root}
	for len(stack) > 0 {
		tok, err := r.Token()
		if err != nil {
			if err == io.EOF && len(stack) == 1 {
				return root, nil
			}
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := &elem.Element{Name: tok.Name}
			for _, a := range tok.Attr {
				if a.Name.Space != "xmlns" && a.Name.Local != "xmlns" {
					e.Attr = append(e.Attr, a)
				}
			}
			p := stack[len(stack)-1]
			p.Children = append(p.Children, e)
			stack = append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			stack[len(stack)-1].AddText(string(tok))
		}
	}
	return root, nil
}

// SendRaw writes raw XML (one or more stanzas) to the server.
func (c *Client) SendRaw(raw string) {
	c.t.Helper()
	d := xml.NewDecoder(strings.NewReader(raw))
	w := c.TokenWriter()
	defer w.Close()
	if _, err := xmlstream.Copy(w, d); err != nil {
		c.t.Fatalf("send: %v", err)
	}
	if err := w.Flush(); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// Send writes an element.
func (c *Client) Send(e *elem.Element) { c.t.Helper(); c.SendRaw(e.String()) }

// Expect waits for the first incoming element for which match is true;
// elements that do not match stay available for later Expects.
func (c *Client) Expect(match func(*elem.Element) bool) *elem.Element {
	c.t.Helper()
	if e := c.ExpectWithin(5*time.Second, match); e != nil {
		return e
	}
	c.t.Fatalf("%s: no matching stanza within 5s; received: %s", c.JID, c.Pending())
	return nil
}

// ExpectWithin is Expect with a timeout; it returns nil on timeout.
func (c *Client) ExpectWithin(d time.Duration, match func(*elem.Element) bool) *elem.Element {
	c.mu.Lock()
	for i, e := range c.buf {
		if match(e) {
			c.buf = append(c.buf[:i:i], c.buf[i+1:]...)
			c.mu.Unlock()
			return e
		}
	}
	c.mu.Unlock()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case e, ok := <-c.in:
			if !ok {
				return nil
			}
			if match(e) {
				return e
			}
			c.mu.Lock()
			c.buf = append(c.buf, e)
			c.mu.Unlock()
		case <-timer.C:
			return nil
		}
	}
}

// ExpectNone asserts that nothing matching arrives within d.
func (c *Client) ExpectNone(d time.Duration, match func(*elem.Element) bool) {
	c.t.Helper()
	if e := c.ExpectWithin(d, match); e != nil {
		c.t.Fatalf("%s: unexpected stanza %s", c.JID, e)
	}
}

// Pending lists what was received but not yet matched.
func (c *Client) Pending() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, e := range c.buf {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// IQ sends an IQ (raw XML, with an id attribute) and waits for its answer.
func (c *Client) IQ(raw string) *elem.Element {
	c.t.Helper()
	d := xml.NewDecoder(strings.NewReader(raw))
	tok, err := d.Token()
	if err != nil {
		c.t.Fatal(err)
	}
	var id string
	for _, a := range tok.(xml.StartElement).Attr {
		if a.Name.Local == "id" {
			id = a.Value
		}
	}
	if id == "" {
		c.t.Fatal("IQ needs an id")
	}
	c.SendRaw(raw)
	return c.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "iq" && e.Get("id") == id && (e.Get("type") == "result" || e.Get("type") == "error")
	})
}

// Matchers for Expect.

// IsKind matches messages, presence or iq by local name and type ("" any).
func IsKind(kind, typ string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		return e.Name.Local == kind && (typ == "" || e.Get("type") == typ)
	}
}

// From matches the 'from' attribute (bare or full, exact).
func From(kind, from string) func(*elem.Element) bool {
	return func(e *elem.Element) bool { return e.Name.Local == kind && e.Get("from") == from }
}

// ErrorCondition returns the stanza error condition of e, or "".
func ErrorCondition(e *elem.Element) string {
	er := e.Child("", "error")
	if er == nil {
		return ""
	}
	for _, c := range er.Elements() {
		if c.Name.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.Name.Local != "text" {
			return c.Name.Local
		}
	}
	return ""
}

// Must fails the test on error.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Sprintf is fmt.Sprintf, re-exported so tests read cleanly.
var Sprintf = fmt.Sprintf
