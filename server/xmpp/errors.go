package xmpp

import (
	"errors"
	"fmt"

	"github.com/merveilles/hearth/server/xmpp/elem"
)

// StanzaError is an RFC 6120 section 8.3 stanza error.
type StanzaError struct {
	Type      string // auth, cancel, continue, modify, wait
	Condition string // e.g. service-unavailable
	Text      string
	// Extra is an application-specific condition element, if any.
	Extra *elem.Element
}

func (e *StanzaError) Error() string {
	if e.Text != "" {
		return e.Condition + ": " + e.Text
	}
	return e.Condition
}

// Element renders the <error/> child.
func (e *StanzaError) Element() *elem.Element {
	el := elem.New(elem.NSClient, "error", "type", e.Type)
	el.Add(elem.New(elem.NSStanza, e.Condition))
	if e.Text != "" {
		t := elem.New(elem.NSStanza, "text")
		t.Attr = append(t.Attr, xmlLang("en"))
		el.Add(t.AddText(e.Text))
	}
	return el.Add(e.Extra)
}

// NewError returns a stanza error.
func NewError(typ, condition, format string, args ...any) *StanzaError {
	text := format
	if len(args) > 0 {
		text = fmt.Sprintf(format, args...)
	}
	return &StanzaError{Type: typ, Condition: condition, Text: text}
}

// Common stanza errors.
func ErrServiceUnavailable() *StanzaError {
	return &StanzaError{Type: "cancel", Condition: "service-unavailable"}
}

// ErrBadRequest reports a malformed request.
func ErrBadRequest(text string) *StanzaError {
	return &StanzaError{Type: "modify", Condition: "bad-request", Text: text}
}

// ErrForbidden reports a request the sender may not make.
func ErrForbidden(text string) *StanzaError {
	return &StanzaError{Type: "auth", Condition: "forbidden", Text: text}
}

// ErrNotAllowed reports an action nobody may take here.
func ErrNotAllowed(text string) *StanzaError {
	return &StanzaError{Type: "cancel", Condition: "not-allowed", Text: text}
}

// ErrInternal reports a server-side failure; the text stays generic so
// internals do not leak to clients.
func ErrInternal() *StanzaError {
	return &StanzaError{Type: "wait", Condition: "internal-server-error", Text: "the server could not complete this; try again later"}
}

// ErrItemNotFound reports a missing item.
func ErrItemNotFound() *StanzaError { return &StanzaError{Type: "cancel", Condition: "item-not-found"} }

// ErrHandled tells the router an IQ handler has sent its own reply.
var ErrHandled = errors.New("iq handled")

// AsStanzaError converts any error to a stanza error; unknown errors become
// internal-server-error.
func AsStanzaError(err error) *StanzaError {
	var se *StanzaError
	if errors.As(err, &se) {
		return se
	}
	return ErrInternal()
}
