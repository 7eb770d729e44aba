.PHONY: bench-peers

# hearth against Prosody with the same load; writes docs/benchmarks.md (about 10 minutes).
bench-peers:
	bash bench/peers.sh
