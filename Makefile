# Herald's two everyday commands are in the README: `go run ./cmd/herald`
# and `make test`. Everything here needs only Go (and, later, Node.js and
# Chromium for the browser tests, which skip without them unless
# HERALD_REQUIRE_BROWSER=1).

GO ?= go

.PHONY: test test-go bench build lint

## test: every test (Go with the race detector). No timing assertions.
test: test-go

test-go:
	$(GO) test -race -count=1 -timeout 10m ./...

## bench: Go benchmarks (encode, hub fan-out, store append). Not part of test.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

## build: a static binary, no cgo needed (SQLite is pure Go).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/herald ./cmd/herald
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/herald-load ./cmd/herald-load

## lint: what CI checks before the tests.
lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
