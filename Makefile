# Herald's two everyday commands are in the README: `go run ./cmd/herald`
# and `make test`. Everything here needs only Go (and, later, Node.js and
# Chromium for the browser tests, which skip without them unless
# HERALD_REQUIRE_BROWSER=1).

GO ?= go

.PHONY: test test-go fuzz-short bench build lint

## test: every test (Go with the race detector), then a short fuzz pass.
## No timing assertions.
test: test-go fuzz-short

test-go:
	$(GO) test -race -count=1 -timeout 10m ./...

## fuzz-short: each fuzz target for FUZZTIME (3s), about 35s in all. test-go
## already replays the committed seeds (testdata/fuzz); this looks a little
## further each run. -fuzz takes one target per package, hence one line each.
## Run a target longer by hand, e.g.
##   go test -run '^$$' -fuzz '^FuzzAssembler$$' -fuzztime 10m ./wire/
## and commit any crasher it writes under testdata/fuzz as a seed.
FUZZTIME ?= 3s
FUZZ = $(GO) test -run '^$$' -fuzztime $(FUZZTIME) -fuzz
fuzz-short:
	$(FUZZ) '^FuzzParseHeader$$' ./wire/
	$(FUZZ) '^FuzzAssembler$$' ./wire/
	$(FUZZ) '^FuzzCloseFrame$$' ./wire/
	$(FUZZ) '^FuzzVerify$$' ./token/
	$(FUZZ) '^FuzzVerifySigV4$$' ./awsapi/
	$(FUZZ) '^FuzzHandleMessage$$' ./session/
	$(FUZZ) '^FuzzConfigFile$$' ./cmd/herald/

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
