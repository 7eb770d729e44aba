package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// target is where and how the tool connects.
type target struct {
	addr     string
	domain   string
	direct   bool
	mech     string
	password string
	tls      *tls.Config
	sources  []net.IP // local addresses to spread connections over
	timeout  time.Duration
	cache    *saltCache
}

// conn is one client stream. Writes are serialised by wmu so a reader
// goroutine and a sender may share it.
type conn struct {
	nc   net.Conn
	sc   *scanner
	wmu  sync.Mutex
	jid  string
	user string
}

func (c *conn) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write([]byte(s))
	return err
}

func (c *conn) writeBytes(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

// expect reads until a top-level element named name arrives, skipping
// unrelated stanzas. A stream error or stream close is an error.
func (c *conn) expect(name string) ([]byte, error) {
	for {
		kind, raw, err := c.sc.next()
		if err != nil {
			return nil, err
		}
		switch kind {
		case evClose:
			return nil, errors.New("server closed the stream")
		case evOpen:
			continue
		}
		n := elemName(raw)
		if string(n) == "stream:error" {
			return nil, fmt.Errorf("stream error: %s", raw)
		}
		if string(n) == name {
			return raw, nil
		}
	}
}

// expectIQ reads until the IQ answering id arrives; an error reply is
// returned as an error.
func (c *conn) expectIQ(id string) error {
	for {
		raw, err := c.expect("iq")
		if err != nil {
			return err
		}
		if string(attr(raw, "id")) != id {
			continue
		}
		if string(attr(raw, "type")) == "error" {
			return &iqError{raw: string(raw)}
		}
		return nil
	}
}

type iqError struct{ raw string }

func (e *iqError) Error() string { return "iq error: " + e.raw }

func (c *conn) openStream(domain string) error {
	if err := c.write("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='" + domain + "' version='1.0' xml:lang='en'>"); err != nil {
		return err
	}
	for {
		kind, raw, err := c.sc.next()
		if err != nil {
			return fmt.Errorf("reading stream header: %w", err)
		}
		switch kind {
		case evOpen:
			return nil
		case evClose:
			return errors.New("server closed the stream")
		}
		if string(elemName(raw)) == "stream:error" {
			return fmt.Errorf("stream error: %s", raw)
		}
	}
}

var dialCounter struct {
	sync.Mutex
	n int
}

func (t *target) dialer() *net.Dialer {
	d := &net.Dialer{Timeout: t.timeout}
	if len(t.sources) > 1 {
		dialCounter.Lock()
		ip := t.sources[dialCounter.n%len(t.sources)]
		dialCounter.n++
		dialCounter.Unlock()
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return d
}

// login connects and runs TLS, SASL and resource binding for user.
func (t *target) login(ctx context.Context, user, resource string) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	raw, err := t.dialer().DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c, err := t.negotiate(ctx, raw, user, resource)
	if err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

func (t *target) negotiate(ctx context.Context, raw net.Conn, user, resource string) (*conn, error) {
	c, _, err := t.authenticated(ctx, raw, user)
	if err != nil {
		return nil, err
	}
	if err := c.write("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + resource + "</resource></bind></iq>"); err != nil {
		return nil, err
	}
	for {
		r, err := c.expect("iq")
		if err != nil {
			return nil, err
		}
		if string(attr(r, "id")) != "bind" {
			continue
		}
		if string(attr(r, "type")) != "result" {
			return nil, fmt.Errorf("bind failed: %s", r)
		}
		i := bytes.Index(r, []byte("<jid>"))
		j := bytes.Index(r, []byte("</jid>"))
		if i < 0 || j < i {
			return nil, fmt.Errorf("bind result without jid: %s", r)
		}
		c.jid = string(r[i+5 : j])
		break
	}
	return c, nil
}

// dialAuthenticated connects and runs TLS and SASL up to the features of
// the restarted stream, where a client either binds or resumes.
func (t *target) dialAuthenticated(ctx context.Context, user string) (*conn, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	raw, err := t.dialer().DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	c, f, err := t.authenticated(ctx, raw, user)
	if err != nil {
		raw.Close()
		return nil, nil, err
	}
	return c, f, nil
}

// authenticated runs TLS and SASL on raw and returns the session with the
// features of the restarted stream.
func (t *target) authenticated(ctx context.Context, raw net.Conn, user string) (*conn, []byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	c := &conn{nc: raw, user: user}
	if t.direct {
		tc := tls.Client(raw, t.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, nil, fmt.Errorf("TLS: %w", err)
		}
		c.nc = tc
		c.sc = newScanner(tc, 2048)
	} else {
		c.sc = newScanner(raw, 2048)
		if err := c.openStream(t.domain); err != nil {
			return nil, nil, err
		}
		f, err := c.expect("stream:features")
		if err != nil {
			return nil, nil, err
		}
		if !bytes.Contains(f, []byte("<starttls")) {
			return nil, nil, errors.New("server offers no STARTTLS")
		}
		if err := c.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
			return nil, nil, err
		}
		if _, err := c.expect("proceed"); err != nil {
			return nil, nil, err
		}
		tc := tls.Client(raw, t.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, nil, fmt.Errorf("TLS: %w", err)
		}
		c.nc = tc
		c.sc = newScanner(tc, 2048)
	}
	if err := c.openStream(t.domain); err != nil {
		return nil, nil, err
	}
	f, err := c.expect("stream:features")
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Contains(f, []byte(">"+t.mech+"<")) {
		return nil, nil, fmt.Errorf("server does not offer %s: %s", t.mech, f)
	}
	if err := t.authenticate(c, user); err != nil {
		return nil, nil, err
	}
	c.sc = newScanner(c.nc, 2048)
	if err := c.openStream(t.domain); err != nil {
		return nil, nil, err
	}
	f, err = c.expect("stream:features")
	if err != nil {
		return nil, nil, err
	}
	return c, append([]byte(nil), f...), nil
}

func (t *target) authenticate(c *conn, user string) error {
	b64 := base64.StdEncoding
	if t.mech == "PLAIN" {
		msg := "\x00" + user + "\x00" + t.password
		if err := c.write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + b64.EncodeToString([]byte(msg)) + "</auth>"); err != nil {
			return err
		}
		return expectSuccess(c, nil)
	}
	sc, err := newScram(t.mech, user, t.password, t.cache)
	if err != nil {
		return err
	}
	if err := c.write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + t.mech + "'>" + b64.EncodeToString(sc.first()) + "</auth>"); err != nil {
		return err
	}
	ch, err := saslNext(c)
	if err != nil {
		return err
	}
	if string(elemName(ch)) != "challenge" {
		return fmt.Errorf("SASL: expected a challenge: %s", ch)
	}
	sf, err := b64.DecodeString(string(innerText(ch)))
	if err != nil {
		return fmt.Errorf("SASL: bad challenge: %w", err)
	}
	fin, err := sc.final(sf)
	if err != nil {
		return err
	}
	if err := c.write("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + b64.EncodeToString(fin) + "</response>"); err != nil {
		return err
	}
	return expectSuccess(c, sc)
}

