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
RUN_FLAGS ?= --dev --ingest samples/products.csv

.PHONY: all build run test test-race fuzz bench acceptance compose-test lint clean $(SERVICES:%=$(BIN)/%)

all: build

build: $(SERVICES:%=$(BIN)/%)

$(SERVICES:%=$(BIN)/%): $(BIN)/%:
	@mkdir -p $(BIN)
	cd services/$* && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o ../../$(BIN)/$* .

run: build
	./$(BIN)/stack $(RUN_FLAGS)

# Every module's tests, including each fuzz target's seed corpus.
test:
	@set -e; for m in $(MODULES); do echo "== $$m"; (cd $$m && $(GO) test -count=1 ./...); done

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
