// Package reliability holds fault tests that run hearth as a real process
// and kill it: a client using stream management sends messages while the
// server is killed with SIGKILL and restarted; every message the server
// acknowledged must then be delivered from storage (issue 5, item 9). They
// take a while and build cmd/hearth, so they sit behind the build tag
// "reliability":
//
//	make test-reliability
package reliability
