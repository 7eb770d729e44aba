package xmpp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/sasl"
)

// Namespaces of stream negotiation.
const (
	NSTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
	NSSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	NSBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	NSSession = "urn:ietf:params:xml:ns:xmpp-session"
)

// Server accepts client streams (c2s) and hands bound sessions to the
// router.
type Server struct {
	// cfg is the live configuration: Reload swaps it, and everything that
	// may change without a restart reads it at use time.
	cfg      *atomic.Pointer[config.Config]
	router   *Router
	host     *Host
	tls      *tls.Config
	sasl     *sasl.Server
	throttle *authThrottle
	log      *slog.Logger

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
	closing   bool
}

// NewServer builds the c2s server. tlsConf must hold the certificate (its
// GetCertificate may reload it).
func NewServer(cfg *config.Config, st store.Store, tlsConf *tls.Config, log *slog.Logger) *Server {
	r := NewRouter(cfg.Domain, st, log)
	live := new(atomic.Pointer[config.Config])
	live.Store(cfg)
	s := &Server{
		cfg:    live,
		router: r,
		host:   &Host{r: r, Store: st, Log: log, cfg: live},
		tls:    tlsConf,
		log:    log,
		conns:  make(map[net.Conn]struct{}),
		throttle: newAuthThrottle(cfg.Auth.FailuresPerIP, cfg.Auth.FailuresPerAccount,
			cfg.Auth.FailureWindow.D()),
	}
	s.sasl = sasl.NewServer(cfg.Domain, st.GetAccount, cfg.Auth.ScramIterations)
	return s
}

// Config is the live configuration.
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// Reload makes cfg the live configuration and fires "config/reloaded".
// The caller decides what may change: the domain and anything bound at
// start (listeners, storage, TLS files) must be carried over unchanged.
// Settings read at use time take effect at once; sessions already bound
// keep the output limits they started with.
func (s *Server) Reload(ctx context.Context, cfg *config.Config) {
	s.cfg.Store(cfg)
	s.throttle.configure(cfg.Auth.FailuresPerIP, cfg.Auth.FailuresPerAccount, cfg.Auth.FailureWindow.D())
	s.router.Fire(ctx, "config/reloaded", &Event{})
}

// Host returns the module-facing host.
func (s *Server) Host() *Host { return s.host }

// Router returns the router.
func (s *Server) Router() *Router { return s.router }

// Register adds feature modules in order.
func (s *Server) Register(mods ...Module) error {
	for _, m := range mods {
		h := &Host{r: s.router, Store: s.host.Store, Log: s.log.With("module", m.Name()), cfg: s.cfg}
		if err := m.Register(h); err != nil {
			return fmt.Errorf("module %s: %w", m.Name(), err)
		}
	}
	return nil
}

