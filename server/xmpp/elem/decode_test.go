package elem

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

const testHeader = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"

func newTestDecoder(s string, l Limits) *Decoder {
	return NewDecoder(bufio.NewReader(strings.NewReader(s)), l)
}

// readOne parses body after a stream header and returns its first element.
func readOne(t *testing.T, body string) (*Element, error) {
	t.Helper()
	d := newTestDecoder(testHeader+body, Limits{MaxBytes: 64 << 10, MaxDepth: 32})
	if _, err := d.ReadHeader(); err != nil {
		t.Fatalf("header: %v", err)
	}
	return d.ReadElement()
}

func TestDecoderRejects(t *testing.T) {
	invalidUTF8 := string([]byte{0xff, 0xfe})
	cases := []struct {
		name, body string
		want       error // nil means any error that is not one of ours
	}{
		{"comment", "<message><!-- hi --></message>", ErrRestricted},
		{"comment between stanzas", "<!-- hi --><message/>", ErrRestricted},
		{"processing instruction", "<message><?php echo 1 ?></message>", ErrRestricted},
		{"doctype", "<!DOCTYPE x [<!ENTITY a 'aaaa'>]><message/>", ErrRestricted},
		{"entity declaration in element", "<message><!ENTITY a 'b'></message>", ErrRestricted},
		{"entity reference in text", "<message><body>&lol9;</body></message>", ErrRestricted},
		{"entity reference in attribute", "<message to='&xxe;'/>", ErrRestricted},
		{"text at stream level", "hello<message/>", ErrBadFormat},
		{"undeclared element prefix", "<foo:message/>", ErrNotWellFormed},
		{"undeclared attribute prefix", "<message foo:bar='1'/>", ErrNotWellFormed},
		{"xmlns element prefix", "<xmlns:message/>", ErrNotWellFormed},
		{"rebinding xml", "<message xmlns:xml='urn:x'/>", ErrNotWellFormed},
		{"binding to the xml namespace", "<message xmlns:x='http://www.w3.org/XML/1998/namespace'/>", ErrNotWellFormed},
		{"declaring xmlns", "<message xmlns:xmlns='urn:x'/>", ErrNotWellFormed},
		{"default namespace is xml", "<message xmlns='http://www.w3.org/XML/1998/namespace'/>", ErrNotWellFormed},
		{"duplicate attribute", "<message to='a@b' to='c@d'/>", ErrNotWellFormed},
		{"duplicate attribute via two prefixes", "<message xmlns:a='urn:x' xmlns:b='urn:x' a:z='1' b:z='2'/>", ErrNotWellFormed},
		{"duplicate among many attributes", "<message" + manyAttrs(50) + " a7='dup'/>", ErrNotWellFormed},
		{"empty prefix", "<message :a='1'/>", ErrNotWellFormed},
		{"trailing colon", "<message a:='1'/>", ErrNotWellFormed},
		{"invalid UTF-8 in text", "<message><body>" + invalidUTF8 + "</body></message>", nil},
		{"invalid UTF-8 in attribute", "<message id='" + invalidUTF8 + "'/>", nil},
		{"invalid UTF-8 in element name", "<mess" + invalidUTF8 + "age/>", nil},
		{"invalid UTF-8 in attribute name", "<message i" + invalidUTF8 + "d='1'/>", nil},
		{"overlong UTF-8", "<message><body>\xc0\xbc</body></message>", nil},
		{"UTF-8 surrogate", "<message><body>\xed\xa0\x80</body></message>", nil},
		{"NUL character", "<message><body>\x00</body></message>", nil},
		{"NUL character reference", "<message><body>&#0;</body></message>", nil},
		{"control character reference", "<message><body>&#x1B;</body></message>", nil},
		{"character reference out of range", "<message><body>&#x110000;</body></message>", nil},
		{"mismatched end tag", "<message></presence>", nil},
		{"unquoted attribute", "<message to=a/>", nil},
		{"lone ampersand", "<message><body>a & b</body></message>", nil},
		{"lt in attribute", "<message id='<'/>", nil},
		{"two colons", "<a:b:c/>", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := readOne(t, tc.body)
			if err == nil {
				t.Fatalf("accepted %q as %s", tc.body, e)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.want == nil {
				for _, ours := range []error{ErrTooBig, ErrTooDeep, ErrRestricted, ErrStreamClosed, ErrBadFormat} {
					if errors.Is(err, ours) {
						t.Fatalf("got %v, want a syntax error", err)
					}
				}
			}
		})
	}
}

func manyAttrs(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(" a" + itoa(i) + "='v'")
	}
	return b.String()
}

