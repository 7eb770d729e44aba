package xmpp_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Tests of what a hostile or broken client can send, each through a real
// socket to an in-process server.

const (
	nsTLS  = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL = "urn:ietf:params:xml:ns:xmpp-sasl"
	// header is a good client stream header without the XML declaration.
	clientHeader = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)

// streamError reads until the server ends the stream and returns the
// condition of its stream error ("" if it sent none).
func streamError(t *testing.T, r *servertest.Raw) string {
	t.Helper()
	out, err := r.ReadUntilErr("</stream:stream>", 10*time.Second)
	i := strings.Index(out, "<stream:error><")
	if i < 0 {
		t.Fatalf("no stream error (read err %v) in %q", err, clipText(out))
	}
	rest := out[i+len("<stream:error><"):]
	return rest[:strings.IndexAny(rest, " />")]
}

func expectStreamError(t *testing.T, r *servertest.Raw, want string) {
	t.Helper()
	if got := streamError(t, r); got != want {
		t.Fatalf("stream error %q, want %q", got, want)
	}
	expectClosed(t, r)
}

// expectClosed asserts the server closes the connection (EOF or reset,
// not a timeout on our side).
func expectClosed(t *testing.T, r *servertest.Raw) {
	t.Helper()
	_ = r.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for {
		_, err := r.Conn.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server did not close the connection")
		}
		return
	}
}

func clipText(s string) string {
	if len(s) > 600 {
		return s[:300] + " … " + s[len(s)-300:]
	}
	return s
}

// afterTLS returns a connection that has done STARTTLS and sent its second
// stream header, ready for SASL; it also returns the features offered.
func afterTLS(t *testing.T, s *servertest.Server) (*servertest.Raw, string) {
	t.Helper()
	r := servertest.DialRaw(t, s.Addr)
	r.StartTLS("")
	r.Write(clientHeader)
	return r, r.ReadUntil("</stream:features>")
}

// assertHealthy logs a fresh client in and gets an IQ answered.
func assertHealthy(t *testing.T, s *servertest.Server, user, password string) {
	t.Helper()
	c := s.Dial(t, user, password, "")
	r := c.IQ("<iq type='get' id='health' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if r.Get("type") != "result" && r.Get("type") != "error" {
		t.Fatalf("health IQ answered with %s", r)
	}
	c.Close()
}

func plainAuth(user, password string) string {
	return "<auth xmlns='" + nsSASL + "' mechanism='PLAIN'>" + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+password)) + "</auth>"
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func nested(n int) string { return strings.Repeat("<a>", n) + strings.Repeat("</a>", n) }

func TestStanzaSizeLimits(t *testing.T) {
	t.Parallel()
	s := servertest.Start(t, func(c *config.Config) {
		c.Limits.MaxStanzaBytes = 64 << 10
		c.Limits.ReadBurstBytes = 1 << 20
	})
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	pre := s.Config.Limits.MaxStanzaBytesPreAuth
	if pre != 16<<10 {
		t.Fatalf("default pre-auth limit %d, want 16 KiB", pre)
	}
	if d := config.Default("x").Limits.MaxStanzaBytes; d != 256<<10 {
		t.Fatalf("default stanza limit %d, want 256 KiB", d)
	}

	t.Run("before TLS", func(t *testing.T) {
		r := servertest.DialRaw(t, s.Addr)
		r.Write(clientHeader + "<starttls xmlns='" + nsTLS + "'>" + strings.Repeat(" ", pre) + "</starttls>")
		expectStreamError(t, r, "policy-violation")
	})
	t.Run("before auth", func(t *testing.T) {
		r, _ := afterTLS(t, s)
		// Under the post-auth limit, over the pre-auth one.
		r.Write("<auth xmlns='" + nsSASL + "' mechanism='PLAIN'>" + strings.Repeat("A", pre+100) + "</auth>")
		expectStreamError(t, r, "policy-violation")
	})
	t.Run("after auth", func(t *testing.T) {
		bob := s.Dial(t, "bob", "pb", "b")
		r := servertest.DialRaw(t, s.Addr)
		r.Login("alice", "pa", "a", "")
		// Just under the limit: delivered.
		body := strings.Repeat("x", 60<<10)
		r.Write("<message to='" + bob.JID.String() + "' id='big'><body>" + body + "</body></message>")
		got := bob.Expect(servertest.IsKind("message", ""))
		if got.ChildText("", "body") != body {
			t.Fatalf("60 KiB message arrived with a body of %d bytes", len(got.ChildText("", "body")))
		}
		// Over it: the stream ends.
		r.Write("<message to='" + bob.JID.String() + "' id='huge'><body>" + strings.Repeat("y", 70<<10) + "</body></message>")
		expectStreamError(t, r, "policy-violation")
		bob.ExpectNone(200*time.Millisecond, func(e *elem.Element) bool { return e.Get("id") == "huge" })
	})
	assertHealthy(t, s, "bob", "pb")
}

