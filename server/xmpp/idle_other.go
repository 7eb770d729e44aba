//go:build !linux

package xmpp

import "net"

// waitReadable is a no-op where MSG_PEEK polling is not wired up; the
// reader then simply parks inside the TLS read.
func waitReadable(net.Conn) error { return nil }
