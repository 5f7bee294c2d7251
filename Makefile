# cl-agent. `make test` is what CI runs (.ci/run); `make demo` shows the agent against local stand-ins.
SHELL       := /bin/bash
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO          ?= go
BIN         := bin/cl-agent
LDFLAGS     := -s -w -X main.version=$(VERSION)
FUZZTIME    ?= 10s
# Packages whose tests need root, Docker, PostgreSQL, moto or the IMDS mock: all of them, the way CI runs.
TEST_FLAGS  ?= -count=1 -timeout 12m

.PHONY: all build test prereqs images lint unit ha system realnode fuzz dockerd-restart bench demo package clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/cl-agent

## test: everything CI checks, on the real components (installs/starts what it can, fails on what is missing).
test: prereqs images lint build unit ha system realnode fuzz dockerd-restart
	@echo "make test: all checks passed"

prereqs:
	@bash scripts/testenv-prereqs.sh

## images: what the tests run that must be built first, each cached by content (fast when nothing changed), built
## side by side: the real Chainlink node v2.19.0 from its Go module (cold ~15 min), geth from its Go module (cold
## ~6 min) and the systemd host image (debootstrap, cold ~3 min). Each build's log is printed if it fails.
IMAGE_BUILDS := test/images/chainlink/build.sh test/images/geth/build.sh test/images/systemd/build.sh
images:
	@log=$$(mktemp -d); pids=(); for b in $(IMAGE_BUILDS); do bash $$b >/dev/null 2>$$log/$$(basename $$(dirname $$b)).log & pids+=($$!); done; \
	rc=0; i=0; for b in $(IMAGE_BUILDS); do if ! wait $${pids[$$i]}; then rc=1; echo "images: $$b failed:"; tail -n 40 $$log/$$(basename $$(dirname $$b)).log; fi; i=$$((i+1)); done; \
	rm -rf $$log; [ $$rc -eq 0 ] && echo "images: the real node, geth and the systemd host are built"; exit $$rc

lint: build
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	cfn-lint infra/cdk-template.yaml
	@tmp=$$(mktemp -d) && sed "s|/usr/local/bin/cl-agent|$(CURDIR)/$(BIN)|g" packaging/systemd/cl-agent.service > $$tmp/cl-agent.service \
		&& systemd-analyze verify $$tmp/cl-agent.service && echo "systemd-analyze verify: ok" ; rc=$$?; rm -rf $$tmp; exit $$rc

unit:
	$(GO) test $(TEST_FLAGS) $$($(GO) list ./... | grep -v -e /test/ha -e /test/system -e /test/realnode)

## system: the shipped unit and binary under a real systemd 252 as PID 1 (one host, then a pair), alone.
system:
	$(GO) test -count=1 -timeout 15m ./test/system

## realnode: the agent's rendered files on the real Chainlink node (validate, ready, its lease, its session names).
realnode:
	$(GO) test -count=1 -timeout 10m ./test/realnode

## ha: the active/standby proofs (two namespaced hosts, real failures); alone, because they measure timings.
ha:
	$(GO) test -count=1 -timeout 15m ./test/ha

## fuzz: each fuzz target briefly (the corpus seeds also run in `unit`).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./agent/config
	$(GO) test -run '^$$' -fuzz '^FuzzRender$$' -fuzztime $(FUZZTIME) ./agent/nodefiles

## dockerd-restart: tests that restart the shared Docker engine, one package at a time (-p 1), after everything else.
dockerd-restart:
	$(GO) test -p 1 -count=1 -timeout 10m -tags dockerrestart -run 'DockerdRestart' $$($(GO) list ./... | grep -v -e /test/system -e /test/realnode)

## bench: benchmarks on the real components (figures for the README).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 5x -timeout 20m $$($(GO) list ./... | grep -v -e /test/system -e /test/realnode)

## demo: start the local stand-ins and show the agent working against them.
demo: build
	@bash scripts/demo.sh

## package: the release archive (binary + unit) and SHA256SUMS in dist/, for the template's AgentS3URL/AgentSHA256.
package:
	VERSION=$(VERSION) bash packaging/package.sh

clean:
	rm -rf bin dist .demo
