# Herald's two everyday commands are in the README: `go run ./cmd/herald`
# and `make test`. The Go targets need only Go. The JavaScript ones need
# Node.js 20 and npm, the browser tests also Chromium (/usr/bin/chromium,
# or HERALD_CHROMIUM); without them those targets say so and skip, unless
# HERALD_REQUIRE_BROWSER=1 (CI), which makes a missing tool a failure.

GO ?= go

.PHONY: test test-go fuzz-short test-js test-browser test-examples js-deps bench build lint

## test: every test: Go with the race detector, a short fuzz pass, the
## TypeScript unit tests (Vitest), the browser end-to-end tests in a real
## Chromium against a real Herald process, and the Next.js example's build.
## No timing assertions.
test: test-go fuzz-short test-js test-browser test-examples

test-go:
	$(GO) test -race -count=1 -timeout 10m ./...

## fuzz-short: each fuzz target for FUZZTIME (3s), about 1 min in all. test-go
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
	$(FUZZ) '^FuzzSelectionKey$$' ./routes/
	$(FUZZ) '^FuzzFunctionName$$' ./awsapi/
	$(FUZZ) '^FuzzDecode$$' ./redis/
	$(FUZZ) '^FuzzDecode$$' ./nats/
	$(FUZZ) '^FuzzScanBatch$$' ./api/
	$(FUZZ) '^FuzzParseCentrifugoLine$$' ./cmd/herald-load/
	$(FUZZ) '^FuzzDecodeFrame$$' ./sqlite/
	$(FUZZ) '^FuzzDecodeCounts$$' ./cluster/

## JavaScript (npm workspaces at the root: js/client, js/react, js/e2e).
## js-deps runs `npm ci` when node_modules is missing or was installed from
## another package-lock.json (the lockfile's SHA-256 is kept in a stamp file
## in node_modules), so a fresh clone needs nothing but `make test`.
JS_STAMP = node_modules/.herald-npm-ci.sha256
JS_LOCK_SUM = node -e "process.stdout.write(require('crypto').createHash('sha256').update(require('fs').readFileSync('package-lock.json')).digest('hex'))"
# missing MESSAGE: skip with MESSAGE, or fail with it under HERALD_REQUIRE_BROWSER=1.
define missing
if [ "$(HERALD_REQUIRE_BROWSER)" = 1 ]; then echo "FAIL: $(1) (HERALD_REQUIRE_BROWSER=1)" >&2; exit 1; fi; \
echo "SKIP: $(1)"; exit 0
endef
# Node.js 20.19 or later: the root package.json's engines (Vite, under Vitest, needs it).
HAVE_NODE = command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && \
	node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a == 20 && b >= 19) ? 0 : 1)'
NO_NODE = Node.js 20.19 or later and npm are needed (found: $$(node --version 2>/dev/null || echo no node))
HERALD_CHROMIUM ?= /usr/bin/chromium
# What the browser tests load: the built @herald/client and @herald/react (dist/).
E2E_BUILDS = -w js/client -w js/react

JS_DEPS = sum=$$($(JS_LOCK_SUM)) && \
	if [ ! -d node_modules ] || [ "$$(cat $(JS_STAMP) 2>/dev/null)" != "$$sum" ]; then \
		echo "npm ci (node_modules is missing or older than package-lock.json)" && \
		npm ci --no-audit --no-fund && echo "$$sum" > $(JS_STAMP); \
	fi

js-deps:
	@if ! { $(HAVE_NODE); }; then $(call missing,js-deps: $(NO_NODE)); fi; \
	$(JS_DEPS)

## test-js: the TypeScript unit tests of every workspace that has them.
test-js:
	@if ! { $(HAVE_NODE); }; then $(call missing,test-js: $(NO_NODE)); fi; \
	$(JS_DEPS) && \
	npm test --workspaces --if-present

## test-browser: builds @herald/client and @herald/react, then runs js/e2e
## (which builds Herald) in headless Chromium: 2-3 minutes; screenshots and
## logs in js/e2e/artifacts/ (js/e2e/README.md).
test-browser:
	@if ! { $(HAVE_NODE); }; then $(call missing,test-browser: $(NO_NODE)); fi; \
	if [ ! -x "$(HERALD_CHROMIUM)" ]; then $(call missing,test-browser: no Chromium at $(HERALD_CHROMIUM): apt-get install -y chromium (or set HERALD_CHROMIUM)); fi; \
	$(JS_DEPS) && \
	npm run build $(E2E_BUILDS) && \
	HERALD_CHROMIUM="$(HERALD_CHROMIUM)" GO="$(GO)" npm run test:browser -w js/e2e

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

## test-examples: examples/nextjs builds (next build, about 40 s from a
## fresh clone) against js/client and js/react of the same commit.
test-examples:
	@if ! { $(HAVE_NODE); }; then $(call missing,test-examples: $(NO_NODE)); fi; \
	$(JS_DEPS) && \
	NEXT_TELEMETRY_DISABLED=1 npm run build -w examples/nextjs