// Serve accepts connections on ln until it is closed. With directTLS the
// TLS handshake comes first (XEP-0368).
func (s *Server) Serve(ctx context.Context, ln net.Listener, directTLS bool) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off, keep serving.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			s.log.Warn("accept failed", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !s.track(c) {
			c.Close()
			return nil
		}
		s.wg.Add(1)
		go func() {
			cn, sess := s.negotiateConn(ctx, c, directTLS)
			if sess == nil {
				s.untrack(c)
				s.wg.Done()
				return
			}
			// The session reads on a fresh goroutine: negotiation (TLS
			// handshake, SASL) grew this one's stack, and a new goroutine
			// starts small, which is what an idle session should cost.
			go s.sessionGoroutine(ctx, cn, sess)
		}()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting, ends every stream with system-shutdown and
// waits for the connections to finish (or ctx to expire).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	var unbound []net.Conn
	s.mu.Unlock()
	// Modules holding sessions without a connection (stream management
	// waiting for resumption) end them while the store is still open.
	s.router.Fire(ctx, "server/shutdown", &Event{})
	for _, sess := range s.router.AllSessions() {
		sess.Close(&StreamError{Condition: "system-shutdown", Text: "the server is shutting down"})
	}
	// Connections still negotiating are simply closed.
	s.mu.Lock()
	for c := range s.conns {
		unbound = append(unbound, c)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(3 * time.Second):
		for _, c := range unbound {
			c.Close()
		}
	case <-ctx.Done():
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// conn is the state of one connection during negotiation.
type conn struct {
	srv     *Server
	raw     net.Conn
	netConn net.Conn // raw, or the TLS connection over it
	// tlsRaw is raw as the TLS layer sees it: it tells the session when
	// TLS is about to read from the socket (nil without TLS).
	tlsRaw *socketReads
	batch  *outBatch // the session's output batch, once it is bound
	br     *pooledReader
	brConn net.Conn // what br reads from
	dec    *elem.Decoder
	rate   rateLimiter
	secure bool
	// headerDue: the client's header was read for a new stream but ours
	// is not sent yet.
	headerDue bool
	user      string // authenticated localpart
	ip        string
	id        string
	// streamOpen re-creates the client's stream header (its namespace
	// declarations) so a decoder can be rebuilt after hibernation.
	streamOpen string
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sessionGoroutine is kept tiny on purpose: setup and teardown are their
// own calls, and there are no defers, so that little is on the stack while
// the session waits, idle, and the GC can shrink the stack to its minimum.
// (A panic here ends the process anyway.)
func (s *Server) sessionGoroutine(ctx context.Context, c *conn, sess *Session) {
	s.startSession(ctx, c, sess)
	err := s.readLoop(ctx, c, sess)
	s.endSession(ctx, sess, err)
	s.untrack(c.raw)
	s.wg.Done()
}

// negotiateConn runs a new connection up to a bound session; on failure it
// closes the connection and returns a nil session.
func (s *Server) negotiateConn(ctx context.Context, raw net.Conn, directTLS bool) (*conn, *Session) {
	c := &conn{srv: s, raw: raw, netConn: raw}
	cfg := s.Config()
	c.rate = newRateLimiter(cfg.Limits.ReadBytesPerSecond, cfg.Limits.ReadBurstBytes)
	c.ip, _, _ = net.SplitHostPort(raw.RemoteAddr().String())
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetKeepAlive(true)
		_ = tc.SetKeepAlivePeriod(2 * time.Minute)
	}
	// Everything before binding must finish within the auth timeout.
	_ = raw.SetDeadline(time.Now().Add(cfg.Limits.AuthTimeout.D()))
	if directTLS {
		c.tlsRaw = &socketReads{Conn: raw}
		tc := tls.Server(c.tlsRaw, s.directTLSConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			s.log.Debug("direct TLS handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
			raw.Close()
			return nil, nil
		}
		c.netConn, c.secure = tc, true
	}
	sess, err := c.negotiate(ctx)
	if err != nil {
		c.fail(err)
		return nil, nil
	}
	return c, sess
}

func (s *Server) directTLSConfig() *tls.Config {
	t := s.tls.Clone()
	t.NextProtos = []string{"xmpp-client"}
	return t
}

// fail ends a connection that never became a session.
func (c *conn) fail(err error) {
	var se *StreamError
	if errors.As(err, &se) {
		_ = c.netConn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		var b strings.Builder
		if c.headerDue {
			// RFC 6120 4.9.1.1: a stream error goes inside a stream, so the
			// header comes first even when the client's was unreadable.
			b.WriteString(c.header())
		}
		se.element().WriteTo(&b, "")
		b.WriteString("</stream:stream>")
		_, _ = io.WriteString(c.netConn, b.String())
	}
	c.srv.log.Debug("connection ended before binding", "remote", c.raw.RemoteAddr().String(), "err", err)
	closeWrite(c.netConn)
	// Read what the peer still sends (the rest of an oversized stanza, say)
	// for a moment, so that closing does not reset the connection and make
	// the peer lose the stream error before reading it.
	_ = c.raw.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(c.raw, 1<<20))
	c.raw.Close()
}

// readElement reads the next element under the connection's rate limit:
// over the limit it waits, which slows the peer through TCP backpressure
// without dropping anything.
func (c *conn) readElement(ctx context.Context) (*elem.Element, error) {
	e, err := c.dec.ReadElement()
	if err != nil {
		return nil, err
	}
	if d := c.rate.take(c.dec.Consumed()); d > 0 {
		if c.batch.hold(d) {
			c.batch.release()
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return e, nil
}

// Element counts per stanza. Negotiation needs a handful; the largest
// stanzas clients send (bookmarks, a vCard, a MUC member list) hold a few
// thousand elements at most.
const (
	maxNodesPreAuth = 64
	maxNodes        = 20000
)

func (c *conn) preauthLimits() elem.Limits {
	l := &c.srv.Config().Limits
	return elem.Limits{MaxBytes: l.MaxStanzaBytesPreAuth, MaxDepth: min(16, l.MaxDepth), MaxNodes: maxNodesPreAuth}
}

func (c *conn) limits() elem.Limits {
	l := &c.srv.Config().Limits
	return elem.Limits{MaxBytes: l.MaxStanzaBytes, MaxDepth: l.MaxDepth, MaxNodes: maxNodes}
}

func (c *conn) write(s string) error {
	_, err := io.WriteString(c.netConn, s)
	return err
}

func (c *conn) writeEl(e *elem.Element) error {
	var b strings.Builder
	e.WriteTo(&b, elem.NSClient)
	return c.write(b.String())
}

// openStream reads the client's stream header and answers with ours. Errors
// after our header is out are stream errors, as RFC 6120 4.9.1.1 requires.
func (c *conn) openStream() error {
	lim := c.preauthLimits()
	if c.user != "" {
		lim = c.limits()
	}
	if c.brConn != c.netConn {
		// Only a new connection (TLS) gets a new buffer: after SASL the
		// client may already have sent its next stream header.
		c.br = newPooledReader(c.netConn)
		c.brConn = c.netConn
	}
	c.dec = elem.NewDecoder(c.br, lim)
	c.id = randomID()
	c.headerDue = true
	hdr, err := c.dec.ReadHeader()
	if err != nil {
		// fail sends our header before the error, with a fresh deadline:
		// when the auth deadline is what ended the read, it has passed for
		// writes too.
		return readError(err)
	}
	c.headerDue = false
	if err := c.write(c.header()); err != nil {
		return err
	}
	if hdr.Name.Space != elem.NSStream || hdr.Name.Local != "stream" {
		return &StreamError{Condition: "invalid-namespace", Text: "expected a stream:stream element"}
	}
	var to, version, defaultNS string
	for _, a := range hdr.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "to":
			to = a.Value
		case a.Name.Space == "" && a.Name.Local == "version":
			version = a.Value
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			defaultNS = a.Value
		}
	}
	if defaultNS != elem.NSClient {
		return &StreamError{Condition: "invalid-namespace", Text: "the default namespace must be jabber:client"}
	}
	if !strings.EqualFold(to, c.srv.router.domain) {
		return &StreamError{Condition: "host-unknown", Text: "this server serves " + c.srv.router.domain}
	}
	if !strings.HasPrefix(version, "1.") {
		return &StreamError{Condition: "unsupported-version", Text: "this server speaks XMPP 1.0"}
	}
	// The 'from' a client claims in its header is deliberately ignored: the
	// identity comes from SASL alone (mellium's BindResource trusts it).
	c.streamOpen = streamOpenTag(hdr)
	return nil
}

var attrEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", "'", "&apos;", `"`, "&quot;")

// streamOpenTag rebuilds a stream's opening tag with only its namespace
// declarations: all a new decoder needs to read the stanzas that follow.
func streamOpenTag(hdr xml.StartElement) string {
	var b strings.Builder
	b.WriteString("<stream:stream")
	for _, a := range hdr.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			b.WriteString(" xmlns='" + attrEscaper.Replace(a.Value) + "'")
		case a.Name.Space == "xmlns":
			b.WriteString(" xmlns:" + a.Name.Local + "='" + attrEscaper.Replace(a.Value) + "'")
		}
	}
	b.WriteString(">")
	return b.String()
}