func TestDefaultStanzaLimit(t *testing.T) {
	t.Parallel()
	s := servertest.Start(t, func(c *config.Config) { c.Limits.ReadBytesPerSecond = 0 })
	s.AddUser(t, "alice", "pa")
	r := servertest.DialRaw(t, s.Addr)
	r.Login("alice", "pa", "a", "")
	r.Write("<message to='alice@localhost/a' id='ok'><body>" + strings.Repeat("x", 250<<10) + "</body></message>")
	r.ReadUntil("</message>")
	r.Write("<message to='alice@localhost/a' id='no'><body>" + strings.Repeat("x", 260<<10) + "</body></message>")
	expectStreamError(t, r, "policy-violation")
}

// One ~28 KB stanza nested 4,000 deep crashes ejabberd 23; Prosody 0.12
// accepts 10,000 levels. Here both end the stream without building the tree.
func TestDepthLimit(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	before := heapInuse()
	for _, n := range []int{4000, 10000} {
		r := servertest.DialRaw(t, s.Addr)
		r.Login("alice", "pa", fmt.Sprint("d", n), "")
		stanza := "<message to='alice@localhost'>" + nested(n) + "</message>"
		if n == 4000 && (len(stanza) < 27000 || len(stanza) > 29000) {
			t.Fatalf("the 4,000-deep stanza is %d bytes, want about 28 KB", len(stanza))
		}
		r.Write(stanza)
		expectStreamError(t, r, "policy-violation")
	}
	// Width instead of depth: 30,000 empty siblings in 120 KB.
	r0 := servertest.DialRaw(t, s.Addr)
	r0.Login("alice", "pa", "wide", "")
	r0.Write("<message to='alice@localhost'>" + strings.Repeat("<a/>", 30000) + "</message>")
	expectStreamError(t, r0, "policy-violation")
	// Pre-auth, the depth limit is smaller still.
	r, _ := afterTLS(t, s)
	r.Write("<auth xmlns='" + nsSASL + "' mechanism='PLAIN'>" + nested(20) + "</auth>")
	expectStreamError(t, r, "policy-violation")
	if after := heapInuse(); after > before+16<<20 {
		t.Errorf("heap in use grew from %d to %d bytes", before, after)
	}
	assertHealthy(t, s, "alice", "pa")
}

