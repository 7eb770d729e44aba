package vcard_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/vcard"
)

const card = `<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>alice</NICKNAME>` +
	`<PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO>` +
	`<x xmlns='urn:example:ext' a='1'>kept &amp; escaped</x></vCard>`

func TestSetAndGetOwnAndOthers(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "r")
	b := s.Dial(t, "bob", "pb", "r")

	// Nobody has a vCard yet: an empty one comes back.
	r := b.IQ("<iq type='get' id='g0' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>")
	if v := r.Child(vcard.NS, "vCard"); r.Get("type") != "result" || v == nil || len(v.Children) != 0 {
		t.Fatalf("empty vCard: %s", r)
	}

	if r := a.IQ("<iq type='set' id='s1'>" + card + "</iq>"); r.Get("type") != "result" {
		t.Fatalf("set: %s", r)
	}
	check := func(name, got string) {
		t.Helper()
		for _, want := range []string{"<FN>Alice Liddell</FN>", "<BINVAL>iVBORw0KGgo=</BINVAL>", `<x xmlns="urn:example:ext" a="1">kept &amp; escaped</x>`} {
			if !strings.Contains(got, want) {
				t.Errorf("%s: %s lacks %s", name, got, want)
			}
		}
	}
	check("own, no to", a.IQ("<iq type='get' id='g1'><vCard xmlns='vcard-temp'/></iq>").String())
	check("own, bare JID", a.IQ("<iq type='get' id='g2' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>").String())
	r = b.IQ("<iq type='get' id='g3' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>")
	check("bob reads alice", r.String())
	if r.Get("from") != "alice@localhost" {
		t.Errorf("answer to bob comes from %q, want alice@localhost", r.Get("from"))
	}

	// Bob may not write Alice's vCard, and hers is unchanged.
	r = b.IQ("<iq type='set' id='s2' to='alice@localhost'><vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard></iq>")
	if servertest.ErrorCondition(r) != "forbidden" {
		t.Fatalf("set on another account: %s, want forbidden", r)
	}
	check("after bob's attempt", a.IQ("<iq type='get' id='g4'><vCard xmlns='vcard-temp'/></iq>").String())

	r = b.IQ("<iq type='get' id='g5' to='nobody@localhost'><vCard xmlns='vcard-temp'/></iq>")
	if servertest.ErrorCondition(r) != "service-unavailable" {
		t.Fatalf("missing account: %s, want service-unavailable", r)
	}
	r = a.IQ("<iq type='set' id='s3'><notvcard xmlns='vcard-temp'/></iq>")
	if servertest.ErrorCondition(r) != "bad-request" {
		t.Fatalf("wrong element: %s, want bad-request", r)
	}
}

func TestVCardIsStoredAndReplaced(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "r")
	a.IQ("<iq type='set' id='s1'>" + card + "</iq>")
	a.IQ("<iq type='set' id='s2'><vCard xmlns='vcard-temp'><FN>Alice L.</FN></vCard></iq>")
	a.Close()

	a2 := s.Dial(t, "alice", "pa", "other")
	got := a2.IQ("<iq type='get' id='g1'><vCard xmlns='vcard-temp'/></iq>").String()
	if !strings.Contains(got, "<FN>Alice L.</FN>") || strings.Contains(got, "BINVAL") {
		t.Fatalf("after replacing and reconnecting: %s", got)
	}
}

// hookModule stands for avatar conversion (XEP-0398), which follows vCard
// changes through the "vcard/updated" event.
type hookModule struct{ got chan string }

func (hookModule) Name() string { return "test-vcard-hook" }
func (m hookModule) Register(h *xmpp.Host) error {
	h.Hook("vcard/updated", 0, func(_ context.Context, ev *xmpp.Event) bool {
		m.got <- ev.Stanza.From.Bare().String() + " " + ev.Stanza.Payload().ChildText(vcard.NS, "FN")
		return false
	})
	return nil
}

func TestUpdateFiresEvent(t *testing.T) {
	s := servertest.Start(t)
	hm := hookModule{got: make(chan string, 4)}
	servertest.Must(t, s.XMPP.Register(hm))
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "r")
	b := s.Dial(t, "bob", "pb", "r")
	b.IQ("<iq type='set' id='s0' to='alice@localhost'><vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard></iq>")
	a.IQ("<iq type='set' id='s1'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>")
	select {
	case got := <-hm.got:
		if got != "alice@localhost Alice" {
			t.Fatalf("event for %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no vcard/updated event")
	}
	if len(hm.got) != 0 {
		t.Fatalf("a refused set fired the event too: %q", <-hm.got)
	}
}