// header is the server's stream header (RFC 6120 4.7).
func (c *conn) header() string {
	return "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='" +
		c.id + "' from='" + c.srv.router.domain + "' version='1.0' xml:lang='en'>"
}

// readError maps a decoder error to the stream error to send, if any.
func readError(err error) error {
	var se *StreamError
	var syn *xml.SyntaxError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, context.Canceled):
		return &StreamError{Condition: "system-shutdown", Text: "the server is shutting down"}
	case errors.Is(err, elem.ErrTooBig):
		return &StreamError{Condition: "policy-violation", Text: "stanza too large"}
	case errors.Is(err, elem.ErrTooDeep):
		return &StreamError{Condition: "policy-violation", Text: "elements nested too deeply"}
	case errors.Is(err, elem.ErrRestricted):
		return &StreamError{Condition: "restricted-xml", Text: "comments, processing instructions, DTDs and entities are not allowed"}
	case errors.Is(err, elem.ErrBadFormat):
		return &StreamError{Condition: "bad-format"}
	case errors.Is(err, elem.ErrUnsupportedEncoding):
		return &StreamError{Condition: "unsupported-encoding", Text: "only UTF-8 is supported"}
	case errors.Is(err, elem.ErrNotWellFormed):
		return &StreamError{Condition: "not-well-formed", Text: strings.TrimPrefix(err.Error(), elem.ErrNotWellFormed.Error()+": ")}
	case errors.Is(err, elem.ErrStreamClosed), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrUnexpectedEOF):
		return err
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return &StreamError{Condition: "connection-timeout"}
	case errors.As(err, &syn):
		return &StreamError{Condition: "not-well-formed", Text: syn.Msg}
	}
	if strings.Contains(err.Error(), "connection reset") {
		return err
	}
	return &StreamError{Condition: "not-well-formed"}
}

