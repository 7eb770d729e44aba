package elem

import (
	"unicode/utf8"
)

// Writer is what serialization needs; *bytes.Buffer, *strings.Builder and
// *bufio.Writer all satisfy it.
type Writer interface {
	WriteString(s string) (int, error)
	WriteByte(c byte) error
}

// WriteTo serializes e. parentNS is the default namespace in scope where e is
// written (jabber:client for stanzas of a client stream); an element in
// another namespace gets its own xmlns declaration.
func (e *Element) WriteTo(w Writer, parentNS string) {
	w.WriteByte('<')
	w.WriteString(e.Name.Local)
	if e.Name.Space != parentNS {
		w.WriteString(` xmlns="`)
		escapeAttr(w, e.Name.Space)
		w.WriteByte('"')
	}
	extra := 0
	for _, a := range e.Attr {
		switch a.Name.Space {
		case "":
			w.WriteByte(' ')
			w.WriteString(a.Name.Local)
		case NSXML, "xml":
			w.WriteString(" xml:")
			w.WriteString(a.Name.Local)
		case "xmlns":
			// Namespace declarations are regenerated from Name.Space.
			continue
		default:
			// A foreign-namespace attribute gets a prefix declared right here.
			extra++
			p := "ns" + itoa(extra)
			w.WriteString(" xmlns:" + p + `="`)
			escapeAttr(w, a.Name.Space)
			w.WriteString(`" ` + p + ":" + a.Name.Local)
		}
		w.WriteString(`="`)
		escapeAttr(w, a.Value)
		w.WriteByte('"')
	}
	if len(e.Children) == 0 {
		w.WriteString("/>")
		return
	}
	w.WriteByte('>')
	if s, ok := e.memoized(); ok {
		w.WriteString(s)
	} else {
		e.writeChildren(w)
	}
	w.WriteString("</")
	w.WriteString(e.Name.Local)
	w.WriteByte('>')
}

func (e *Element) writeChildren(w Writer) {
	for _, n := range e.Children {
		switch c := n.(type) {
		case *Element:
			c.WriteTo(w, e.Name.Space)
		case Text:
			escapeText(w, string(c))
		}
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// The escapers also replace what XML cannot carry at all (invalid UTF-8,
// control characters, U+FFFE/U+FFFF) with U+FFFD. Parsed stanzas never hold
// such characters, but text a module builds (an error message quoting bad
// input, say) might, and one bad byte would make the whole stream
// unreadable for the client.

func escapeText(w Writer, s string) {
	escape(w, s, false)
}

func escapeAttr(w Writer, s string) {
	escape(w, s, true)
}

// textSpecial and attrSpecial mark the bytes escape must look at: markup,
// control characters and the first byte of anything non-ASCII (checked for
// valid UTF-8); in attributes also quotes, newlines and tabs. Everything
// else is copied in runs: the scan is what a broadcast of a large stanza
// (an OMEMO message with a key per device) pays once per recipient.
var textSpecial, attrSpecial = specialBytes(false), specialBytes(true)

func specialBytes(attr bool) (t [256]bool) {
	for c := range 256 {
		t[c] = c == '<' || c == '>' || c == '&' || c == '\r' || c < 0x20 && c != '\n' && c != '\t' || c >= utf8.RuneSelf ||
			attr && (c == '"' || c == '\'' || c == '\n' || c == '\t')
	}
	return t
}

func escape(w Writer, s string, attr bool) {
	special := &textSpecial
	if attr {
		special = &attrSpecial
	}
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if !special[c] {
			i++
			continue
		}
		var rep string
		size := 1
		switch {
		case c == '<':
			rep = "&lt;"
		case c == '>':
			rep = "&gt;"
		case c == '&':
			rep = "&amp;"
		case c == '\r':
			rep = "&#xD;"
		case attr && c == '"':
			rep = "&quot;"
		case attr && c == '\'':
			rep = "&apos;"
		case attr && c == '\n':
			rep = "&#xA;"
		case attr && c == '\t':
			rep = "&#x9;"
		case c < 0x20 && c != '\n' && c != '\t':
			rep = "\uFFFD"
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(s[i:])
			size = n
			if r == utf8.RuneError && n == 1 || r == 0xFFFE || r == 0xFFFF {
				rep = "\uFFFD"
			} else {
				i += n
				continue
			}
		default:
			i++
			continue
		}
		w.WriteString(s[last:i])
		w.WriteString(rep)
		i += size
		last = i
	}
	w.WriteString(s[last:])
}
