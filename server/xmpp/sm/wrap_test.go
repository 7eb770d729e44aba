package sm

import (
	"context"
	"testing"

	"github.com/merveilles/hearth/server/xmpp/elem"
)

// h is a 32-bit counter that wraps (XEP-0198 section 4): acks across the
// wrap drop exactly the stanzas they cover.
func TestAckAcrossWrap(t *testing.T) {
	if got := Sub(2, 0xFFFFFFFE); got != 4 {
		t.Fatalf("Sub(2, 2^32-2) = %d, want 4", got)
	}
	q := func(n int) []*elem.Element {
		out := make([]*elem.Element, n)
		for i := range out {
			out[i] = elem.New(elem.NSClient, "message", "id", string(rune('a'+i)))
		}
		return out
	}
	// 4 stanzas sent since h was 2^32-3: the counter wrapped to 1.
	st := &state{sent: 1, queue: q(4)}
	if err := st.ack(0xFFFFFFFF); err != nil { // acks 2
		t.Fatal(err)
	}
	if len(st.queue) != 2 || st.queue[0].Get("id") != "c" {
		t.Fatalf("after h=2^32-1: %d left, first %v", len(st.queue), st.queue[0])
	}
	if err := st.ack(0); err != nil { // one more, across the wrap
		t.Fatal(err)
	}
	if len(st.queue) != 1 || st.queue[0].Get("id") != "d" {
		t.Fatalf("after h=0: %d left", len(st.queue))
	}
	if err := st.ack(2); err == nil {
		t.Fatal("h beyond what was sent was accepted")
	}
	if err := st.ack(0xFFFFFFFF); err == nil {
		t.Fatal("h going backwards was accepted")
	}
	if err := st.ack(1); err != nil || len(st.queue) != 0 {
		t.Fatalf("final ack: %v, %d left", err, len(st.queue))
	}
	// Inbound h wraps too.
	st.h = 0xFFFFFFFF
	st.pending = []*inbound{{done: true}, {done: true}}
	(&Module{}).advance(context.Background(), st)
	if st.h != 1 {
		t.Fatalf("inbound h = %d, want 1", st.h)
	}
}
