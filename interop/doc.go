// Package interop checks hearth against independent XMPP clients: it builds
// cmd/hearth, runs "hearth dev" as a real process on free loopback ports and
// drives it with python3-slixmpp (interop/slixmpp_suite.py).
//
// The tests need python3 with slixmpp (Debian: python3-slixmpp), so they sit
// behind the build tag "interop":
//
//	go test -tags interop -count=1 ./interop/...
//
// HEARTH_INTEROP_DEBUG=1 logs every stanza and runs the server at debug
// level; HEARTH_INTEROP_ONLY=name runs only scenarios whose name contains it.
// The group chat scenarios (interop/slixmpp_muc.py, TestSlixmppMUC) take
// HEARTH_INTEROP_MUC_ONLY=name instead.
package interop
