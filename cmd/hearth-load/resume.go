package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The resume mode measures stream management resumption (XEP-0198 section
// 5) as a phone sees it when its network changes: a receiver with
// resumption enabled gets --unacked messages from a sender and acks none,
// its TCP connection dies (a reset, no closing handshake), and a new
// connection authenticates and sends <resume/>. Timed from that <resume/>
// leaving the client: until <resumed/> arrives, and until every one of the
// unacked messages has been delivered again. TLS and SASL on the new
// connection are not part of it: they cost what a login costs.

const nsSM = "urn:xmpp:sm:3"

// smConn is a receiving session that counts the stanzas it is sent, as
// a stream management client must to ack them.
type smConn struct {
	*conn
	handled int // stanzas received since <enabled/> or <resumed/>
}

// nextStanza reads the next top-level element, counting stanzas.
func (c *smConn) nextStanza() ([]byte, error) {
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
		switch string(elemName(raw)) {
		case "message", "presence", "iq":
			c.handled++
		case "stream:error":
			return nil, fmt.Errorf("stream error: %s", raw)
		}
		return raw, nil
	}
}

// awaitMessages reads until every id in want has arrived in a message.
func (c *smConn) awaitMessages(want map[string]bool) error {
	left := len(want)
	seen := make(map[string]bool, len(want))
	for left > 0 {
		raw, err := c.nextStanza()
		if err != nil {
			return fmt.Errorf("waiting for %d messages: %w", left, err)
		}
		if string(elemName(raw)) != "message" {
			continue
		}
		id := string(attr(raw, "id"))
		if string(attr(raw, "type")) == "error" && want[id] {
			return fmt.Errorf("message %s bounced: %s", id, raw)
		}
		if want[id] && !seen[id] {
			seen[id] = true
			left--
		}
	}
	return nil
}

// drop kills the connection the way a lost network does for the server:
// a TCP reset, no TLS close_notify, no </stream:stream>.
func drop(c *conn) {
	nc := c.nc
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if tcp, ok := nc.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	nc.Close()
}

func runResume(ctx context.Context, o *options, t *target, r *Result) error {
	if o.unacked < 1 {
		return errors.New("--unacked must be at least 1")
	}
	errs := newErrLog()
	recvUser, sendUser := o.user(0), o.user(1)
	sender, soft, err := fullLogin(ctx, o, t, sendUser, "resume-sender")
	if err != nil {
		return fmt.Errorf("sender login: %w", err)
	}
	r.SoftErrors += soft
	_ = sender.nc.SetDeadline(time.Time{})
	defer sender.close()
	// The sender reads nothing it needs; drain its stream so the server
	// never blocks on it.
	go func() {
		for {
			if _, _, err := sender.sc.next(); err != nil {
				return
			}
		}
	}()
	var toResumed, toAll []time.Duration
	m, err := startMeter(o.pid)
	if err != nil {
		return err
	}
	for i := range o.resumes {
		if ctx.Err() != nil {
			break
		}
		a, b, err := resumeOnce(ctx, o, t, sender, recvUser, i)
		if err != nil {
			errs.add(fmt.Errorf("resume %d: %w", i, err))
			continue
		}
		toResumed = append(toResumed, a)
		toAll = append(toAll, b)
	}
	if err := m.stop(r); err != nil {
		return err
	}
	slices.Sort(toResumed)
	slices.Sort(toAll)
	r.Resumes, r.Unacked = len(toResumed), o.unacked
	r.ResumedP50Ms, r.ResumedP99Ms = percentile(toResumed, 50), percentile(toResumed, 99)
	r.RedeliveredP50Ms, r.RedeliveredP99Ms = percentile(toAll, 50), percentile(toAll, 99)
	r.Failures, r.Errors = errs.n, errs.samples
	if r.Resumes == 0 {
		return fmt.Errorf("no resumption succeeded: %v", errs.samples)
	}
	return nil
}

