# hearth build entry points. Every target here works; add yours with care.

GO      ?= go
# A tag v1.2.3 gives 1.2.3; untagged builds are 0.0.0~gitHASH.
VERSION ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//'); echo $${v:-0.0.0~git$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)})
GOARCH  ?= $(shell $(GO) env GOARCH)
NFPM    ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
LDFLAGS := -s -w -X github.com/merveilles/hearth/cmd/hearth/internal/cli.version=$(VERSION)

.PHONY: build test deb clean

# dist/hearth, a static binary.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/hearth ./cmd/hearth

# Unit/feature tests, then the interop suite (needs python3-slixmpp; see test-interop).
test:
	$(GO) vet ./... && $(GO) test ./...
	$(MAKE) test-interop

# dist/hearth_VERSION_ARCH.deb: the binary, the systemd unit, the man page,
# docs and maintainer scripts (nfpm.yaml, packaging/).
deb: build
	gzip -9n -c packaging/hearth.1 >dist/hearth.1.gz
	packaging/changelog.sh '$(VERSION)' | gzip -9n >dist/changelog.gz
	VERSION='$(VERSION)' GOARCH=$(GOARCH) $(NFPM) package --config nfpm.yaml --packager deb --target dist/

clean:
	rm -rf dist

.PHONY: test-interop ci

# An independent client (python3-slixmpp) against a real "hearth dev" process.
# -count=1: the test builds cmd/hearth itself, so a cached result could be stale.
test-interop:
	$(GO) test -tags interop -count=1 ./interop/...

# SIGKILL under load with stream management: no acknowledged message lost
# (builds cmd/hearth and runs it as a real process; reports the counts).
.PHONY: test-reliability
test-reliability:
	$(GO) test -tags reliability -count=1 -v ./reliability/...

# The Conversations compliance tester's checks (caas), as a client would,
# against a real "hearth dev": prints a PASS/FAIL/PENDING table. Run from
# the package directory so go test streams the table even when it passes.
.PHONY: compliance
compliance:
	cd compliance && $(GO) test -tags compliance -count=1 -timeout 5m

# What CI runs on a fresh Debian machine: installs the test packages (as root), then make test.
ci:
	.ci/run

.PHONY: bench-peers

# hearth against Prosody with the same load; writes docs/benchmarks.md (about 25 minutes with the archive and room phases).
bench-peers:
	bash bench/peers.sh

.PHONY: bench-mam

# MAM query latency (p50/p99) through a real client on an archive of 1,000,000
# messages, built once in a temporary directory (a few minutes, about 0.5 GB).
bench-mam:
	$(GO) test -run '^$$' -bench 'Query1M' -benchtime 300x -timeout 30m ./server/xmpp/mam

.PHONY: test-appliance

# The .deb in a booted Debian container (systemd-nspawn): install, start,
# a client login, upgrades, purge. Needs root, mmdebstrap, systemd-container
# and lintian; caches the root filesystem in /var/cache/hearth-appliance.
test-appliance:
	$(GO) test -tags appliance -count=1 -v -timeout 15m ./appliance/...

.PHONY: lint
# gofmt, go vet and staticcheck (pinned) must all be clean.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
