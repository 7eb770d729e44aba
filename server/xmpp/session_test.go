package xmpp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

func pipeSession(t *testing.T, lim config.Limits) (*Session, net.Conn) {
	t.Helper()
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	s := newSession(jid.MustParse("alice@localhost/r"), server, &lim)
	s.release()
	return s, client
}

// Many goroutines send while the session is closed: what reaches the peer
// is whole stanzas, each sender's in order, then the stream error and the
// closing tag, and nothing after it. Run with -race.
func TestSessionConcurrentSendAndClose(t *testing.T) {
	lim := config.Default("localhost").Limits
	s, client := pipeSession(t, lim)
	var out bytes.Buffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(&out, client)
	}()
	const senders, each = 8, 200
	var wg sync.WaitGroup
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := s.Send(context.Background(), elem.New(elem.NSClient, "message", "id", fmt.Sprintf("%d-%d", g, i))); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(2 * time.Millisecond)
	s.Close(&StreamError{Condition: "system-shutdown"})
	wg.Wait()
	s.markDone()
	select {
	case <-read:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was not closed")
	}
	got := out.String()
	if !strings.HasSuffix(got, "</stream:stream>") || strings.Count(got, "</stream:stream>") != 1 {
		t.Fatalf("output does not end with exactly one closing tag: %q", clipText(got))
	}
	d := elem.NewDecoder(bufio.NewReader(strings.NewReader(
		"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"+got)),
		elem.Limits{MaxBytes: 1 << 20, MaxDepth: 8})
	if _, err := d.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	last := map[int]int{}
	sawError := false
	n := 0
	for {
		e, err := d.ReadElement()
		if errors.Is(err, elem.ErrStreamClosed) {
			break
		}
		if err != nil {
			t.Fatalf("after %d stanzas: %v", n, err)
		}
		if sawError {
			t.Fatalf("%s after the stream error", e)
		}
		if e.Name.Local == "error" {
			sawError = true
			continue
		}
		var g, i int
		if _, err := fmt.Sscanf(e.Get("id"), "%d-%d", &g, &i); err != nil {
			t.Fatalf("unexpected %s", e)
		}
		if prev, ok := last[g]; ok && i != prev+1 {
			t.Fatalf("sender %d: stanza %d after %d", g, i, prev)
		}
		last[g] = i
		n++
	}
	if !sawError {
		t.Fatal("no stream error before the closing tag")
	}
	if err := s.Send(context.Background(), elem.New(elem.NSClient, "message")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	t.Logf("%d of %d stanzas went out before the close", n, senders*each)
}

// A peer that never reads: senders are held back at most the write
// timeout, then the session is dropped and its connection closed.
func TestSessionPeerThatNeverReads(t *testing.T) {
	lim := config.Default("localhost").Limits
	lim.MaxOutputBytes = 64 << 10
	lim.WriteTimeout = config.Duration(200 * time.Millisecond)
	s, client := pipeSession(t, lim)
	body := strings.Repeat("x", 1000)
	start := time.Now()
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		err = s.Send(context.Background(), elem.New(elem.NSClient, "message").AddText(body))
	}
	if !errors.Is(err, ErrSlowReader) && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Send to a peer that never reads: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("senders were held back %v", d)
	}
	// The connection is closed: the peer's read fails soon.
	_ = client.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1<<16)
	for {
		_, rerr := client.Read(buf)
		if rerr == nil {
			continue
		}
		var ne net.Error
		if errors.As(rerr, &ne) && ne.Timeout() {
			t.Fatal("the connection to a peer that never reads was not closed")
		}
		break
	}
}

func clipText(s string) string {
	if len(s) > 400 {
		return s[:200] + " … " + s[len(s)-200:]
	}
	return s
}
