// Package elem is hearth's in-memory XML element tree for stanzas.
//
// Stanzas are small and are inspected by many modules (routing, policy,
// blocking, archive), so a tree that can be walked and re-serialized cheaply
// is simpler and safer than re-reading token streams in every module.
package elem

import (
	"encoding/xml"
	"strings"
)

// Well-known namespaces used by the core.
const (
	NSClient = "jabber:client"
	NSStream = "http://etherx.jabber.org/streams"
	NSXML    = "http://www.w3.org/XML/1998/namespace"
	NSStanza = "urn:ietf:params:xml:ns:xmpp-stanzas"
)

// Node is either an *Element or a Text.
type Node interface{ isNode() }

// Text is character data inside an element.
type Text string

func (Text) isNode() {}

// Element is one XML element with its attributes and children. Name.Space is
// the resolved namespace URI, never a prefix.
type Element struct {
	Name     xml.Name
	Attr     []xml.Attr
	Children []Node

	memo *memo // see Memoize
}

func (*Element) isNode() {}

// New returns an element in namespace space with the given attributes, given
// as name, value pairs.
func New(space, local string, attrs ...string) *Element {
	e := &Element{Name: xml.Name{Space: space, Local: local}}
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] != "" {
			e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
		}
	}
	return e
}

// Get returns the value of the un-namespaced attribute name, or "".
func (e *Element) Get(name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// Lang returns the xml:lang attribute.
func (e *Element) Lang() string {
	for _, a := range e.Attr {
		if a.Name.Local == "lang" && (a.Name.Space == NSXML || a.Name.Space == "xml") {
			return a.Value
		}
	}
	return ""
}

// Set sets (or, with an empty value, removes) the un-namespaced attribute name.
func (e *Element) Set(name, value string) *Element {
	for i, a := range e.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			if value == "" {
				e.Attr = append(e.Attr[:i:i], e.Attr[i+1:]...)
			} else {
				e.Attr[i].Value = value
			}
			return e
		}
	}
	if value != "" {
		e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: name}, Value: value})
	}
	return e
}

// Add appends children and returns e for chaining.
func (e *Element) Add(children ...*Element) *Element {
	for _, c := range children {
		if c != nil {
			e.Children = append(e.Children, c)
		}
	}
	return e
}

// AddText appends character data.
func (e *Element) AddText(s string) *Element {
	if s != "" {
		e.Children = append(e.Children, Text(s))
	}
	return e
}

// Child returns the first child element with the given namespace and local
// name; an empty space or local matches any.
func (e *Element) Child(space, local string) *Element {
	for _, n := range e.Children {
		if c, ok := n.(*Element); ok && (space == "" || c.Name.Space == space) && (local == "" || c.Name.Local == local) {
			return c
		}
	}
	return nil
}

// Elements returns the child elements.
func (e *Element) Elements() []*Element {
	out := make([]*Element, 0, len(e.Children))
	for _, n := range e.Children {
		if c, ok := n.(*Element); ok {
			out = append(out, c)
		}
	}
	return out
}

// FirstElement returns the first child element, or nil.
func (e *Element) FirstElement() *Element {
	for _, n := range e.Children {
		if c, ok := n.(*Element); ok {
			return c
		}
	}
	return nil
}

// RemoveChildren removes every child element with the given namespace and
// local name (an empty local matches any name in the namespace).
func (e *Element) RemoveChildren(space, local string) {
	kept := e.Children[:0]
	for _, n := range e.Children {
		if c, ok := n.(*Element); ok && c.Name.Space == space && (local == "" || c.Name.Local == local) {
			continue
		}
		kept = append(kept, n)
	}
	for i := len(kept); i < len(e.Children); i++ {
		e.Children[i] = nil
	}
	e.Children = kept
}

// Text returns the concatenated character data directly inside e.
func (e *Element) Text() string {
	var b strings.Builder
	for _, n := range e.Children {
		if t, ok := n.(Text); ok {
			b.WriteString(string(t))
		}
	}
	return b.String()
}

// ChildText returns the text of the first matching child, or "".
func (e *Element) ChildText(space, local string) string {
	if c := e.Child(space, local); c != nil {
		return c.Text()
	}
	return ""
}

// Copy returns a deep copy of e, so that a module may change a stanza that
// is also being delivered elsewhere.
func (e *Element) Copy() *Element {
	if e == nil {
		return nil
	}
	c := &Element{Name: e.Name}
	if len(e.Attr) > 0 {
		c.Attr = make([]xml.Attr, len(e.Attr))
		copy(c.Attr, e.Attr)
	}
	if len(e.Children) > 0 {
		c.Children = make([]Node, len(e.Children))
		for i, n := range e.Children {
			if ce, ok := n.(*Element); ok {
				c.Children[i] = ce.Copy()
			} else {
				c.Children[i] = n
			}
		}
	}
	return c
}

// String serializes e as if it were a top-level stanza of a jabber:client
// stream.
func (e *Element) String() string {
	var b strings.Builder
	e.WriteTo(&b, NSClient)
	return b.String()
}
