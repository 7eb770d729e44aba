package xmpp

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// chunks reads the client end of a pipe: one string per server write
// (net.Pipe never merges two writes into one read).
func chunks(client net.Conn) <-chan string {
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		buf := make([]byte, 1<<20)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				ch <- string(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

func expectNothing(t *testing.T, ch <-chan string, what string) {
	t.Helper()
	select {
	case c := <-ch:
		t.Fatalf("%s: written early: %.80q", what, c)
	case <-time.After(50 * time.Millisecond):
	}
}

func next(t *testing.T, ch <-chan string, what string) string {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: nothing written", what)
		return ""
	}
}

func TestOutputBatchWritesOnceWhenReleased(t *testing.T) {
	lim := config.Default("localhost").Limits
	s, client := pipeSession(t, lim)
	out := chunks(client)
	ctx, batch := withOutBatch(context.Background())

	batch.begin()
	for i := range 16 {
		if err := s.Send(ctx, elem.New(elem.NSClient, "message", "id", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	expectNothing(t, out, "open batch")
	batch.release()
	got := next(t, out, "released batch")
	var ids []string
	for _, m := range regexp.MustCompile(`id=['"](\d+)['"]`).FindAllStringSubmatch(got, -1) {
		ids = append(ids, m[1])
	}
	if want := "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15"; strings.Join(ids, " ") != want {
		t.Fatalf("the one write holds ids %v, want %s in order", ids, want)
	}
	expectNothing(t, out, "after the batch's one write")

	// A closed batch (its reader is waiting for input) defers nothing.
	if err := s.Send(ctx, elem.New(elem.NSClient, "message", "id", "late")); err != nil {
		t.Fatal(err)
	}
	if c := next(t, out, "closed batch"); !strings.Contains(c, "late") {
		t.Fatalf("unexpected write %q", c)
	}

	// Output past a quarter of the limit is not held: the sender may
	// have to wait for space, and must not wait on its own batch.
	batch.begin()
	big := strings.Repeat("x", lim.MaxOutputBytes/4+1)
	done := make(chan error, 1)
	go func() {
		done <- s.Send(ctx, elem.New(elem.NSClient, "message", "id", "big").Add(elem.New(elem.NSClient, "body").AddText(big)))
	}()
	var n int
	for n < len(big) {
		n += len(next(t, out, "big stanza in an open batch"))
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send of a big stanza blocked on its own batch")
	}
	batch.release()
}

// A broadcast (a room message to many occupants) fills the batch, which
// is then let go at once: every copy is written without waiting for the
// reader's next socket read.
func TestOutputBatchLetsGoWhenFull(t *testing.T) {
	lim := config.Default("localhost").Limits
	ctx, batch := withOutBatch(context.Background())
	batch.begin()
	outs := make([]<-chan string, maxBatchSessions+4)
	for i := range outs {
		s, client := pipeSession(t, lim)
		outs[i] = chunks(client)
		if err := s.Send(ctx, elem.New(elem.NSClient, "message", "id", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if i == maxBatchSessions-1 {
			expectNothing(t, outs[0], "first session, in a batch not yet full")
		}
	}
	for i := range outs {
		next(t, outs[i], fmt.Sprintf("session %d, with the batch full", i))
	}
}
