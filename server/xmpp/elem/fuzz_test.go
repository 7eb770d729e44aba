package elem

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

var fuzzLimits = Limits{MaxBytes: 16 << 10, MaxDepth: 24, MaxNodes: 500}

// FuzzDecoder feeds arbitrary bytes after a stream header. The decoder must
// never panic or exceed its limits, and every element it returns must
// serialize to XML that parses back to the same tree: modules re-serialize
// stanzas, so anything that does not round-trip would let two readers see
// different stanzas.
//
// The seed corpus is in testdata/fuzz/FuzzDecoder; go test replays it.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte("<message to='a@b' type='chat'><body>hi &amp; &#x263A;</body></message>"))
	f.Add([]byte("<iq type='get' id='1'><query xmlns='jabber:iq:roster' xmlns:x='urn:x' x:a='1'/></iq>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(bufio.NewReader(bytes.NewReader(append([]byte(testHeader), data...))), fuzzLimits)
		if _, err := d.ReadHeader(); err != nil {
			t.Fatalf("fixed header: %v", err)
		}
		for i := 0; i < 64; i++ {
			e, err := d.ReadElement()
			if d.Consumed() > fuzzLimits.MaxBytes {
				t.Fatalf("read %d bytes for one element, limit %d", d.Consumed(), fuzzLimits.MaxBytes)
			}
			if err != nil {
				if e != nil {
					t.Fatal("element returned with an error")
				}
				return
			}
			if depth(e) > fuzzLimits.MaxDepth {
				t.Fatalf("depth %d over the limit %d", depth(e), fuzzLimits.MaxDepth)
			}
			if n := countNodes(e); n > fuzzLimits.MaxNodes {
				t.Fatalf("%d nodes, over the limit %d", n, fuzzLimits.MaxNodes)
			}
			checkValid(t, e)
			checkRoundTrip(t, e)
		}
	})
}

func countNodes(e *Element) int {
	n := 1
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok {
			n += countNodes(ce)
		} else {
			n++
		}
	}
	return n
}

func depth(e *Element) int {
	max := 0
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok {
			if d := depth(ce); d > max {
				max = d
			}
		}
	}
	return max + 1
}

// checkValid asserts that everything in the tree is valid UTF-8 made of XML
// characters, with names that have no colon left in them.
func checkValid(t *testing.T, e *Element) {
	t.Helper()
	str := func(what, s string) {
		if !utf8.ValidString(s) {
			t.Fatalf("%s %q is not valid UTF-8", what, s)
		}
		for _, r := range s {
			if !(r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF) {
				t.Fatalf("%s %q holds the non-XML character %U", what, s, r)
			}
		}
	}
	if e.Name.Local == "" || strings.Contains(e.Name.Local, ":") {
		t.Fatalf("bad element name %q", e.Name.Local)
	}
	str("element name", e.Name.Local)
	str("namespace", e.Name.Space)
	for _, a := range e.Attr {
		if a.Name.Local == "" || strings.Contains(a.Name.Local, ":") || a.Name.Space == "xmlns" {
			t.Fatalf("bad attribute name %+v", a.Name)
		}
		str("attribute name", a.Name.Local)
		str("attribute value", a.Value)
	}
	for i, c := range e.Children {
		switch c := c.(type) {
		case Text:
			if c == "" {
				t.Fatal("empty text node")
			}
			if i > 0 {
				if _, ok := e.Children[i-1].(Text); ok {
					t.Fatal("adjacent text nodes")
				}
			}
			str("text", string(c))
		case *Element:
			checkValid(t, c)
		}
	}
}

func checkRoundTrip(t *testing.T, e *Element) {
	t.Helper()
	var b strings.Builder
	e.WriteTo(&b, NSClient)
	out := b.String()
	d := NewDecoder(bufio.NewReader(strings.NewReader(testHeader+out)), Limits{MaxBytes: 1 << 22, MaxDepth: fuzzLimits.MaxDepth})
	if _, err := d.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	back, err := d.ReadElement()
	if err != nil {
		t.Fatalf("re-serialized element %q does not parse: %v", out, err)
	}
	if err := equal(e, back); err != nil {
		t.Fatalf("round trip changed the element: %v\nserialized: %q", err, out)
	}
	if again := back.String(); again != e.String() {
		t.Fatalf("serialization is not stable: %q then %q", e.String(), again)
	}
}

func equal(a, b *Element) error {
	if a.Name != b.Name {
		return errors.New("name " + fmtName(a.Name) + " became " + fmtName(b.Name))
	}
	if len(a.Attr) != len(b.Attr) {
		return errors.New("attribute count changed on " + fmtName(a.Name))
	}
	for i := range a.Attr {
		if a.Attr[i] != b.Attr[i] {
			return errors.New("attribute " + fmtName(a.Attr[i].Name) + "=" + a.Attr[i].Value + " became " + fmtName(b.Attr[i].Name) + "=" + b.Attr[i].Value)
		}
	}
	if len(a.Children) != len(b.Children) {
		return errors.New("child count changed on " + fmtName(a.Name))
	}
	for i := range a.Children {
		switch ac := a.Children[i].(type) {
		case Text:
			bc, ok := b.Children[i].(Text)
			if !ok || ac != bc {
				return errors.New("text changed in " + fmtName(a.Name))
			}
		case *Element:
			bc, ok := b.Children[i].(*Element)
			if !ok {
				return errors.New("element became text in " + fmtName(a.Name))
			}
			if err := equal(ac, bc); err != nil {
				return err
			}
		}
	}
	return nil
}

func fmtName(n xml.Name) string { return "{" + n.Space + "}" + n.Local }