func (c *conn) features(children ...*elem.Element) error {
	var b strings.Builder
	b.WriteString("<stream:features>")
	for _, ch := range children {
		ch.WriteTo(&b, elem.NSClient)
	}
	b.WriteString("</stream:features>")
	return c.write(b.String())
}

// negotiate runs STARTTLS, SASL and resource binding (RFC 6120 5-7).
func (c *conn) negotiate(ctx context.Context) (*Session, error) {
	for {
		if err := c.openStream(); err != nil {
			return nil, err
		}
		switch {
		case !c.secure:
			tlsF := elem.New(NSTLS, "starttls").Add(elem.New(NSTLS, "required"))
			if err := c.features(tlsF); err != nil {
				return nil, err
			}
			if err := c.startTLS(ctx); err != nil {
				return nil, err
			}
		case c.user == "":
			mechs := elem.New(NSSASL, "mechanisms")
			for _, m := range sasl.Mechanisms {
				mechs.Add(elem.New(NSSASL, "mechanism").AddText(m))
			}
			if err := c.features(mechs); err != nil {
				return nil, err
			}
			if err := c.authenticate(ctx); err != nil {
				return nil, err
			}
		default:
			return c.bind(ctx)
		}
	}
}

func (c *conn) startTLS(ctx context.Context) error {
	e, err := c.readElement(ctx)
	if err != nil {
		return readError(err)
	}
	if e.Name.Space != NSTLS || e.Name.Local != "starttls" {
		return &StreamError{Condition: "policy-violation", Text: "STARTTLS is required before anything else"}
	}
	if c.br.Buffered() > 0 {
		// Bytes sent before <proceed/> would be trusted as if encrypted.
		return &StreamError{Condition: "policy-violation", Text: "data sent before the TLS handshake"}
	}
	if err := c.write("<proceed xmlns='" + NSTLS + "'/>"); err != nil {
		return err
	}
	c.tlsRaw = &socketReads{Conn: c.raw}
	tc := tls.Server(c.tlsRaw, c.srv.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	c.netConn, c.secure = tc, true
	return nil
}

func saslFailure(cond, text string) string {
	f := elem.New(NSSASL, "failure").Add(elem.New(NSSASL, cond))
	if text != "" {
		t := elem.New(NSSASL, "text")
		t.Attr = append(t.Attr, xmlLang("en"))
		f.Add(t.AddText(text))
	}
	return f.String()
}

const maxSASLAttempts = 5

// errAborted is the client's <abort/> in the middle of an exchange.
var errAborted = errors.New("aborted")

// saslFailure reports whether err ends one SASL attempt (the stream goes
// on) rather than the connection.
func isSASLFailure(err error) bool {
	var throttled errThrottled
	for _, e := range []error{sasl.ErrNotAuthorized, sasl.ErrMalformed, sasl.ErrInvalidAuthzid,
		sasl.ErrAccountDisabled, sasl.ErrInvalidMech, errAborted} {
		if errors.Is(err, e) {
			return true
		}
	}
	return errors.As(err, &throttled)
}

// authenticate runs SASL exchanges until one succeeds, the client gives up
// or too many fail.
func (c *conn) authenticate(ctx context.Context) error {
	throttle := c.srv.throttle
	for attempt := 0; ; attempt++ {
		if attempt >= maxSASLAttempts {
			return &StreamError{Condition: "policy-violation", Text: "too many failed authentication attempts"}
		}
		e, err := c.readElement(ctx)
		if err != nil {
			return readError(err)
		}
		if e.Name.Space != NSSASL || e.Name.Local != "auth" {
			if e.Name.Space == NSSASL && e.Name.Local == "abort" {
				if err := c.write(saslFailure("aborted", "")); err != nil {
					return err
				}
				continue
			}
			return &StreamError{Condition: "not-authorized", Text: "authenticate first"}
		}
		if wait := throttle.CheckIP(c.ip); wait > 0 {
			if err := c.write(saslFailure("temporary-auth-failure", fmt.Sprintf("too many failed logins from your address; try again in %d seconds", int(wait.Seconds())+1))); err != nil {
				return err
			}
			continue
		}
		user, err := c.saslExchange(ctx, e)
		if err == nil {
			throttle.Succeed(c.ip, user)
			c.user = user
			return nil
		}
		if !isSASLFailure(err) {
			return err
		}
		var throttled errThrottled
		if !errors.As(err, &throttled) && !errors.Is(err, sasl.ErrAccountDisabled) && !errors.Is(err, errAborted) {
			throttle.Fail(c.ip, user)
		}
		cond, text := "not-authorized", ""
		switch {
		case errors.As(err, &throttled):
			cond, text = "temporary-auth-failure", throttled.Error()
		case errors.Is(err, sasl.ErrNotAuthorized):
			text = "wrong username or password"
		case errors.Is(err, sasl.ErrAccountDisabled):
			cond, text = "account-disabled", "this account is disabled; ask an admin"
		case errors.Is(err, sasl.ErrInvalidMech):
			cond, text = "invalid-mechanism", "supported: "+strings.Join(sasl.Mechanisms, ", ")
		case errors.Is(err, sasl.ErrInvalidAuthzid):
			cond = "invalid-authzid"
		case errors.Is(err, sasl.ErrMalformed):
			cond = "malformed-request"
		case errors.Is(err, errAborted):
			cond = "aborted"
		}
		if err := c.write(saslFailure(cond, text)); err != nil {
			return err
		}
	}
}

type errThrottled struct {
	wait        time.Duration
	accountWide bool
}

func (e errThrottled) Error() string {
	secs := int(e.wait.Seconds()) + 1
	if e.accountWide {
		return fmt.Sprintf("too many failed logins for this account from many addresses; try again in %d seconds, or from an address you have logged in from before", secs)
	}
	return fmt.Sprintf("too many failed logins for this account from your address; try again in %d seconds", secs)
}

func decodeSASL(e *elem.Element) ([]byte, error) {
	t := strings.TrimSpace(e.Text())
	if t == "" || t == "=" {
		return nil, nil
	}
	return base64.StdEncoding.DecodeString(t)
}

// saslExchange runs one SASL exchange. It returns the username tried (when
// known) with nil on success, a SASL failure (see isSASLFailure), or an
// error that ends the connection.
func (c *conn) saslExchange(ctx context.Context, auth *elem.Element) (string, error) {
	// Per-account throttling runs once the name is known and before any
	// password work, so a throttled guess costs nothing and tells nothing.
	gate := func(user string) error {
		if wait, accountWide := c.srv.throttle.CheckAccount(c.ip, user); wait > 0 {
			return errThrottled{wait: wait, accountWide: accountWide}
		}
		return nil
	}
	x, err := c.srv.sasl.Start(ctx, auth.Get("mechanism"), gate)
	if err != nil {
		return "", err
	}
	in, err := decodeSASL(auth)
	if err != nil {
		return "", sasl.ErrMalformed
	}
	if strings.TrimSpace(auth.Text()) == "" {
		// No initial response: ask for it with an empty challenge.
		if err := c.write("<challenge xmlns='" + NSSASL + "'/>"); err != nil {
			return "", err
		}
		if in, err = c.readResponse(ctx); err != nil {
			return "", err
		}
	}
	for {
		out, done, err := x.Step(in)
		if err != nil {
			return x.Username(), err
		}
		if done {
			s := "<success xmlns='" + NSSASL + "'/>"
			if len(out) > 0 {
				s = "<success xmlns='" + NSSASL + "'>" + base64.StdEncoding.EncodeToString(out) + "</success>"
			}
			return x.Username(), c.write(s)
		}
		if err := c.write("<challenge xmlns='" + NSSASL + "'>" + base64.StdEncoding.EncodeToString(out) + "</challenge>"); err != nil {
			return "", err
		}
		if in, err = c.readResponse(ctx); err != nil {
			return x.Username(), err
		}
	}
}

func (c *conn) readResponse(ctx context.Context) ([]byte, error) {
	e, err := c.readElement(ctx)
	if err != nil {
		return nil, readError(err)
	}
	if e.Name.Space == NSSASL && e.Name.Local == "abort" {
		return nil, errAborted
	}
	if e.Name.Space != NSSASL || e.Name.Local != "response" {
		return nil, &StreamError{Condition: "not-authorized", Text: "expected a SASL response"}
	}
	in, err := decodeSASL(e)
	if err != nil {
		return nil, sasl.ErrMalformed
	}
	return in, nil
}

// bind offers resource binding and binds the authenticated account. The
// JID bound is always the SASL identity, never anything the client claims.
func (c *conn) bind(ctx context.Context) (*Session, error) {
	fs := []*elem.Element{
		elem.New(NSBind, "bind"),
		elem.New(NSSession, "session").Add(elem.New(NSSession, "optional")),
	}
	fs = append(fs, c.srv.router.streamFeaturesFor(nil)...)
	if err := c.features(fs...); err != nil {
		return nil, err
	}
	for {
		e, err := c.readElement(ctx)
		if err != nil {
			return nil, readError(err)
		}
		if r := c.srv.router.resumer(e.Name.Space); r != nil {
			// Stream resumption (XEP-0198) instead of binding: the new
			// connection takes over an earlier session of this account.
			prev, reply := r.Resume(ctx, c.user, e)
			if prev == nil {
				if err := c.writeEl(reply); err != nil {
					return nil, err
				}
				continue
			}
			sess := newSession(prev.JID(), c.netConn, &c.srv.Config().Limits)
			sess.filters = c.srv.router.outboundFilters()
			sess.raw = c.raw
			sess.resumes, sess.resumeNS = prev, e.Name.Space
			return sess, nil
		}
		if e.Name.Space != elem.NSClient || e.Name.Local != "iq" {
			return nil, &StreamError{Condition: "not-authorized", Text: "bind a resource first"}
		}
		b := e.Child(NSBind, "bind")
		if e.Get("type") != "set" || b == nil {
			reply := ErrorReply(e, &StanzaError{Type: "auth", Condition: "not-authorized", Text: "bind a resource first"})
			if err := c.writeEl(reply); err != nil {
				return nil, err
			}
			continue
		}
		res := strings.TrimSpace(b.ChildText(NSBind, "resource"))
		if res == "" {
			res = "hearth-" + randomID()[:8]
		}
		full, err := jid.New(c.user, c.srv.router.domain, res)
		if err != nil {
			if err := c.writeEl(ErrorReply(e, ErrBadRequest("the resource is not valid: "+err.Error()))); err != nil {
				return nil, err
			}
			continue
		}
		if n := len(c.srv.router.Sessions(c.user)); n >= c.srv.Config().Limits.MaxSessionsPerAccount && c.srv.router.Session(full) == nil {
			se := &StanzaError{Type: "wait", Condition: "resource-constraint", Text: fmt.Sprintf("this account already has %d sessions", n)}
			if err := c.writeEl(ErrorReply(e, se)); err != nil {
				return nil, err
			}
			continue
		}
		sess := newSession(full, c.netConn, &c.srv.Config().Limits)
		sess.filters = c.srv.router.outboundFilters()
		sess.raw = c.raw
		reply := ResultReply(e, elem.New(NSBind, "bind").Add(elem.New(NSBind, "jid").AddText(full.String())))
		reply.Set("from", "")
		reply.Set("to", "")
		// Queued, not written: runSession releases it once the router
		// knows the session.
		if err := sess.Send(ctx, reply); err != nil {
			return nil, err
		}
		return sess, nil
	}
}
