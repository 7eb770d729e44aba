package elem

import (
	"strings"
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
	for _, n := range e.Children {
		switch c := n.(type) {
		case *Element:
			c.WriteTo(w, e.Name.Space)
		case Text:
			escapeText(w, string(c))
		}
	}
	w.WriteString("</")
	w.WriteString(e.Name.Local)
	w.WriteByte('>')
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func escapeText(w Writer, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var rep string
		switch s[i] {
		case '<':
			rep = "&lt;"
		case '>':
			rep = "&gt;"
		case '&':
			rep = "&amp;"
		case '\r':
			rep = "&#xD;"
		default:
			continue
		}
		w.WriteString(s[last:i])
		w.WriteString(rep)
		last = i + 1
	}
	w.WriteString(s[last:])
}

func escapeAttr(w Writer, s string) {
	if !strings.ContainsAny(s, "<>&\"'\r\n\t") {
		w.WriteString(s)
		return
	}
	last := 0
	for i := 0; i < len(s); i++ {
		var rep string
		switch s[i] {
		case '<':
			rep = "&lt;"
		case '>':
			rep = "&gt;"
		case '&':
			rep = "&amp;"
		case '"':
			rep = "&quot;"
		case '\'':
			rep = "&apos;"
		case '\r':
			rep = "&#xD;"
		case '\n':
			rep = "&#xA;"
		case '\t':
			rep = "&#x9;"
		default:
			continue
		}
		w.WriteString(s[last:i])
		w.WriteString(rep)
		last = i + 1
	}
	w.WriteString(s[last:])
}
