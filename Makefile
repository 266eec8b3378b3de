# Strata's build, run and test entry points. Tools the tests need are installed here,
# pinned and cached under .tools/ (git-ignored), so a fresh clone needs only Go and apt.

SHELL       := /bin/bash
GO          ?= go
TOOLS       := $(CURDIR)/.tools
TOOLBIN     := $(TOOLS)/bin
export GOBIN := $(TOOLBIN)
export PATH  := $(TOOLBIN):$(PATH)

MINIO_VERSION       := v0.0.0-20260212201848-7aac2a2c5b7c
STATICCHECK_VERSION := v0.8.2
HELM_VERSION        := v3.22.0
ARROWJS_VERSION     := 21.2.0
ETCD_BIN            ?= /usr/bin/etcd
CHROMIUM_BIN        ?= /usr/bin/chromium
# htmx is vendored (committed) in broker/console/assets; `make htmx` fetches this version
# from npm and checks it, so the committed file can be reproduced. go build needs no Node.
NATS_VERSION        := v2.15.2
HTMX_VERSION        := 2.0.11
HTMX_SHA256         := d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717
HTMX_DIR            := broker/console/assets
FUZZTIME            ?= 5s

export STRATA_MINIO_BIN := $(TOOLBIN)/minio
export STRATA_ETCD_BIN  := $(ETCD_BIN)
export STRATA_ARROWJS_DIR := $(TOOLS)/node
export STRATA_HELM_BIN  := $(TOOLBIN)/helm
export STRATA_CHROMIUM_BIN := $(CHROMIUM_BIN)
export STRATA_NATS_BIN  := $(TOOLBIN)/nats-server

# Packages whose unit tests run with the race detector (everything but integration).
UNIT_PKGS = $(shell $(GO) list ./... | grep -v /integration)

.PHONY: build run test unit integration fuzz fuzz-short bench bench-suite bench-cold bench-restart bench-failover lint tools nats minio etcd staticcheck arrowjs helm chromium htmx clean

build:
	$(GO) build -o bin/strata ./cmd/strata

run: build
	./bin/strata dev

## test: everything CI runs — lint, unit tests with -race, integration tests, a short fuzz pass.
test: tools lint unit integration fuzz-short

# CI shows only the tail of its output, so a failing run ends with the names and lines of
# what failed, pulled from the whole log.
FAILED_SUMMARY = { echo "== what failed (from $(1)):"; grep -E -e '--- FAIL|^panic:|^FAIL|_test\.go:[0-9]+:' $(1) | grep -v -e '^=== ' | tail -n 60; exit 1; }

unit:
	@mkdir -p $(TOOLS)
	set -o pipefail; $(GO) test -race -count=1 -timeout 15m $(UNIT_PKGS) 2>&1 | tee $(TOOLS)/unit.log || $(call FAILED_SUMMARY,$(TOOLS)/unit.log)

integration: tools
	set -o pipefail; $(GO) test -count=1 -timeout 20m ./integration/... 2>&1 | tee $(TOOLS)/integration.log || $(call FAILED_SUMMARY,$(TOOLS)/integration.log)

## fuzz-short runs every fuzz target for $(FUZZTIME); `make fuzz FUZZTIME=5m` digs deeper.
fuzz-short:
	@FUZZTIME=$(FUZZTIME) GO=$(GO) ./.ci/fuzz.sh

fuzz:
	@FUZZTIME=$(if $(filter 5s,$(FUZZTIME)),60s,$(FUZZTIME)) GO=$(GO) ./.ci/fuzz.sh

bench:
	$(GO) test -run=NONE -bench=. -benchtime=2s ./broker/... ./meta/...

## bench-suite: issue 12's table — fresh Strata and NATS JetStream servers, msg/s and server CPU
## per message for produce (1, 1,000, 10,000 topics; raw and official client), consume and
## latency, same run. bench-cold: replay from MinIO beside a plain ranged GET loop.
bench-suite: build nats
	./bin/strata bench --mode suite --nats-bin $(TOOLBIN)/nats-server --rounds $(or $(ROUNDS),2)

bench-cold: minio
	$(GO) test -run '^$$' -bench TierMinIOReplay -benchtime 1x -count=1 ./integration/

## bench-restart: open a store of MESSAGES 128-byte messages (100 topics × 4 queues, unique keys)
## ROUNDS times (1) after a clean Close and after a crash with a RecoveryReplayBytes tail, beside
## reading its index files; it logs the fill rate, the bytes on disk and the heap. The default
## 10,000,000 takes about a minute and 3.3 GB under $TMPDIR; issue 12's figure is
## `make bench-restart MESSAGES=100000000` (about 33 GB and 5–10 minutes of filling).
bench-restart:
	$(GO) test -v -run '^$$' -bench Reopen -benchtime $(or $(ROUNDS),1)x -count=1 -timeout 3h ./broker/store \
	  -args -store.reopen-messages=$(or $(MESSAGES),10000000)

