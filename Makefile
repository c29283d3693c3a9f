# Sanping: `make run` serves the product on embedded defaults, `make test` runs every test.
GO ?= go
BIN := bin/sanping

.PHONY: run build web client test test-go test-timing test-js test-web vet vet-web bench clean

build:
	$(GO) build -o $(BIN) ./cmd/sanping

# The station program, for Linux and (cross-compiled) Windows.
client:
	$(GO) build -o bin/sanping-station ./cmd/sanping-station
	GOOS=windows GOARCH=amd64 $(GO) build -o bin/sanping-station.exe ./cmd/sanping-station

# The browser app (web/) is built into web/dist/app, which the binary embeds: build it first.
run: web
	$(MAKE) build
	./$(BIN)

WEB_NPM := cd web && ( [ -d node_modules ] || npm ci --no-audit --no-fund )

web:
	$(WEB_NPM) && npm run build

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

vet: vet-web
	$(GO) vet ./...
	gofmt -l cmd server client protocol internal web/*.go bench tests | (! grep .)
	$(GO) run $(STATICCHECK) ./...

vet-web:
	$(WEB_NPM) && npx vue-tsc --noEmit -p tsconfig.json && npx eslint .

# Every test: Go (race detector on), then the DICOMweb conformance suite with the npm
# dicomweb-client against a real server, then the browser app's unit and browser tests.
test: vet client test-go test-js test-web

# Tests that assert real-time media timings (first frame in a browser, recovery after a link
# outage) skip or assert less under the race detector; they run here again without it, one
# at a time. (The SFU's repair and layer tests run on testing/synctest's clock, race or not.)
TIMING_TESTS := TestBrowsersInOneRoom|TestBrowserFirstFrame|TestLiveBadNetwork|TestBrowserThinUplink

# A loaded 2-core machine takes several minutes for ./server under -race: the timeout is for
# a hung test, not a slow one. The app is built first: the Chromium tests in ./server join the
# live room of the app the test binary embeds.
test-go: web
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) test-timing

test-timing:
	$(GO) test -count=1 -p 1 -timeout 20m -run '^($(TIMING_TESTS))$$' ./server/

test-js: build
	cd tests/dicomweb-client && ( [ -d node_modules ] || npm ci --no-audit --no-fund ) && SANPING_BIN=$(CURDIR)/$(BIN) npm test

# The browser app: Vitest unit tests, then end-to-end in headless Chromium (playwright-core,
# Debian's chromium) against the binary with the freshly built app embedded.
test-web: web
	$(GO) build -o $(BIN) ./cmd/sanping
	cd web && npm test && SANPING_BIN=$(CURDIR)/$(BIN) npm run e2e

bench:
	bash bench/run.sh

clean:
	rm -rf bin
