# dmbridge: the two commands the README starts with are `make demo` and `make test`.
GO ?= go
BIN := bin

.PHONY: build test demo vet fmt-check bench prerequisites faults

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Everything the tests need that a fresh machine may lack: PostgreSQL running,
# Prosody installed, the Dendrite binary built (cached afterwards).
prerequisites:
	./scripts/prerequisites.sh

test: prerequisites
	$(GO) vet ./...
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
		if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) test -race -count=1 -timeout 30m ./...

# Long fault runs; `make test` runs a short version of each.
# The bridge binary killed with SIGKILL 10 times while a contact sends 200
# messages and the user 30 replies, on SQLite and PostgreSQL.
faults: prerequisites
	DMBRIDGE_FAULTS=1 $(GO) test -count=1 -timeout 60m -v -run '^TestKilledBridgeLosesNothing$$' ./bridge/

bench: prerequisites
	$(GO) test -run '^$$' -bench . -benchmem ./...

demo: build
	./scripts/demo.sh