## bench-failover: kill -9 a sync group's master ROUNDS times (10) under the official client;
## kill → first acknowledged send (fresh and running client) and → consumer resuming, p50/max.
bench-failover: etcd
	$(GO) test -run '^$$' -bench Failover -benchtime $(or $(ROUNDS),10)x -count=1 -timeout 40m ./integration/

lint: staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOLBIN)/staticcheck ./...

tools: minio etcd staticcheck arrowjs helm chromium

minio: $(TOOLBIN)/minio
$(TOOLBIN)/minio:
	@mkdir -p $(TOOLBIN)
	@echo "building MinIO $(MINIO_VERSION) (first time only, a few minutes)"
	$(GO) install github.com/minio/minio@$(MINIO_VERSION)

staticcheck: $(TOOLBIN)/staticcheck
$(TOOLBIN)/staticcheck:
	@mkdir -p $(TOOLBIN)
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# nats-server, the JetStream baseline `strata bench` runs beside Strata in the same run.
nats: $(TOOLBIN)/nats-server
$(TOOLBIN)/nats-server:
	@mkdir -p $(TOOLBIN)
	@echo "building nats-server $(NATS_VERSION) (first time only, a minute or two)"
	$(GO) install github.com/nats-io/nats-server/v2@$(NATS_VERSION)

# helm renders the chart in deployments/helm for integration/deploy_test.go (helm template;
# no cluster is needed).
helm: $(TOOLBIN)/helm
$(TOOLBIN)/helm:
	@mkdir -p $(TOOLBIN)
	@echo "building helm $(HELM_VERSION) (first time only, a minute or two)"
	$(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

# etcd 3.4 from Debian, a separate process for the integration tests.
etcd:
	@if [ ! -x $(ETCD_BIN) ]; then \
	  echo "installing Debian's etcd-server"; \
	  SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends etcd-server; \
	  $$SUDO systemctl disable --now etcd >/dev/null 2>&1 || true; \
	fi

# apache-arrow, Arrow's JavaScript implementation, for the integration test that reads
# exports with a reader that shares no code with Strata. Needs Node.js 18+ and npm.
arrowjs:
	@if ! grep -qs '"version": "$(ARROWJS_VERSION)"' $(STRATA_ARROWJS_DIR)/node_modules/apache-arrow/package.json; then \
	  command -v npm >/dev/null || { echo "arrowjs: npm not found; install Node.js 18+ and npm (apt-get install nodejs npm)"; exit 1; }; \
	  echo "installing apache-arrow@$(ARROWJS_VERSION) from npm into $(STRATA_ARROWJS_DIR)"; \
	  mkdir -p $(STRATA_ARROWJS_DIR) && \
	  npm install --prefix $(STRATA_ARROWJS_DIR) --no-audit --no-fund --save-exact apache-arrow@$(ARROWJS_VERSION); \
	fi

# Chromium from Debian, headless, for integration/console_test.go (driven with chromedp).
chromium:
	@if [ ! -x $(CHROMIUM_BIN) ]; then \
	  echo "installing Debian's chromium"; \
	  SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; \
	fi

# htmx for the console, from npm at the pinned version, checked against its sha256.
htmx:
	@if ! echo "$(HTMX_SHA256)  $(HTMX_DIR)/htmx-$(HTMX_VERSION).min.js" | sha256sum -c --status 2>/dev/null; then \
	  command -v npm >/dev/null || { echo "htmx: npm not found; install Node.js and npm (apt-get install nodejs npm)"; exit 1; }; \
	  tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  echo "fetching htmx.org@$(HTMX_VERSION) from npm" && \
	  (cd "$$tmp" && npm pack --silent htmx.org@$(HTMX_VERSION) >/dev/null && tar xzf htmx.org-$(HTMX_VERSION).tgz) && \
	  cp "$$tmp/package/dist/htmx.min.js" $(HTMX_DIR)/htmx-$(HTMX_VERSION).min.js && \
	  cp "$$tmp/package/LICENSE" $(HTMX_DIR)/htmx-$(HTMX_VERSION).LICENSE && \
	  echo "$(HTMX_SHA256)  $(HTMX_DIR)/htmx-$(HTMX_VERSION).min.js" | sha256sum -c; \
	else echo "$(HTMX_DIR)/htmx-$(HTMX_VERSION).min.js is htmx $(HTMX_VERSION) (sha256 checked)"; fi

clean:
	rm -rf bin
