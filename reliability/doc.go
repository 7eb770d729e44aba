// Package reliability holds fault tests that run hearth as a real process
// and kill it: a client using stream management sends messages while the
// server is killed with SIGKILL and restarted; every message the server
// acknowledged must then be delivered from storage (issue 5, item 9). A
// second test fills the data directory (a small tmpfs mounted in a private
// mount namespace, so it needs root): refused writes must reach the sender
// as errors and never be acknowledged, and the server must recover. They
// take a while and build cmd/hearth, so they sit behind the build tag
// "reliability":
//
//	make test-reliability
package reliability