// resumeOnce runs one resumption and returns the times from sending
// <resume/> to <resumed/> and to the last redelivered message.
func resumeOnce(ctx context.Context, o *options, t *target, sender *conn, user string, n int) (toResumed, toAll time.Duration, err error) {
	c0, _, err := fullLogin(ctx, o, t, user, "resume"+strconv.Itoa(n))
	if err != nil {
		return 0, 0, fmt.Errorf("login: %w", err)
	}
	_ = c0.nc.SetDeadline(time.Now().Add(o.timeout))
	rc := &smConn{conn: c0}
	if err := rc.write("<enable xmlns='" + nsSM + "' resume='true'/>"); err != nil {
		drop(c0)
		return 0, 0, err
	}
	var previd string
	for previd == "" {
		raw, err := rc.nextStanza()
		if err != nil {
			drop(c0)
			return 0, 0, fmt.Errorf("enable: %w", err)
		}
		switch string(elemName(raw)) {
		case "enabled":
			rs := string(attr(raw, "resume"))
			previd = string(attr(raw, "id"))
			if (rs != "true" && rs != "1") || previd == "" {
				drop(c0)
				return 0, 0, fmt.Errorf("resumption not offered: %s", raw)
			}
			rc.handled = 0
		case "failed":
			drop(c0)
			return 0, 0, fmt.Errorf("enable failed: %s", raw)
		}
	}
	// The messages the receiver will not ack before its connection dies.
	want := make(map[string]bool, o.unacked)
	var buf bytes.Buffer
	for k := range o.unacked {
		id := "r" + strconv.Itoa(n) + "-" + strconv.Itoa(k)
		want[id] = true
		fmt.Fprintf(&buf, "<message type='chat' to='%s' id='%s'><body>unacked message %d of resumption %d</body></message>", c0.jid, id, k, n)
	}
	if err := sender.writeBytes(buf.Bytes()); err != nil {
		drop(c0)
		return 0, 0, fmt.Errorf("sender: %w", err)
	}
	if err := rc.awaitMessages(want); err != nil {
		drop(c0)
		return 0, 0, err
	}
	drop(c0)
	// Let the server see the reset first: the common case is a resumption
	// after the server noticed the loss, not a race with it.
	time.Sleep(o.dropWait)

	c1, features, err := t.dialAuthenticated(ctx, user)
	if err != nil {
		return 0, 0, fmt.Errorf("reconnect: %w", err)
	}
	defer c1.close()
	_ = c1.nc.SetDeadline(time.Now().Add(o.timeout))
	if !bytes.Contains(features, []byte("'"+nsSM+"'")) && !bytes.Contains(features, []byte("\""+nsSM+"\"")) {
		return 0, 0, fmt.Errorf("no stream management after authentication: %s", features)
	}
	rc = &smConn{conn: c1}
	t0 := time.Now()
	if err := rc.write("<resume xmlns='" + nsSM + "' h='0' previd='" + previd + "'/>"); err != nil {
		return 0, 0, err
	}
	for toResumed == 0 {
		raw, err := rc.nextStanza()
		if err != nil {
			return 0, 0, fmt.Errorf("resume: %w", err)
		}
		switch string(elemName(raw)) {
		case "resumed":
			toResumed = time.Since(t0)
		case "failed":
			return 0, 0, fmt.Errorf("resume failed: %s", raw)
		default:
			if rc.handled > 0 {
				return 0, 0, fmt.Errorf("a stanza before <resumed/>: %s", raw)
			}
		}
	}
	if err := rc.awaitMessages(want); err != nil {
		return 0, 0, fmt.Errorf("redelivery: %w", err)
	}
	toAll = time.Since(t0)
	// Ack what arrived, so that nothing is left to go to offline storage
	// when the session ends.
	if err := rc.write("<a xmlns='" + nsSM + "' h='" + strconv.Itoa(rc.handled) + "'/>"); err != nil {
		return 0, 0, err
	}
	return toResumed, toAll, nil
}

// queryArchiveCount asks the session's own archive how many messages it
// holds (XEP-0313 with an RSM count).
func queryArchiveCount(c *conn, timeout time.Duration) (int64, error) {
	_ = c.nc.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = c.nc.SetDeadline(time.Time{}) }()
	const id = "mamcount"
	if err := c.write("<iq type='set' id='" + id + "'><query xmlns='urn:xmpp:mam:2' queryid='" + id + "'><set xmlns='http://jabber.org/protocol/rsm'><max>1</max></set></query></iq>"); err != nil {
		return 0, err
	}
	for {
		raw, err := c.expect("iq")
		if err != nil {
			return 0, err
		}
		if string(attr(raw, "id")) != id {
			continue
		}
		if string(attr(raw, "type")) != "result" {
			return 0, fmt.Errorf("archive query failed: %s", raw)
		}
		s := string(raw)
		i := strings.Index(s, "<count>")
		j := strings.Index(s, "</count>")
		if i < 0 || j < i {
			return 0, fmt.Errorf("archive query result without a count: %s", raw)
		}
		return strconv.ParseInt(strings.TrimSpace(s[i+7:j]), 10, 64)
	}
}
