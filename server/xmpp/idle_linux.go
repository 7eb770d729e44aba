package xmpp

import (
	"errors"
	"net"
	"syscall"
)

// waitReadable parks until the socket under c has bytes (or EOF/error) to
// read. The goroutine parks here on a shallow stack instead of deep inside
// the XML decoder and crypto/tls, so the garbage collector can shrink an
// idle session's stack to a few KiB: with thousands of idle sessions the
// stack is most of their memory.
func waitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var buf [1]byte
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		// MSG_PEEK leaves the bytes for the TLS layer; a false return makes
		// the runtime wait for readability and ask again.
		_, _, e := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if errors.Is(e, syscall.EAGAIN) || errors.Is(e, syscall.EINTR) {
			return false
		}
		perr = nil
		return true
	})
	if err != nil {
		return err
	}
	return perr
}
