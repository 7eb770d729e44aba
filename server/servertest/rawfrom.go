package servertest

import (
	"net"
	"testing"
	"time"
)

// DialRawFrom is DialRaw from a chosen local address, so that tests can
// play several client addresses: loopback accepts any 127.0.0.0/8 source.
func DialRawFrom(t testing.TB, addr, localIP string) *Raw {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Raw{t: t, Conn: c}
}
