package xmpp

import (
	"io"
	"sync"
)

// readBufSize is large enough to take a whole TLS record's plaintext in one
// read; the buffer is shared through a pool, so its size costs nothing per
// idle connection.
const readBufSize = 16 << 10

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// pooledReader is a buffered byte reader that holds a buffer only while it
// has unread bytes. bufio.Reader keeps its buffer for the connection's
// life; with thousands of idle clients that is memory doing nothing.
type pooledReader struct {
	r          io.Reader
	buf        *[]byte
	start, end int
	one        [1]byte
}

func newPooledReader(r io.Reader) *pooledReader { return &pooledReader{r: r} }

// Buffered returns how many bytes can be read without touching r.
func (p *pooledReader) Buffered() int { return p.end - p.start }

func (p *pooledReader) fill() error {
	if p.buf == nil {
		p.buf = readBufPool.Get().(*[]byte)
	}
	n, err := p.r.Read(*p.buf)
	if n > 0 {
		p.start, p.end = 0, n
		return nil
	}
	p.release()
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

func (p *pooledReader) release() {
	if p.buf != nil {
		readBufPool.Put(p.buf)
		p.buf = nil
	}
	p.start, p.end = 0, 0
}

// ReadByte implements io.ByteReader.
func (p *pooledReader) ReadByte() (byte, error) {
	if p.start == p.end {
		if err := p.fill(); err != nil {
			return 0, err
		}
	}
	b := (*p.buf)[p.start]
	p.start++
	if p.start == p.end {
		p.release()
	}
	return b, nil
}

// Read implements io.Reader (the XML decoder only uses ReadByte).
func (p *pooledReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if p.start == p.end {
		if err := p.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(b, (*p.buf)[p.start:p.end])
	p.start += n
	if p.start == p.end {
		p.release()
	}
	return n, nil
}

// Peek1 waits until at least one byte is buffered. It waits with a
// one-byte read, so a connection blocked here holds no pooled buffer.
func (p *pooledReader) Peek1() error {
	if p.start < p.end {
		return nil
	}
	n, err := p.r.Read(p.one[:])
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	if p.buf == nil {
		p.buf = readBufPool.Get().(*[]byte)
	}
	(*p.buf)[0] = p.one[0]
	p.start, p.end = 0, 1
	return nil
}