func TestRestrictedXML(t *testing.T) {
	t.Parallel()
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	for _, tc := range []struct{ name, in, want string }{
		{"DTD before the header", "<!DOCTYPE stream:stream [<!ENTITY x 'y'>]>" + clientHeader, "restricted-xml"},
		{"billion laughs", `<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>` + clientHeader, "restricted-xml"},
		{"comment before the header", "<!-- hi -->" + clientHeader, "restricted-xml"},
		{"processing instruction", "<?php echo 1 ?>" + clientHeader, "restricted-xml"},
		{"second XML declaration", "<?xml version='1.0'?><?xml version='1.0'?>" + clientHeader, "restricted-xml"},
		{"DTD in the stream", clientHeader + "<!DOCTYPE x>", "restricted-xml"},
		{"entity declaration in the stream", clientHeader + "<!ENTITY x 'y'>", "restricted-xml"},
		{"comment in the stream", clientHeader + "<!-- hi -->", "restricted-xml"},
		{"comment in a stanza", clientHeader + "<starttls xmlns='" + nsTLS + "'><!-- hi --></starttls>", "restricted-xml"},
		{"processing instruction in a stanza", clientHeader + "<starttls xmlns='" + nsTLS + "'><?x y?></starttls>", "restricted-xml"},
		{"entity reference", clientHeader + "<starttls xmlns='" + nsTLS + "'>&xxe;</starttls>", "restricted-xml"},
		{"entity reference in an attribute", clientHeader + "<starttls xmlns='" + nsTLS + "' a='&xxe;'/>", "restricted-xml"},
		{"undeclared prefix", clientHeader + "<foo:starttls/>", "not-well-formed"},
		{"undeclared attribute prefix", clientHeader + "<starttls xmlns='" + nsTLS + "' foo:a='1'/>", "not-well-formed"},
		{"duplicate attribute", clientHeader + "<starttls xmlns='" + nsTLS + "' a='1' a='2'/>", "not-well-formed"},
		{"text at the stream level", clientHeader + "hello<message/>", "bad-format"},
		{"non-UTF-8 encoding", "<?xml version='1.0' encoding='ISO-8859-1'?>" + clientHeader, "unsupported-encoding"},
		{"UTF-16", "\xff\xfe<\x00s\x00", "not-well-formed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := servertest.DialRaw(t, s.Addr)
			r.Write(tc.in)
			expectStreamError(t, r, tc.want)
		})
	}
	t.Run("XML declaration is accepted", func(t *testing.T) {
		for _, decl := range []string{"", "<?xml version='1.0'?>", `<?xml version="1.0" encoding="UTF-8"?>`} {
			r := servertest.DialRaw(t, s.Addr)
			r.Write(decl + clientHeader)
			r.ReadUntil("<starttls")
		}
	})
	t.Run("predefined entities, character references, CDATA and prefixes are fine", func(t *testing.T) {
		c := s.Dial(t, "alice", "pa", "p")
		r := servertest.DialRaw(t, s.Addr)
		r.Login("alice", "pa", "raw", "")
		r.Write("<message to='" + c.JID.String() + "' id='w1'><body>&lt;&amp;&gt;&apos;&quot;&#x263A;&#65;<![CDATA[<b>]]></body>" +
			"<x:data xmlns:x='urn:example:x' x:attr='v'><x:item/></x:data></message>")
		got := c.Expect(func(e *elem.Element) bool { return e.Get("id") == "w1" })
		if b := got.ChildText("", "body"); b != `<&>'"☺A<b>` {
			t.Fatalf("body %q", b)
		}
		if d := got.Child("urn:example:x", "data"); d == nil || d.Child("urn:example:x", "item") == nil {
			t.Fatalf("namespaced payload lost: %s", got)
		}
	})
	t.Run("a bound session gets the same treatment", func(t *testing.T) {
		r := servertest.DialRaw(t, s.Addr)
		r.Login("alice", "pa", "r2", "")
		r.Write("<message to='alice@localhost'><body>&foo;</body></message>")
		expectStreamError(t, r, "restricted-xml")
	})
	assertHealthy(t, s, "alice", "pa")
}

