# Tabby — build, test, lint, demo, bench.
GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/tabbynet/tabby/internal/version.Version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin

.PHONY: all build deps deps-demo test test-short lint fuzz demo bench bench-quick chaos clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/tabby ./cmd/tabby
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/tabby-cni ./cmd/tabby-cni

# The Debian packages of scripts/deps.txt (the one list): installs the
# missing ones as root, prints the apt-get line otherwise, and only asks
# dpkg when all are present. make test, chaos and bench depend on it;
# make demo on its short form (iproute2).
deps:
	@./scripts/deps.sh

deps-demo:
	@./scripts/deps.sh demo

# The full suite: unit tests, contract tests on real embedded etcd, and the
# privileged tests (network namespaces, nftables, BGP, DNS). Needs root;
# on a fresh Debian machine it is the whole set-up (make deps first).
test: deps build lint
	$(GO) test -count=1 -timeout 30m ./...

test-short:
	$(GO) test -count=1 -short ./...

lint:
	$(GO) vet ./...
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Short fuzzing pass over every fuzz target (seed corpora live in
# testdata/fuzz). CI runs it with FUZZTIME=3s after `make test`.
FUZZTIME ?= 10s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

# Faults, load and attacks (internal/chaos, docs/reliability.md): the full
# form of every chaos and security scenario in labs (about 13 minutes on
# 2 cores; root, iproute2, iperf3, nftables). `make test` runs the short
# forms. The measured figures go to bin/chaos-figures.tsv.
chaos: deps build
	@rm -f $(BIN)/chaos-figures.tsv
	$(GO) test -count=1 -timeout 45m -v -run 'TestPrivileged|TestFuzzTargets' ./internal/chaos/ \
	  -chaos.full -chaos.report=$(CURDIR)/$(BIN)/chaos-figures.tsv

# A 3-host lab in network namespaces: containers get IPs, talk, a policy
# takes effect (scripts/demo.sh; needs root and iproute2).
# make demo IPFAMILY=dual: the same in a dual-stack lab, over IPv6 too.
IPFAMILY ?= ipv4
demo: deps-demo build
	IPFAMILY=$(IPFAMILY) ./scripts/demo.sh

# Benchmarks against their baselines (issue 9; docs/performance.md). Needs
# root and the packages of scripts/deps.txt (make deps: iperf3 dnsperf
# dnsmasq-base containernetworking-plugins iptables nftables gnuplot-nox
# among them). Not part of `make test`.
#   make bench                 every benchmark (< 30 min on 2 cores)
#   make bench-quick           the short mode (< 5 min)
#   make bench ARGS="--only cni,dns --rounds 3"
bench: deps build
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/tabby-bench ./bench/cmd/tabby-bench
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/tabby-sim ./bench/cmd/tabby-sim
	$(BIN)/tabby-bench --bin $(BIN) --out bench/results --tabby-version $(VERSION) $(ARGS)

bench-quick:
	$(MAKE) bench ARGS="--quick $(ARGS)"

clean:
	rm -rf $(BIN)
