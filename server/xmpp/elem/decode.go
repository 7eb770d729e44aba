package elem

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Errors the decoder reports; the stream layer maps each to a stream error.
var (
	// ErrTooBig: a stanza exceeded the size limit (policy-violation).
	ErrTooBig = errors.New("stanza exceeds the size limit")
	// ErrTooDeep: elements nested deeper than the depth limit (policy-violation).
	ErrTooDeep = errors.New("stanza nests elements too deeply")
	// ErrRestricted: a comment, processing instruction, DTD or entity
	// reference (restricted-xml).
	ErrRestricted = errors.New("comments, processing instructions, DTDs and entity references are not allowed")
	// ErrStreamClosed: the peer closed its stream with </stream:stream>.
	ErrStreamClosed = errors.New("stream closed by peer")
	// ErrBadFormat: well-formed XML that is not a valid XMPP stream (bad-format).
	ErrBadFormat = errors.New("text at the stream level")
	// ErrNotWellFormed: XML that encoding/xml accepts but the XML or XML
	// namespaces recommendations do not (not-well-formed).
	ErrNotWellFormed = errors.New("XML is not namespace-well-formed")
	// ErrUnsupportedEncoding: an encoding other than UTF-8 was declared
	// (unsupported-encoding).
	ErrUnsupportedEncoding = errors.New("only UTF-8 is supported")
)

const (
	nsXMLNS  = "http://www.w3.org/2000/xmlns/"
	prefixNS = "xmlns"
)

// Limits bound what a peer can make the decoder hold in memory.
type Limits struct {
	MaxBytes int // bytes of one stanza, whitespace before it included
	MaxDepth int // nesting depth, the stanza itself being 1
	// MaxNodes bounds elements plus text nodes in one stanza (0: no
	// bound). A stanza of tiny empty elements costs about 90 bytes of
	// allocation per input byte, so size alone is a weak bound on memory.
	MaxNodes int
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
// After any error the decoder is spent: every later call returns the same
// error, because the XML state behind it can no longer be trusted.
type Decoder struct {
	cr     countingReader
	xd     *xml.Decoder
	limits Limits
	ns     nsScope
	err    error
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
		return nil, classify(err)
	}
	return t, nil
}

// classify turns encoding/xml's errors about restricted features into ours;
// it reports them as syntax errors, but XMPP gives them their own stream
// error conditions.
func classify(err error) error {
	if errors.Is(err, ErrTooBig) {
		return ErrTooBig
	}
	var syn *xml.SyntaxError
	if errors.As(err, &syn) {
		// "&name;" other than the five predefined entities. Character
		// references ("&#...;") that are out of range stay syntax errors.
		if rest, ok := strings.CutPrefix(syn.Msg, "invalid character entity &"); ok && !strings.HasPrefix(rest, "#") && strings.HasSuffix(rest, ";") {
			return fmt.Errorf("%w: entity reference &%s", ErrRestricted, rest)
		}
		return err
	}
	if strings.Contains(err.Error(), "CharsetReader") {
		return fmt.Errorf("%w: %v", ErrUnsupportedEncoding, err)
	}
	return err
}

