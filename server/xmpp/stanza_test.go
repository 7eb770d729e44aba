package xmpp

import (
	"errors"
	"testing"
)

func TestAckHolds(t *testing.T) {
	var st Stanza
	if ch, _ := st.Durable(); ch != nil {
		t.Fatal("a stanza with no holds must be durable at once")
	}
	var st2 Stanza
	r1 := st2.HoldAck()
	r1(nil) // released before the next module holds: must not finish early
	r2 := st2.HoldAck()
	ch, errf := st2.Durable()
	select {
	case <-ch:
		t.Fatal("durable while a hold is pending")
	default:
	}
	boom := errors.New("disk full")
	r2(boom)
	r2(nil) // a second release is ignored
	<-ch
	if !errors.Is(errf(), boom) {
		t.Fatalf("err = %v", errf())
	}
}
