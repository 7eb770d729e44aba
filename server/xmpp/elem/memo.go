package elem

import (
	"encoding/xml"
	"strings"
)

// memo is an element's children serialized once. A room writes the same
// message to hundreds of sessions, each copy differing only in its 'to';
// with a memo each copy costs its start tag and a copy of bytes instead of
// walking and escaping the children again (an OMEMO message carries a key
// for every device, several KB of text).
type memo struct {
	// The children the memo was made from: the memo is used only while
	// the element still has them (same backing array, same length).
	first *Node
	n     int
	space string // the element's namespace, the children's parent scope
	s     string
}

// Memoize serializes e's children once; later WriteTo calls on e, and on
// its ShallowCopy copies, copy those bytes. Once the list of children
// changes (Add, AddText, RemoveChildren), WriteTo walks them again; the
// caller must not change the children themselves afterwards.
func (e *Element) Memoize() {
	if len(e.Children) == 0 {
		return
	}
	var b strings.Builder
	e.writeChildren(&b)
	e.memo = &memo{first: &e.Children[0], n: len(e.Children), space: e.Name.Space, s: b.String()}
}

// memoized returns the memo if it still describes e's children.
func (e *Element) memoized() (string, bool) {
	m := e.memo
	if m == nil || len(e.Children) != m.n || &e.Children[0] != m.first || e.Name.Space != m.space {
		return "", false
	}
	return m.s, true
}

// ShallowCopy returns a copy of e with attributes of its own and e's
// children (capped, so that an Add on the copy cannot write into e's), and
// e's memo, if any: the way to address one element to many recipients.
func (e *Element) ShallowCopy() *Element {
	c := &Element{Name: e.Name, Children: e.Children[:len(e.Children):len(e.Children)], memo: e.memo}
	if len(e.Attr) > 0 {
		c.Attr = make([]xml.Attr, len(e.Attr), len(e.Attr)+1)
		copy(c.Attr, e.Attr)
	}
	return c
}