func TestInvalidXMLAndUTF8(t *testing.T) {
	t.Parallel()
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	stanzas := map[string]string{
		"invalid UTF-8 in text":              "<message><body>\xff\xfe</body></message>",
		"invalid UTF-8 in an attribute":      "<message id='\xc3\x28'/>",
		"invalid UTF-8 in an element name":   "<mess\xffage/>",
		"invalid UTF-8 in an attribute name": "<message i\xe2\x82d='1'/>",
		"overlong encoding":                  "<message><body>\xc0\xbc</body></message>",
		"UTF-8 surrogate":                    "<message><body>\xed\xa0\x80</body></message>",
		"NUL byte":                           "<message><body>\x00</body></message>",
		"NUL character reference":            "<message><body>&#0;</body></message>",
		"escape character reference":         "<message><body>&#x1b;</body></message>",
		"out of range character reference":   "<message><body>&#x110000;</body></message>",
		"mismatched tags":                    "<message></presence>",
		"unquoted attribute":                 "<message id=1/>",
		"lone ampersand":                     "<message><body>a & b</body></message>",
		"less-than in an attribute":          "<message id='<'/>",
		"two colons in a name":               "<a:b:c xmlns:a='urn:x'/>",
		"name starting with a digit":         "<1message/>",
		"local name starting with a digit":   "<a:1b xmlns:a='urn:x'/>",
		"binary garbage":                     "<\x01\x02\x03",
	}
	for name, bad := range stanzas {
		t.Run("pre-auth "+name, func(t *testing.T) {
			t.Parallel()
			r := servertest.DialRaw(t, s.Addr)
			r.Write(clientHeader + bad)
			expectStreamError(t, r, "not-well-formed")
		})
	}
	for _, name := range []string{"invalid UTF-8 in text", "invalid UTF-8 in an attribute", "invalid UTF-8 in an element name", "NUL byte", "mismatched tags"} {
		t.Run("bound session "+name, func(t *testing.T) {
			r := servertest.DialRaw(t, s.Addr)
			r.Login("alice", "pa", "", "")
			r.Write(stanzas[name])
			expectStreamError(t, r, "not-well-formed")
		})
	}
	t.Run("invalid UTF-8 in the header", func(t *testing.T) {
		r := servertest.DialRaw(t, s.Addr)
		r.Write(strings.Replace(clientHeader, "localhost", "local\xffhost", 1))
		expectStreamError(t, r, "not-well-formed")
	})
	assertHealthy(t, s, "alice", "pa")
}

func TestStreamHeaderErrors(t *testing.T) {
	t.Parallel()
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	for _, tc := range []struct{ name, in, want string }{
		{"wrong to", strings.Replace(clientHeader, "to='localhost'", "to='example.org'", 1), "host-unknown"},
		{"no to", strings.Replace(clientHeader, " to='localhost'", "", 1), "host-unknown"},
		{"wrong stream namespace", strings.Replace(clientHeader, "http://etherx.jabber.org/streams", "urn:wrong", 1), "invalid-namespace"},
		{"wrong default namespace", strings.Replace(clientHeader, "jabber:client", "jabber:server", 1), "invalid-namespace"},
		{"not a stream", "<message xmlns='jabber:client'>", "invalid-namespace"},
		{"version 2.0", strings.Replace(clientHeader, "version='1.0'", "version='2.0'", 1), "unsupported-version"},
		{"no version", strings.Replace(clientHeader, " version='1.0'", "", 1), "unsupported-version"},
		{"stanza before TLS", clientHeader + "<message to='alice@localhost'><body>hi</body></message>", "policy-violation"},
		{"auth before TLS", clientHeader + plainAuth("alice", "pa"), "policy-violation"},
		{"data pipelined after starttls", clientHeader + "<starttls xmlns='" + nsTLS + "'/>" + "<message/>", "policy-violation"},
		{"stream closed before anything", clientHeader + "</stream:stream>", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := servertest.DialRaw(t, s.Addr)
			r.Write(tc.in)
			if tc.want == "" {
				expectClosed(t, r)
				return
			}
			expectStreamError(t, r, tc.want)
		})
	}
	t.Run("wrong to after TLS", func(t *testing.T) {
		r := servertest.DialRaw(t, s.Addr)
		r.StartTLS("")
		r.Write(strings.Replace(clientHeader, "to='localhost'", "to='example.org'", 1))
		expectStreamError(t, r, "host-unknown")
	})
	t.Run("stanza before auth", func(t *testing.T) {
		r, _ := afterTLS(t, s)
		r.Write("<message to='alice@localhost'><body>hi</body></message>")
		expectStreamError(t, r, "not-authorized")
	})
	t.Run("iq before bind", func(t *testing.T) {
		r, _ := afterTLS(t, s)
		r.Write(plainAuth("alice", "pa"))
		r.ReadUntil("<success")
		r.Write(clientHeader)
		r.ReadUntil("</stream:features>")
		r.Write("<message to='alice@localhost'><body>hi</body></message>")
		expectStreamError(t, r, "not-authorized")
	})
	t.Run("TLS handshake garbage", func(t *testing.T) {
		r := servertest.DialRaw(t, s.Addr)
		r.Write(clientHeader)
		r.ReadUntil("</stream:features>")
		r.Write("<starttls xmlns='" + nsTLS + "'/>")
		r.ReadUntil("<proceed")
		r.Write("this is not a TLS ClientHello\r\n")
		expectClosed(t, r)
	})
	t.Run("garbage on the direct TLS port", func(t *testing.T) {
		r := servertest.DialRaw(t, s.DirectAddr)
		r.Write(clientHeader)
		expectClosed(t, r)
	})
	t.Run("pipelined stream restart after SASL is kept", func(t *testing.T) {
		r, _ := afterTLS(t, s)
		r.Write(plainAuth("alice", "pa") + clientHeader)
		r.ReadUntil("<success")
		r.ReadUntil("urn:ietf:params:xml:ns:xmpp-bind")
	})
	assertHealthy(t, s, "alice", "pa")
}

