package main

import (
	"bytes"
	"errors"
	"io"
)

// A hand-written stream splitter: the tool only needs each top-level
// element's bytes and a few attributes, and a full XML decoder would make
// the load tool, not the server, the bottleneck. It trusts the server to
// send well-formed XML (it is not a security boundary).

type eventKind int

const (
	evElem  eventKind = iota // a complete top-level element (stanza or nonza)
	evOpen                   // <stream:stream ...>
	evClose                  // </stream:stream>
)

var errTooLarge = errors.New("element larger than the reader's limit")

type scanner struct {
	rd  io.Reader
	buf []byte
	// buf[start:end] is unconsumed data; pos is how far it has been scanned.
	start, pos, end int
	max             int

	depth     int
	inTag     bool
	quote     byte
	tagStart  int
	elemStart int
}

func newScanner(rd io.Reader, size int) *scanner {
	return &scanner{rd: rd, buf: make([]byte, size), max: 1 << 20}
}

// next returns the next event. The returned bytes are valid until the
// following call.
func (s *scanner) next() (eventKind, []byte, error) {
	for {
		for ; s.pos < s.end; s.pos++ {
			if !s.inTag {
				// Character data up to the next tag in one step: most
				// of a large stanza (an OMEMO message's keys) is text.
				i := bytes.IndexByte(s.buf[s.pos:s.end], '<')
				if i < 0 {
					s.pos = s.end
					break
				}
				s.pos += i
			}
			c := s.buf[s.pos]
			if s.inTag {
				switch {
				case s.quote != 0:
					if c == s.quote {
						s.quote = 0
					}
				case c == '\'' || c == '"':
					s.quote = c
				case c == '>':
					s.inTag = false
					if kind, raw, ok := s.endTag(); ok {
						s.pos++
						s.start = s.pos
						return kind, raw, nil
					}
				}
				continue
			}
			if c == '<' {
				s.inTag = true
				s.tagStart = s.pos
				if s.depth == 0 {
					s.elemStart = s.pos
					s.start = s.pos // drop whitespace keepalives between stanzas
				}
			}
		}
		if err := s.fill(); err != nil {
			return 0, nil, err
		}
	}
}

// endTag classifies the tag that just ended at s.pos and reports whether a
// top-level event is complete.
func (s *scanner) endTag() (eventKind, []byte, bool) {
	tag := s.buf[s.tagStart : s.pos+1]
	if len(tag) < 2 {
		return 0, nil, false
	}
	switch tag[1] {
	case '?', '!':
		if s.depth == 0 {
			s.start = s.pos + 1
		}
		return 0, nil, false
	case '/':
		s.depth--
		if s.depth < 0 {
			s.depth = 0
			return evClose, tag, true
		}
		if s.depth == 0 {
			return evElem, s.buf[s.elemStart : s.pos+1], true
		}
		return 0, nil, false
	}
	if s.depth == 0 && bytes.HasPrefix(tag, []byte("<stream:stream")) {
		return evOpen, tag, true
	}
	if tag[len(tag)-2] == '/' {
		if s.depth == 0 {
			return evElem, tag, true
		}
		return 0, nil, false
	}
	s.depth++
	return 0, nil, false
}

// fill reads more data, first moving unconsumed bytes to the front.
func (s *scanner) fill() error {
	if s.start > 0 {
		n := copy(s.buf, s.buf[s.start:s.end])
		shift := s.start
		s.start, s.end, s.pos = 0, n, s.pos-shift
		s.tagStart -= shift
		s.elemStart -= shift
	}
	if s.end == len(s.buf) {
		if len(s.buf) >= s.max {
			return errTooLarge
		}
		nb := make([]byte, 2*len(s.buf))
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	n, err := s.rd.Read(s.buf[s.end:])
	s.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// elemName returns the qualified name of the element's start tag.
func elemName(raw []byte) []byte {
	if len(raw) < 2 {
		return nil
	}
	i := 1
	for i < len(raw) && raw[i] != ' ' && raw[i] != '>' && raw[i] != '/' && raw[i] != '\t' && raw[i] != '\n' && raw[i] != '\r' {
		i++
	}
	return raw[1:i]
}

// startTag returns the element's start tag (up to its first unquoted '>').
func startTag(raw []byte) []byte {
	var q byte
	for i, c := range raw {
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '\'' || c == '"':
			q = c
		case c == '>':
			return raw[:i+1]
		}
	}
	return raw
}

// attr returns an attribute of the start tag, without unescaping (the tool
// only reads values it wrote itself or plain tokens).
func attr(raw []byte, name string) []byte {
	tag := startTag(raw)
	for i := 0; i+len(name)+2 < len(tag); {
		j := bytes.Index(tag[i:], []byte(name))
		if j < 0 {
			return nil
		}
		j += i
		k := j + len(name)
		prev := tag[j-1]
		if (prev == ' ' || prev == '\t' || prev == '\n' || prev == '\r') && k+1 < len(tag) && tag[k] == '=' && (tag[k+1] == '\'' || tag[k+1] == '"') {
			q := tag[k+1]
			end := bytes.IndexByte(tag[k+2:], q)
			if end < 0 {
				return nil
			}
			return tag[k+2 : k+2+end]
		}
		i = j + 1
	}
	return nil
}

// innerText returns what lies between the start tag and the end tag; for
// the SASL elements the tool reads, that is their text.
func innerText(raw []byte) []byte {
	st := startTag(raw)
	if len(st) == len(raw) || bytes.HasSuffix(st, []byte("/>")) {
		return nil
	}
	end := bytes.LastIndexByte(raw, '<')
	if end < len(st) {
		return nil
	}
	return raw[len(st):end]
}
