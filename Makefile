# orderflow: the two commands are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
GO ?= go
BIN := bin/orderflow
PKG := ./...
TEST_TIMEOUT ?= 14m

.PHONY: run test bench lint fmt vet build check-domain clean fuzz chaos browser

build:
	$(GO) build -o $(BIN) ./services/cmd/orderflow

## run: start the whole system on embedded defaults (Ctrl-C stops everything)
run: build
	./$(BIN) dev $(ARGS)

## test: vet, the domain and sagas import rules, and every test against real PostgreSQL and NATS
test: browser vet check-domain fuzz
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v $(PKG) 2>&1 | grep -v -E '^=== (RUN|PAUSE|CONT|NAME)'

## browser: Chromium for the console's browser tests: nothing when it is
## there, else Debian's chromium package when run as root with apt-get;
## otherwise it says why those tests will skip
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x "$(CHROMIUM)" ] || command -v chromium >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "browser: installing chromium for the console's browser tests (apt-get, a minute or two)"; \
		if DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then \
			echo "browser: $$(command -v chromium) installed"; \
		else echo "browser: apt-get could not install chromium; the console's browser tests will skip"; fi; \
	else \
		echo "browser: no chromium at $(CHROMIUM) and not root with apt-get to install it; the console's browser tests will skip (CHROMIUM=/path/to/chromium names another)"; \
	fi

## bench: event store throughput and latency against same-run references
bench: build
	./$(BIN) bench $(ARGS)

## fuzz: each fuzz target for FUZZTIME (their seed corpora also run as tests);
## Go fuzzes one target per invocation, so they are listed as package:Target
FUZZTIME ?= 3s
FUZZ_TARGETS := ./services/internal/httpx:FuzzDecodeJSON \
	./services/internal/natsbus:FuzzDecode ./services/internal/natsbus:FuzzParseCommand \
	./domain/events:FuzzRegistryDecode ./commands:FuzzRunWire \
	./services/gateway/auth:FuzzVerify ./services/gateway/auth:FuzzVerifyClaims ./services/gateway/auth:FuzzAuthorize

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t##*:} in $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$${t##*:}\$$" -fuzztime=$(FUZZTIME) -parallel=2 $${t%%:*} || exit 1; \
	done

vet:
	$(GO) vet $(PKG)

# domain/ may import only the standard library; sagas/ only the standard
# library and domain/ (the engine decides, the coordinator does the I/O).
check-domain:
	@bad=$$($(GO) list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' ./domain/... | grep -v '^github.com/orderflow/orderflow/domain' || true); \
	if [ -n "$$bad" ]; then echo "domain/ imports outside the standard library:"; echo "$$bad"; exit 1; fi; \
	echo "domain/ imports only the standard library"
	@bad=$$($(GO) list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' ./sagas/... | grep -v -E '^github.com/orderflow/orderflow/(domain|sagas)(/|$$)' || true); \
	if [ -n "$$bad" ]; then echo "sagas/ imports outside the standard library and domain/:"; echo "$$bad"; exit 1; fi; \
	echo "sagas/ imports only the standard library and domain/"
	@bad=$$($(GO) list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' $$($(GO) list ./domain/... ./commands/... ./projections/... ./sagas/... | grep -v -E 'test$$') | grep -E '^github.com/orderflow/orderflow/(internal|services)(/|$$)' | grep -v -x 'github.com/orderflow/orderflow/internal/backoff' || true); \
	if [ -n "$$bad" ]; then echo "domain/ commands/ projections/ sagas/ import adapters:"; echo "$$bad"; exit 1; fi; \
	echo "domain/ commands/ projections/ sagas/ import no adapters (internal/, services/)"

## lint: vet, gofmt and the domain import rule
lint: vet check-domain
	@out=$$(gofmt -l domain commands projections sagas services internal); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -w domain commands projections sagas services internal

clean:
	rm -rf bin

## sim: the deterministic simulation of the saga protocol over SEEDS seeds
## (default 5000); a failing seed prints the line that replays it
sim:
	@out=$$($(GO) test -count=1 -timeout 30m -v -run '^TestSim$$' ./services/internal/sim -seeds=$(or $(SEEDS),5000) 2>&1) && rc=0 || rc=$$?; \
	grep -v -E '^(=== RUN|SIM )' <<<"$$out" || true; \
	grep '^SIM ' <<<"$$out" || echo "SIM seeds $(or $(SEEDS),5000) failures unknown (the test did not run)"; \
	exit $$rc

## chaos: the clustered stack under load (ORDERS, default 2000) while its
## processes are killed; exits non-zero on any broken invariant
chaos: build
	./$(BIN) chaos --orders $(or $(ORDERS),2000) $(ARGS)