func TestAuthTimeout(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	s := servertest.Start(t, func(c *config.Config) { c.Limits.AuthTimeout = config.Duration(timeout) })
	s.AddUser(t, "alice", "pa")
	check := func(t *testing.T, r *servertest.Raw, start time.Time) {
		t.Helper()
		expectStreamError(t, r, "connection-timeout")
		if d := time.Since(start); d < timeout-100*time.Millisecond || d > timeout+3*time.Second {
			t.Fatalf("cut after %v, want about %v", d, timeout)
		}
	}
	t.Run("silent", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		check(t, servertest.DialRaw(t, s.Addr), start)
	})
	t.Run("after TLS", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		r, _ := afterTLS(t, s)
		check(t, r, start)
	})
	t.Run("authenticated but never bound", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		r, _ := afterTLS(t, s)
		r.Write(plainAuth("alice", "pa"))
		r.ReadUntil("<success")
		r.Write(clientHeader)
		r.ReadUntil("</stream:features>")
		check(t, r, start)
	})
	t.Run("slowloris", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		r := servertest.DialRaw(t, s.Addr)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			// One byte at a time: every byte is progress, none of it
			// extends the deadline.
			for i := 0; i < len(clientHeader); i++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if r.Write(clientHeader[i:i+1]) != nil {
					return
				}
			}
		}()
		check(t, r, start)
	})
	t.Run("a bound session has no deadline", func(t *testing.T) {
		t.Parallel()
		c := s.Dial(t, "alice", "pa", "idle")
		time.Sleep(timeout + 500*time.Millisecond)
		c.IQ("<iq type='get' id='still' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	})
}

// TestReadRateLimit floods the server with IQs and counts the answers: the
// bytes it accepts per second stay near the configured rate, while another
// client's requests are answered promptly.
func TestReadRateLimit(t *testing.T) {
	t.Parallel()
	const rate, burst = 32 << 10, 16 << 10
	s := servertest.Start(t, func(c *config.Config) {
		c.Limits.MaxStanzaBytes = 16 << 10
		c.Limits.MaxStanzaBytesPreAuth = 4 << 10
		c.Limits.MaxOutputBytes = 1 << 20
		c.Limits.ReadBytesPerSecond = rate
		c.Limits.ReadBurstBytes = burst
	})
	s.AddUser(t, "flood", "pf")
	s.AddUser(t, "calm", "pc")
	calm := s.Dial(t, "calm", "pc", "")
	f := servertest.DialRaw(t, s.Addr)
	f.Login("flood", "pf", "f", "")

	pad := strings.Repeat("p", 1000)
	iq := func(i int) string {
		return fmt.Sprintf("<iq type='get' id='f%d' to='localhost' pad='%s'><nothing xmlns='urn:example:none'/></iq>", i, pad)
	}
	size := len(iq(100000))
	var answered atomic.Int64
	go func() {
		// Count answers; the server's writes are not what is measured.
		buf := make([]byte, 64<<10)
		_ = f.Conn.SetReadDeadline(time.Time{})
		tail := ""
		for {
			n, err := f.Conn.Read(buf)
			chunk := tail + string(buf[:n])
			answered.Add(int64(strings.Count(chunk, "</iq>")))
			if i := strings.LastIndex(chunk, "</iq>"); i >= 0 {
				chunk = chunk[i+5:]
			}
			if len(chunk) > 5 {
				chunk = chunk[len(chunk)-5:]
			}
			tail = chunk
			if err != nil {
				return
			}
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 10000; ; i += 8 {
			select {
			case <-stop:
				return
			default:
			}
			var b strings.Builder
			for j := 0; j < 8; j++ {
				b.WriteString(iq(i + j))
			}
			_ = f.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := io.WriteString(f.Conn, b.String()); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
		}
	}()
	start := time.Now()
	var worst time.Duration
	for time.Since(start) < 3*time.Second {
		t0 := time.Now()
		calm.IQ(fmt.Sprintf("<iq type='get' id='c%d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>", t0.UnixNano()))
		if d := time.Since(t0); d > worst {
			worst = d
		}
		time.Sleep(100 * time.Millisecond)
	}
	elapsed := time.Since(start)
	accepted := float64(answered.Load()*int64(size)) / elapsed.Seconds()
	close(stop)
	t.Logf("flooder: %d IQs answered in %v = %.0f B/s accepted (limit %d B/s, burst %d); calm client's slowest answer %v",
		answered.Load(), elapsed.Round(time.Millisecond), accepted, rate, burst, worst)
	if max := (float64(burst) + 2*float64(size) + float64(rate)*elapsed.Seconds()) * 1.2 / elapsed.Seconds(); accepted > max {
		t.Errorf("accepted %.0f B/s from the flooder, limit %d B/s (max allowed %.0f)", accepted, rate, max)
	}
	if accepted < float64(rate)*0.5 {
		t.Errorf("accepted only %.0f B/s from the flooder; the limit is %d B/s", accepted, rate)
	}
	if worst > 2*time.Second {
		t.Errorf("the other client waited %v for an answer", worst)
	}
	f.Conn.Close()
	wg.Wait()
}

// TestSlowReaderIsDisconnected: a client that never reads while others send
// it a lot is dropped, the server's memory stays flat and the senders go on.
func TestSlowReaderIsDisconnected(t *testing.T) {
	s := servertest.Start(t, func(c *config.Config) {
		c.Limits.MaxStanzaBytes = 64 << 10
		c.Limits.MaxOutputBytes = 256 << 10
		c.Limits.WriteTimeout = config.Duration(time.Second)
		c.Limits.ReadBytesPerSecond = 0
		// Once the sink is gone its messages go to offline storage; keep
		// that small so the heap measured is the slow reader's alone.
		c.Limits.MaxOfflineMessages = 10
	})
	s.AddUser(t, "sink", "ps")
	for i := 0; i < 3; i++ {
		s.AddUser(t, fmt.Sprint("sender", i), "pw")
	}
	sink := servertest.DialRaw(t, s.Addr)
	if tc, ok := sink.Conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	sinkJID := sink.Login("sink", "ps", "s", "")
	// From here on the sink reads nothing.

	before := heapInuse()
	var peak atomic.Uint64
	sampling := make(chan struct{})
	defer close(sampling)
	go func() {
		// Peak of the heap that survived each collection while the flood
		// is on: what the server holds on to. Garbage not yet collected
		// depends on how busy the machine is, not on the server.
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			select {
			case <-sampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
		}
	}()
	body := strings.Repeat("z", 32<<10)
	var sent atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 3; i++ {
		r := servertest.DialRaw(t, s.Addr)
		r.Login(fmt.Sprint("sender", i), "pw", "s", "")
		wg.Add(2)
		go func() {
			// Senders read everything they get (bounces once the sink is
			// gone), so they are never slow readers themselves.
			defer wg.Done()
			_ = r.Conn.SetReadDeadline(time.Time{})
			_, _ = io.Copy(io.Discard, r.Conn)
		}()
		go func() {
			defer wg.Done()
			defer r.Conn.Close()
			for n := 0; n < 200; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if r.Write(fmt.Sprintf("<message to='%s' type='chat'><body>%s</body></message>", sinkJID, body)) != nil {
					return
				}
				sent.Add(int64(len(body)))
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(s.XMPP.Router().Sessions("sink")) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the sink is still connected after %d bytes were sent to it", sent.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("sink dropped after %d bytes were sent to it", sent.Load())
	close(stop)
	wg.Wait()
	// The senders' sockets are closed, but the server may still be working
	// through what they wrote into its receive buffers (on a slow machine,
	// all of it). Measure once their sessions are gone, and let the heap
	// settle: the assertion is that memory comes back, not how fast.
	for i := 0; i < 3; i++ {
		for len(s.XMPP.Router().Sessions(fmt.Sprint("sender", i))) > 0 {
			if time.Now().After(deadline.Add(20 * time.Second)) {
				t.Fatalf("sender%d's session outlived its closed socket", i)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	after := heapInuse()
	for settle := time.Now().Add(5 * time.Second); after > before+8<<20 && time.Now().Before(settle); {
		time.Sleep(100 * time.Millisecond)
		after = heapInuse()
	}
	t.Logf("heap in use: %d KiB before, %d KiB live at the peak, %d KiB after %d KiB were sent to a client that never read",
		before>>10, peak.Load()>>10, after>>10, sent.Load()>>10)
	if after > before+8<<20 {
		t.Errorf("heap grew by %d KiB", (after-before)>>10)
	}
	if p := peak.Load(); p > before+48<<20 {
		t.Errorf("live heap peaked %d KiB above where it started", (p-before)>>10)
	}
	// The sink's connection is really closed.
	expectClosed(t, sink)
	// The senders were not harmed: a new session works.
	assertHealthy(t, s, "sender0", "pw")
}

// The output limit also holds for a single huge burst: many stanzas queued
// at once for a client that does not read push past MaxOutputBytes.
func TestOutputLimitBurst(t *testing.T) {
	t.Parallel()
	s := servertest.Start(t, func(c *config.Config) {
		c.Limits.MaxStanzaBytes = 64 << 10
		c.Limits.MaxOutputBytes = 64 << 10
		c.Limits.ReadBytesPerSecond = 0
		// Once the sink is gone its messages go to offline storage; keep
		// that small so the heap measured is the slow reader's alone.
		c.Limits.MaxOfflineMessages = 10
	})
	s.AddUser(t, "sink", "ps")
	for i := 0; i < 8; i++ {
		s.AddUser(t, fmt.Sprint("s", i), "pw")
	}
	sink := servertest.DialRaw(t, s.Addr)
	if tc, ok := sink.Conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	jid := sink.Login("sink", "ps", "s", "")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		r := servertest.DialRaw(t, s.Addr)
		r.Login(fmt.Sprint("s", i), "pw", "r", "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() { _, _ = io.Copy(io.Discard, r.Conn) }()
			msg := fmt.Sprintf("<message to='%s'><body>%s</body></message>", jid, strings.Repeat("q", 30<<10))
			for n := 0; n < 100 && len(s.XMPP.Router().Sessions("sink")) > 0; n++ {
				if r.Write(msg) != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.XMPP.Router().Sessions("sink")) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sink is still connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	expectClosed(t, sink)
}
