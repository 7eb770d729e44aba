package xmpp

import (
	"crypto/tls"
	"net"

	"github.com/merveilles/hearth/server/xmpp/elem"
)

// NSStreams is the namespace of stream error conditions.
const NSStreams = "urn:ietf:params:xml:ns:xmpp-streams"

// StreamError is an RFC 6120 section 4.9 stream error; sending one ends the
// stream.
type StreamError struct {
	Condition string
	Text      string
}

func (e *StreamError) Error() string {
	if e.Text != "" {
		return "stream error " + e.Condition + ": " + e.Text
	}
	return "stream error " + e.Condition
}

// element renders <stream:error/>. The prefix form is used because some
// clients match the literal "stream:error".
func (e *StreamError) element() rawElement {
	var b = []byte("<stream:error>")
	c := elem.New(NSStreams, e.Condition)
	s := c.String()
	b = append(b, s...)
	if e.Text != "" {
		t := elem.New(NSStreams, "text")
		t.Attr = append(t.Attr, xmlLang("en"))
		b = append(b, t.AddText(e.Text).String()...)
	}
	b = append(b, "</stream:error>"...)
	return rawElement(b)
}

type rawElement []byte

// WriteTo writes the raw bytes; the namespace argument is unused.
func (r rawElement) WriteTo(w elem.Writer, _ string) { w.WriteString(string(r)) }

func closeWrite(c net.Conn) {
	switch c := c.(type) {
	case *tls.Conn:
		_ = c.CloseWrite()
	case *net.TCPConn:
		_ = c.CloseWrite()
	}
}
