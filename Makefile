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

bench: prerequisites
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Long fault runs, each reporting sent/delivered/lost/doubled in its log.
faults: prerequisites
	@mkdir -p $(BIN)
	DMBRIDGE_OUTAGE=6m $(GO) test -race -count=1 -timeout 40m -v -run 'TestHomeserverOutageLosesNothing' ./bridge/ \
		> $(BIN)/faults-outage.log 2>&1; rc=$$?; grep -E 'outage|^\s*--- |^(ok|FAIL)' $(BIN)/faults-outage.log; exit $$rc

demo: build
	./scripts/demo.sh
