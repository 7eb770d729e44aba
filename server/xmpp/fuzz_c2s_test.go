package xmpp_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// The c2s fuzzers feed arbitrary bytes to the real server over loopback,
// from the first byte of a connection (FuzzC2SPreAuth) or inside TLS after
// STARTTLS (FuzzC2SAfterTLS, where SASL happens). The server runs in the
// fuzzing process, so a panic in any of its goroutines is a crash of the
// input. Each input must also end in a closed connection within the auth
// timeout, the server's output must be well-formed XML, and every few
// inputs a real login must still succeed.
//
// Seed corpora: testdata/fuzz/FuzzC2SPreAuth and testdata/fuzz/FuzzC2SAfterTLS.

func fuzzServer(f *testing.F) *servertest.Server {
	s := servertest.Start(f, func(c *config.Config) {
		c.Limits.AuthTimeout = config.Duration(2 * time.Second)
		// Fuzz inputs fail logins by the thousand; throttling is tested
		// elsewhere and would only slow the good logins here.
		c.Auth.FailuresPerIP = 1 << 30
		c.Auth.FailuresPerAccount = 1 << 30
	})
	s.AddUser(f, "alice", "pa")
	return s
}

func FuzzC2SPreAuth(f *testing.F) {
	s := fuzzServer(f)
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		out := exchange(t, c, data, func() { _ = c.(*net.TCPConn).CloseWrite() })
		checkServerOutput(t, data, out)
		if n++; n%25 == 0 {
			goodLogin(t, s)
		}
	})
}

func FuzzC2SAfterTLS(f *testing.F) {
	s := fuzzServer(f)
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		r := servertest.DialRaw(t, s.Addr)
		r.StartTLS("")
		tc := r.Conn.(*tls.Conn)
		out := exchange(t, tc, data, func() { _ = tc.CloseWrite() })
		checkServerOutput(t, data, out)
		if n++; n%25 == 0 {
			goodLogin(t, s)
		}
	})
}

// exchange writes data, half-closes and reads until the server closes.
func exchange(t *testing.T, c net.Conn, data []byte, closeWrite func()) []byte {
	t.Helper()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(6 * time.Second))
		_, err := io.Copy(&out, c)
		done <- err
	}()
	_ = c.SetWriteDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(data); err == nil {
		closeWrite()
	}
	err := <-done
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open past the auth timeout; it sent %q", clipText(out.String()))
	}
	return out.Bytes()
}

// checkServerOutput parses what the server sent as XMPP streams (one more
// after each restart).
func checkServerOutput(t *testing.T, in, out []byte) {
	t.Helper()
	const start = "<?xml version='1.0'?><stream:stream "
	parts := bytes.Split(out, []byte(start))
	if len(parts[0]) != 0 {
		t.Fatalf("input %q: the server's output does not start with its header: %q", clipText(string(in)), clipText(string(out)))
	}
	for _, p := range parts[1:] {
		checkStream(t, in, append([]byte(start), p...))
	}
}

func checkStream(t *testing.T, in, out []byte) {
	t.Helper()
	d := elem.NewDecoder(bufio.NewReader(bytes.NewReader(out)), elem.Limits{MaxBytes: 1 << 20, MaxDepth: 16})
	if _, err := d.ReadHeader(); err != nil {
		t.Fatalf("input %q: the server's header does not parse: %v\n%q", clipText(string(in)), err, clipText(string(out)))
	}
	for {
		_, err := d.ReadElement()
		if err == nil {
			continue
		}
		var syn *xml.SyntaxError
		if errors.Is(err, elem.ErrStreamClosed) || errors.Is(err, io.EOF) ||
			errors.As(err, &syn) && strings.Contains(syn.Msg, "unexpected EOF") {
			return
		}
		t.Fatalf("input %q: the server's output does not parse: %v\n%q", clipText(string(in)), err, clipText(string(out)))
	}
}

func goodLogin(t *testing.T, s *servertest.Server) {
	t.Helper()
	r := servertest.DialRaw(t, s.Addr)
	if jid := r.Login("alice", "pa", "fuzz", ""); !strings.HasPrefix(jid, "alice@localhost/") {
		t.Fatalf("login after fuzz inputs bound %q", jid)
	}
	r.Conn.Close()
}