// ReadHeader reads up to and including the stream's opening tag.
func (d *Decoder) ReadHeader() (hdr xml.StartElement, err error) {
	if d.err != nil {
		return xml.StartElement{}, d.err
	}
	defer func() {
		if err != nil {
			d.err = err
		}
	}()
	d.cr.n, d.cr.limit = 0, d.limits.MaxBytes
	for first := true; ; first = false {
		t, err := d.token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := t.(type) {
		case xml.ProcInst:
			// Only the XML declaration, and only as the very first thing.
			if !first || t.Target != "xml" {
				return xml.StartElement{}, ErrRestricted
			}
			if !utf8.Valid(t.Inst) {
				return xml.StartElement{}, fmt.Errorf("%w: invalid UTF-8 in the XML declaration", ErrNotWellFormed)
			}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return xml.StartElement{}, ErrBadFormat
			}
		case xml.StartElement:
			if err := d.ns.push(t); err != nil {
				return xml.StartElement{}, err
			}
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
func (d *Decoder) ReadElement() (e *Element, err error) {
	if d.err != nil {
		return nil, d.err
	}
	defer func() {
		if err != nil {
			d.err = err
		}
	}()
	d.cr.n, d.cr.limit = 0, d.limits.MaxBytes
	var stack []*Element
	nodes := 0
	tooMany := func() bool {
		nodes++
		return d.limits.MaxNodes > 0 && nodes > d.limits.MaxNodes
	}
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
			if tooMany() {
				return nil, fmt.Errorf("%w: more than %d elements and text nodes", ErrTooBig, d.limits.MaxNodes)
			}
			if err := d.ns.push(t); err != nil {
				return nil, err
			}
			e := &Element{Name: t.Name}
			for _, a := range t.Attr {
				if a.Name.Space == prefixNS || (a.Name.Space == "" && a.Name.Local == prefixNS) {
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
			d.ns.pop()
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
			if len(t) == 0 {
				// An empty CDATA section: a Text("") node would not
				// survive re-serialization.
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
			if tooMany() {
				return nil, fmt.Errorf("%w: more than %d elements and text nodes", ErrTooBig, d.limits.MaxNodes)
			}
			p.Children = append(p.Children, Text(t))
		case xml.Comment, xml.ProcInst, xml.Directive:
			return nil, ErrRestricted
		default:
			return nil, fmt.Errorf("unexpected XML token %T", t)
		}
	}
}

// nsScope checks what encoding/xml lets through about namespaces: it
// leaves an undeclared prefix in Name.Space as if it were a namespace URI,
// accepts duplicate attributes and names with several colons, and lets
// the reserved xml and xmlns namespaces be rebound. Each of these would
// make two readers of the same stanza disagree about what it says.
type nsScope struct {
	inScope map[string]int // namespace URIs bound by an enclosing element
	added   []string       // URIs bound, in order, to undo on pop
	marks   []int          // len(added) at each open element
}

func (s *nsScope) push(t xml.StartElement) error {
	s.marks = append(s.marks, len(s.added))
	for _, a := range t.Attr {
		var uri string
		switch {
		case a.Name.Space == prefixNS:
			uri = a.Value
			switch {
			case a.Name.Local == prefixNS, a.Name.Local == "xml" && uri != NSXML,
				a.Name.Local != "xml" && uri == NSXML, uri == nsXMLNS:
				return fmt.Errorf("%w: reserved prefix or namespace rebound (xmlns:%s)", ErrNotWellFormed, a.Name.Local)
			}
		case a.Name.Space == "" && a.Name.Local == prefixNS:
			uri = a.Value
			if uri == NSXML || uri == nsXMLNS {
				return fmt.Errorf("%w: reserved namespace as the default", ErrNotWellFormed)
			}
		default:
			continue
		}
		if s.inScope == nil {
			s.inScope = make(map[string]int)
		}
		s.inScope[uri]++
		s.added = append(s.added, uri)
	}
	if err := s.checkName(t.Name, true); err != nil {
		return err
	}
	for _, a := range t.Attr {
		if err := s.checkName(a.Name, false); err != nil {
			return err
		}
	}
	return checkDuplicates(t.Attr)
}

func (s *nsScope) pop() {
	if len(s.marks) == 0 {
		return
	}
	m := s.marks[len(s.marks)-1]
	s.marks = s.marks[:len(s.marks)-1]
	for _, uri := range s.added[m:] {
		if s.inScope[uri]--; s.inScope[uri] <= 0 {
			delete(s.inScope, uri)
		}
	}
	s.added = s.added[:m]
}

// checkName accepts a name whose space is empty, the xml namespace (for
// attributes) or a URI bound in scope. encoding/xml leaves an undeclared
// prefix as the space, so anything else was an undeclared prefix.
func (s *nsScope) checkName(n xml.Name, isElement bool) error {
	if strings.IndexByte(n.Local, ':') >= 0 {
		return fmt.Errorf("%w: name %q has more than one colon or an empty part", ErrNotWellFormed, n.Local)
	}
	if !validLocal(n.Local) {
		return fmt.Errorf("%w: local name %q does not start like a name", ErrNotWellFormed, n.Local)
	}
	switch {
	case n.Space == "":
		return nil
	case !isElement && (n.Space == prefixNS || n.Space == NSXML):
		return nil
	case isElement && (n.Space == prefixNS || n.Space == NSXML):
		return fmt.Errorf("%w: element %q uses a reserved prefix", ErrNotWellFormed, n.Local)
	}
	if s.inScope[n.Space] > 0 {
		return nil
	}
	return fmt.Errorf("%w: undeclared namespace prefix %q", ErrNotWellFormed, n.Space)
}

// checkDuplicates rejects an attribute given twice (after namespace
// resolution). Stanzas carry a handful of attributes, but a hostile one may
// carry thousands, so large sets use a map rather than comparing pairs.
func checkDuplicates(attrs []xml.Attr) error {
	dup := func(n xml.Name) error {
		return fmt.Errorf("%w: duplicate attribute %q", ErrNotWellFormed, n.Local)
	}
	if len(attrs) <= 8 {
		for i := range attrs {
			for j := i + 1; j < len(attrs); j++ {
				if attrs[i].Name == attrs[j].Name {
					return dup(attrs[i].Name)
				}
			}
		}
		return nil
	}
	seen := make(map[xml.Name]struct{}, len(attrs))
	for _, a := range attrs {
		if _, ok := seen[a.Name]; ok {
			return dup(a.Name)
		}
		seen[a.Name] = struct{}{}
	}
	return nil
}

// validLocal checks the first character of a local name. encoding/xml
// validates a prefixed name as a whole, so in "a:000" it never checks that
// "000" could start a name; without the prefix it cannot be written back.
func validLocal(s string) bool {
	if s == "" {
		return false
	}
	switch c := s[0]; {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_':
		return true
	case c < utf8.RuneSelf:
		return false
	}
	// A non-ASCII start is rare: let encoding/xml judge it by the same
	// tables it used for the whole name.
	_, err := xml.NewDecoder(strings.NewReader("<" + s + "/>")).Token()
	return err == nil
}
