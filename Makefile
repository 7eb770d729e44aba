.PHONY: bench-peers

# hearth against Prosody with the same load; writes docs/benchmarks.md (about 10 minutes).
bench-peers:
	bash bench/peers.sh

.PHONY: test-interop ci

# Independent client against a real "hearth dev" process (needs python3-slixmpp).
# -count=1: the test builds cmd/hearth itself, so cached results would be stale.
test-interop:
	go test -tags interop -count=1 ./interop/...

# What CI runs on a fresh Debian machine: installs the test packages (as root), then runs make test.
ci:
	.ci/run
