# rowpipe — see README.md. Every target works on a fresh machine with Go (and
# python3 for the acceptance suite); nothing else is installed by hand.

GO       ?= go
BIN      := bin
SERVICES := ingester writer api stack
MODULES  := pkg/schema pkg/svc services/ingester services/writer services/api services/stack deploy bench
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
SHARED   ?= ../shared

# make run: a dev stack on this machine, with the shipped sample ingested.
RUN_FLAGS ?= --dev --ingest samples/products.csv --index "Handle,Variant SKU"

.PHONY: all build run test test-browser console-screenshots test-race fuzz bench acceptance compose-test lint clean $(SERVICES:%=$(BIN)/%)

all: build

build: $(SERVICES:%=$(BIN)/%)

$(SERVICES:%=$(BIN)/%): $(BIN)/%:
	@mkdir -p $(BIN)
	cd services/$* && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o ../../$(BIN)/$* .

run: build
	./$(BIN)/stack $(RUN_FLAGS)

# Every module's tests, including each fuzz target's seed corpus, then the
# console's browser tests.
test:
	@set -e; for m in $(MODULES); do echo "== $$m"; (cd $$m && $(GO) test -count=1 ./...); done
	@$(MAKE) --no-print-directory test-browser

# The web console in a real browser: Playwright (npm's playwright-core, pinned
# by e2e/package-lock.json) drives Debian's chromium (apt-get install
# chromium; .ci/run does) against a real bin/stack. Screenshots and the
# stack's log go to e2e/output/.
CHROMIUM ?= /usr/bin/chromium
test-browser: build
	@echo "== e2e (console in $(CHROMIUM))"
	@command -v npm >/dev/null || { echo "test-browser needs Node.js 20+ and npm (apt-get install nodejs npm)"; exit 1; }
	@test -x $(CHROMIUM) || { echo "test-browser needs chromium at $(CHROMIUM): apt-get install chromium, or set CHROMIUM"; exit 1; }
	cd e2e && npm ci --no-audit --no-fund --loglevel=error && CHROMIUM=$(CHROMIUM) npm test

# The README's console screenshots (docs/console/*.png), from the browser
# tests; Debian's pngquant, when present, makes them a third of the size.
console-screenshots: build
	cd e2e && npm ci --no-audit --no-fund --loglevel=error && CHROMIUM=$(CHROMIUM) E2E_UPDATE_DOCS=1 npm test
	@if command -v pngquant >/dev/null; then pngquant --force --skip-if-larger --quality=70-95 --ext .png docs/console/*.png; \
	else echo "pngquant not found (apt-get install pngquant): docs/console/*.png left as chromium wrote them"; fi

test-race:
	@set -e; for m in $(MODULES); do echo "== $$m"; (cd $$m && $(GO) test -race -count=1 ./...); done

# A short coverage-guided run of every fuzz target (FUZZTIME each).
FUZZTIME ?= 20s
fuzz:
	@set -e; for m in $(MODULES); do \
	  for pkg in $$(cd $$m && $(GO) list ./...); do \
	    for f in $$(cd $$m && $(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	      echo "== $$pkg $$f"; (cd $$m && $(GO) test -run=NONE -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg); \
	    done; done; done

bench: build
	cd bench && $(GO) run . -out results

acceptance: build
	python3 $(SHARED)/acceptance/run.py --repo . --no-build

# The README's docker compose steps against a real Docker engine (Compose v2+
# with buildx): images built, up, ingest, keys, NATS credentials, restarts.
compose-test:
	sh deploy/compose/compose-test.sh

lint:
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done
	@out=$$(gofmt -l pkg services deploy bench); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

clean:
	rm -rf $(BIN)
