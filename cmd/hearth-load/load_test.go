package main

import (
	"bytes"
	"crypto/sha1"
	"io"
	"testing"
)

// RFC 5802, section 5.
func TestScramSHA1Vector(t *testing.T) {
	c := &scramClient{h: sha1.New, mech: "SCRAM-SHA-1", user: "user", pass: "pencil", cache: newSaltCache(), nonce: "fyko+d2lbbFgONRv9qkxdawL"}
	if got := string(c.first()); got != "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL" {
		t.Fatalf("client-first = %q", got)
	}
	fin, err := c.final([]byte("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="; string(fin) != want {
		t.Fatalf("client-final = %q, want %q", fin, want)
	}
	if err := c.verify([]byte("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")); err != nil {
		t.Fatal(err)
	}
	if err := c.verify([]byte("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=")); err == nil {
		t.Fatal("a wrong server signature was accepted")
	}
}

// oneByte forces the scanner through every refill path.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:1]) }

func TestScannerSplitsStream(t *testing.T) {
	in := "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='x>y'> " +
		"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>\n" +
		"<message id='m42' to=\"a@b/c\"><body>1 &gt; 0 > -1</body><x/></message>" +
		"<presence/></stream:stream>"
	for _, rd := range []io.Reader{bytes.NewReader([]byte(in)), oneByte{bytes.NewReader([]byte(in))}} {
		s := newScanner(rd, 4)
		type ev struct {
			kind eventKind
			name string
		}
		var got []ev
		var msg []byte
		for {
			kind, raw, err := s.next()
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			got = append(got, ev{kind, string(elemName(raw))})
			if string(elemName(raw)) == "message" {
				msg = append([]byte(nil), raw...)
			}
			if kind == evClose {
				break
			}
		}
		want := []ev{{evOpen, "stream:stream"}, {evElem, "stream:features"}, {evElem, "message"}, {evElem, "presence"}, {evClose, ""}}
		if len(got) != len(want) {
			t.Fatalf("events %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("event %d = %v, want %v", i, got[i], want[i])
			}
		}
		if string(attr(msg, "id")) != "m42" || string(attr(msg, "to")) != "a@b/c" {
			t.Fatalf("attributes of %s", msg)
		}
		if ts, ok := parseStamp(attr(msg, "id")); !ok || ts != 42 {
			t.Fatalf("stamp %d %v", ts, ok)
		}
	}
}
