package elem

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// Errors the decoder reports; the stream layer maps each to a stream error.
var (
	// ErrTooBig: a stanza exceeded the size limit (policy-violation).
	ErrTooBig = errors.New("stanza exceeds the size limit")
	// ErrTooDeep: elements nested deeper than the depth limit (policy-violation).
	ErrTooDeep = errors.New("stanza nests elements too deeply")
	// ErrRestricted: a comment, processing instruction or DTD (restricted-xml).
	ErrRestricted = errors.New("comments, processing instructions and DTDs are not allowed")
	// ErrStreamClosed: the peer closed its stream with </stream:stream>.
	ErrStreamClosed = errors.New("stream closed by peer")
	// ErrBadFormat: well-formed XML that is not a valid XMPP stream (bad-format).
	ErrBadFormat = errors.New("text at the stream level")
)

// Limits bound what a peer can make the decoder hold in memory.
type Limits struct {
	MaxBytes int // bytes of one stanza, whitespace before it included
	MaxDepth int // nesting depth, the stanza itself being 1
}

// countingReader enforces the byte limit while the XML decoder is still
// reading, so an oversized stanza is refused before it is buffered.
type countingReader struct {
	r     io.ByteReader
	n     int
	limit int
}

func (c *countingReader) ReadByte() (byte, error) {
	if c.n >= c.limit {
		return 0, ErrTooBig
	}
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// Read exists because xml.NewDecoder only uses ReadByte when its reader is
// also an io.Reader; it is never called by the decoder.
func (c *countingReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b, err := c.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = b
	return 1, nil
}

// Decoder reads a stream header and then whole stanzas from one XML stream.
type Decoder struct {
	cr     countingReader
	xd     *xml.Decoder
	limits Limits
}

// NewDecoder returns a decoder reading from r. r should be buffered: the
// decoder reads one byte at a time.
func NewDecoder(r io.ByteReader, limits Limits) *Decoder {
	d := &Decoder{limits: limits}
	d.cr = countingReader{r: r, limit: limits.MaxBytes}
	d.xd = xml.NewDecoder(&d.cr)
	d.xd.Strict = true
	// No CharsetReader: a non-UTF-8 encoding declaration is an error.
	return d
}

// SetLimits changes the limits, as after authentication.
func (d *Decoder) SetLimits(l Limits) { d.limits = l }

// Consumed reports the bytes read for the last element, for rate limiting.
func (d *Decoder) Consumed() int { return d.cr.n }

func (d *Decoder) token() (xml.Token, error) {
	t, err := d.xd.Token()
	if err != nil {
		// Our reader's sentinel errors come back wrapped or verbatim.
		if errors.Is(err, ErrTooBig) {
			return nil, ErrTooBig
		}
		return nil, err
	}
	return t, nil
}

// ReadHeader reads up to and including the stream's opening tag.
func (d *Decoder) ReadHeader() (xml.StartElement, error) {
	d.cr.n, d.cr.limit = 0, d.limits.MaxBytes
	for first := true; ; first = false {
		t, err := d.token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := t.(type) {
		case xml.ProcInst:
			if !first || t.Target != "xml" {
				return xml.StartElement{}, ErrRestricted
			}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return xml.StartElement{}, ErrBadFormat
			}
		case xml.StartElement:
			return t.Copy(), nil
		case xml.EndElement:
			return xml.StartElement{}, ErrBadFormat
		default:
			return xml.StartElement{}, ErrRestricted
		}
	}
}

// ReadElement reads the next top-level element of the stream. It returns
// ErrStreamClosed when the peer ends the stream.
func (d *Decoder) ReadElement() (*Element, error) {
	d.cr.n, d.cr.limit = 0, d.limits.MaxBytes
	var stack []*Element
	for {
		t, err := d.token()
		if err != nil {
			return nil, err
		}
		switch t := t.(type) {
		case xml.StartElement:
			if len(stack) >= d.limits.MaxDepth {
				return nil, ErrTooDeep
			}
			e := &Element{Name: t.Name}
			for _, a := range t.Attr {
				if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
					continue
				}
				e.Attr = append(e.Attr, a)
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, e)
			}
			stack = append(stack, e)
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, ErrStreamClosed
			}
			e := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return e, nil
			}
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, ErrBadFormat
				}
				continue
			}
			p := stack[len(stack)-1]
			// Merge adjacent text so a CDATA split does not make two nodes.
			if n := len(p.Children); n > 0 {
				if prev, ok := p.Children[n-1].(Text); ok {
					p.Children[n-1] = prev + Text(t)
					continue
				}
			}
			p.Children = append(p.Children, Text(t))
		case xml.Comment, xml.ProcInst, xml.Directive:
			return nil, ErrRestricted
		default:
			return nil, fmt.Errorf("unexpected XML token %T", t)
		}
	}
}
