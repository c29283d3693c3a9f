# Sanping: `make run` serves the product on embedded defaults, `make test` runs every test.
GO ?= go
BIN := bin/sanping

.PHONY: run build client test test-go test-timing test-js vet bench clean

build:
	$(GO) build -o $(BIN) ./cmd/sanping

# The station program, for Linux and (cross-compiled) Windows.
client:
	$(GO) build -o bin/sanping-station ./cmd/sanping-station
	GOOS=windows GOARCH=amd64 $(GO) build -o bin/sanping-station.exe ./cmd/sanping-station

run: build
	./$(BIN)

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

vet:
	$(GO) vet ./...
	gofmt -l cmd server client protocol internal web bench tests | (! grep .)
	$(GO) run $(STATICCHECK) ./...

# Every test: Go (race detector on), then the DICOMweb conformance suite with the npm
# dicomweb-client against a real server.
test: vet client test-go test-js

# Tests that assert media timings (repair under loss, first frame, layer switches) skip under
# the race detector; they run here again without it, one package at a time.
TIMING_TESTS := TestRepairAtRuralRTT|TestSimulcast|TestSimulcastStepsUpOnCleanLink|TestRoom|TestBrowsersInOneRoom|TestBrowserFirstFrame

test-go:
	$(GO) test -race -count=1 ./...
	$(MAKE) test-timing

test-timing:
	$(GO) test -count=1 -p 1 -run '^($(TIMING_TESTS))$$' ./server/sfu/ ./server/

test-js: build
	cd tests/dicomweb-client && ( [ -d node_modules ] || npm ci --no-audit --no-fund ) && SANPING_BIN=$(CURDIR)/$(BIN) npm test

bench:
	bash bench/run.sh

clean:
	rm -rf bin