func TestDecoderAccepts(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"predefined entities", "<message><body>&lt;&gt;&amp;&apos;&quot;</body></message>", `<message><body>&lt;&gt;&amp;'"</body></message>`},
		{"character references", "<message><body>&#x263A;&#65;</body></message>", "<message><body>☺A</body></message>"},
		{"CDATA", "<message><body>a<![CDATA[<b>]]>c</body></message>", "<message><body>a&lt;b&gt;c</body></message>"},
		{"empty CDATA", "<message><body><![CDATA[]]></body></message>", "<message><body/></message>"},
		{"declared prefix", "<message xmlns:x='urn:x'><x:y x:a='1'/></message>", `<message><y xmlns="urn:x" xmlns:ns1="urn:x" ns1:a="1"/></message>`},
		{"xml:lang", "<message xml:lang='fr'/>", `<message xml:lang="fr"/>`},
		{"foreign default namespace", "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>", `<iq type="get" id="1"><query xmlns="jabber:iq:roster"/></iq>`},
		{"no namespace", "<message xmlns=''/>", `<message xmlns=""/>`},
		{"whitespace ping before", "  \n <message/>", "<message/>"},
		{"newline in attribute", "<message id='a&#xA;b'/>", `<message id="a&#xA;b"/>`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := readOne(t, tc.body)
			if err != nil {
				t.Fatalf("%q: %v", tc.body, err)
			}
			if got := e.String(); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDecoderXMLDeclaration(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr error
	}{
		{"<?xml version='1.0'?>" + testHeader, nil},
		{"<?xml version='1.0' encoding='UTF-8'?>" + testHeader, nil},
		{"<?xml version='1.0' encoding='ISO-8859-1'?>" + testHeader, ErrUnsupportedEncoding},
		{" <?xml version='1.0'?>" + testHeader, ErrRestricted},
		{"<?xml version='1.0'?><?xml version='1.0'?>" + testHeader, ErrRestricted},
		{"<?php x?>" + testHeader, ErrRestricted},
		{"<!-- c -->" + testHeader, ErrRestricted},
		{"<!DOCTYPE stream>" + testHeader, ErrRestricted},
		{"junk" + testHeader, ErrBadFormat},
		{"<foo:stream xmlns='jabber:client'>", ErrNotWellFormed},
	} {
		d := newTestDecoder(tc.in, Limits{MaxBytes: 4096, MaxDepth: 8})
		_, err := d.ReadHeader()
		if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
			t.Errorf("%q: got %v, want %v", tc.in, err, tc.wantErr)
		}
	}
}

func TestDecoderLimits(t *testing.T) {
	deep := func(n int) string {
		return strings.Repeat("<a>", n) + strings.Repeat("</a>", n)
	}
	for _, tc := range []struct {
		name, body string
		lim        Limits
		want       error
	}{
		{"at depth limit", deep(8), Limits{MaxBytes: 1 << 20, MaxDepth: 8}, nil},
		{"over depth limit", deep(9), Limits{MaxBytes: 1 << 20, MaxDepth: 8}, ErrTooDeep},
		{"4000 deep", deep(4000), Limits{MaxBytes: 1 << 20, MaxDepth: 48}, ErrTooDeep},
		{"10000 deep unclosed", strings.Repeat("<a>", 10000), Limits{MaxBytes: 1 << 20, MaxDepth: 48}, ErrTooDeep},
		{"over size", "<message><body>" + strings.Repeat("x", 5000) + "</body></message>", Limits{MaxBytes: 4096, MaxDepth: 8}, ErrTooBig},
		{"huge attribute", "<message id='" + strings.Repeat("x", 5000) + "'/>", Limits{MaxBytes: 4096, MaxDepth: 8}, ErrTooBig},
		{"whitespace flood", strings.Repeat(" ", 5000) + "<message/>", Limits{MaxBytes: 4096, MaxDepth: 8}, ErrTooBig},
		{"at node limit", "<m>" + strings.Repeat("<a/>", 9) + "</m>", Limits{MaxBytes: 1 << 20, MaxDepth: 8, MaxNodes: 10}, nil},
		{"over node limit", "<m>" + strings.Repeat("<a/>", 10) + "</m>", Limits{MaxBytes: 1 << 20, MaxDepth: 8, MaxNodes: 10}, ErrTooBig},
		{"text nodes count", "<m>" + strings.Repeat("x<a/>", 5) + "</m>", Limits{MaxBytes: 1 << 20, MaxDepth: 8, MaxNodes: 10}, ErrTooBig},
		{"merged text counts once", "<m>a<![CDATA[b]]>c<![CDATA[d]]>" + strings.Repeat("<a/>", 8) + "</m>", Limits{MaxBytes: 1 << 20, MaxDepth: 8, MaxNodes: 10}, nil},
		{"unterminated comment", "<!--" + strings.Repeat("x", 5000), Limits{MaxBytes: 4096, MaxDepth: 8}, ErrTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDecoder(testHeader+tc.body, Limits{MaxBytes: 4096, MaxDepth: 8})
			if _, err := d.ReadHeader(); err != nil {
				t.Fatal(err)
			}
			d.SetLimits(tc.lim)
			_, err := d.ReadElement()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				// A spent decoder keeps failing rather than resuming mid-stanza.
				if _, err2 := d.ReadElement(); !errors.Is(err2, tc.want) {
					t.Fatalf("second read: got %v, want %v again", err2, tc.want)
				}
			}
		})
	}
}

func TestDecoderStreamEnd(t *testing.T) {
	d := newTestDecoder(testHeader+"<message/></stream:stream>", Limits{MaxBytes: 4096, MaxDepth: 8})
	if _, err := d.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadElement(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadElement(); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("got %v, want ErrStreamClosed", err)
	}
}

func TestNamespaceScopeEndsWithElement(t *testing.T) {
	// A prefix declared on one stanza is not in scope for the next one.
	d := newTestDecoder(testHeader+"<message xmlns:x='urn:x'><x:y/></message><message><x:y/></message>", Limits{MaxBytes: 4096, MaxDepth: 8})
	if _, err := d.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadElement(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadElement(); !errors.Is(err, ErrNotWellFormed) {
		t.Fatalf("got %v, want ErrNotWellFormed", err)
	}
}