func saslNext(c *conn) ([]byte, error) {
	for {
		kind, raw, err := c.sc.next()
		if err != nil {
			return nil, err
		}
		if kind != evElem {
			return nil, errors.New("SASL: stream ended")
		}
		switch string(elemName(raw)) {
		case "challenge", "success", "failure":
			return raw, nil
		case "stream:error":
			return nil, fmt.Errorf("stream error: %s", raw)
		}
	}
}

func expectSuccess(c *conn, sc *scramClient) error {
	r, err := saslNext(c)
	if err != nil {
		return err
	}
	if string(elemName(r)) != "success" {
		return fmt.Errorf("SASL failed: %s", r)
	}
	if sc != nil {
		fin, err := base64.StdEncoding.DecodeString(string(innerText(r)))
		if err != nil {
			return fmt.Errorf("SASL: bad success data: %w", err)
		}
		return sc.verify(fin)
	}
	return nil
}

// session runs what a client does right after binding: fetch the roster,
// send initial presence and ping the server, waiting for each answer. An
// error reply is soft (counted, the session goes on); anything else ends it.
func (c *conn) session(domain string) (soft int, err error) {
	if err := c.write("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>"); err != nil {
		return soft, err
	}
	var ie *iqError
	if err := c.expectIQ("roster"); errors.As(err, &ie) {
		soft++
	} else if err != nil {
		return soft, fmt.Errorf("roster: %w", err)
	}
	if err := c.write("<presence/><iq type='get' id='ping' to='" + domain + "'><ping xmlns='urn:xmpp:ping'/></iq>"); err != nil {
		return soft, err
	}
	if err := c.expectIQ("ping"); errors.As(err, &ie) {
		soft++
	} else if err != nil {
		return soft, fmt.Errorf("ping: %w", err)
	}
	return soft, nil
}

// ping checks that a held session still works.
func (c *conn) ping(domain string, n int, timeout time.Duration) error {
	id := "hold" + strconv.Itoa(n)
	_ = c.nc.SetDeadline(time.Now().Add(timeout))
	if err := c.write("<iq type='get' id='" + id + "' to='" + domain + "'><ping xmlns='urn:xmpp:ping'/></iq>"); err != nil {
		return err
	}
	return c.expectIQ(id)
}

// close ends the stream politely and waits briefly for the server's close.
func (c *conn) close() {
	_ = c.nc.SetDeadline(time.Now().Add(2 * time.Second))
	if c.write("</stream:stream>") == nil {
		for {
			kind, _, err := c.sc.next()
			if err != nil || kind == evClose {
				break
			}
		}
	}
	c.nc.Close()
}
