# nym-go: mixnet, nym-node, nym-api and nymvpn.
SHELL     := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO        ?= go
BIN       := bin
CMDS      := nym-node nym-api nymvpn
APT_PKGS  := iproute2 nftables iperf3 curl ca-certificates iputils-ping dbus
# An unpacked systemd-resolved for platform's DNS test (see deps).
RESOLVED  := $(CURDIR)/$(BIN)/systemd-resolved/lib/systemd/systemd-resolved
BENCHTIME ?= 1s
BENCHCOUNT ?= 3
FUZZTIME  ?= 30s
# The minimiser's default budget is 60 s per new input; on slow targets it
# ate the whole fuzz time.
FUZZMINIMIZETIME ?= 5s

.PHONY: all build test deps fmt-check vet lint bench fuzz anonymity demo localnet-up localnet-down clean

all: build

build:
	@mkdir -p $(BIN)
	@for c in $(CMDS); do \
		if [ -d cmd/$$c ]; then $(GO) build -o $(BIN)/$$c ./cmd/$$c || exit 1; fi; \
	done

# deps installs what the tests need on a fresh Debian machine: system packages
# (only when running as root and something is missing) and Go modules.
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "note: not root, not installing:$$missing (root-only tests will skip)"; fi; \
	fi
	@# systemd-resolved, unpacked only (installing it would repoint this
	@# host's /etc/resolv.conf): platform's DNS test runs a real one in
	@# namespaces of its own (NYM_TEST_SYSTEMD_RESOLVED).
	@if [ "$$(id -u)" = 0 ] && [ ! -x $(RESOLVED) ] && [ ! -x /lib/systemd/systemd-resolved ]; then \
		rm -rf $(BIN)/resolved-deb && mkdir -p $(BIN)/resolved-deb && \
		( cd $(BIN)/resolved-deb && { apt-get download -qq systemd-resolved 2>/dev/null || \
			{ DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get download -qq systemd-resolved; }; } && \
			dpkg -x systemd-resolved_*.deb ../systemd-resolved ) || \
		echo "note: could not unpack systemd-resolved; its DNS test will skip"; \
	fi
	$(GO) mod download

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

lint: fmt-check vet

# -count=1 everywhere: a cached result never stands in for a run.
test: deps lint
	NYM_TEST_SYSTEMD_RESOLVED=$(RESOLVED) $(GO) test -race -count=1 -timeout 20m -skip '^TestTiming' ./...
	@# Timing measurements that the race detector would distort; one retry,
	@# since a timing test on a shared machine can lose a round to a neighbour.
	$(GO) test -count=1 -run 'TestDelayDistribution' -v ./mixnet/mixnode || \
		$(GO) test -count=1 -run 'TestDelayDistribution' -v ./mixnet/mixnode
	$(GO) test -count=1 -run 'TestTrafficShape' -v ./mixnet/client || \
		$(GO) test -count=1 -run 'TestTrafficShape' -v ./mixnet/client
	@# Any other timing test is named TestTiming* and runs here the same way.
	@for d in $$(grep -rl --include='*_test.go' '^func TestTiming' . | xargs -r -n1 dirname | sort -u); do \
		echo "$(GO) test -count=1 -run '^TestTiming' -v $$d"; \
		$(GO) test -count=1 -run '^TestTiming' -v $$d || \
			$(GO) test -count=1 -run '^TestTiming' -v $$d || exit 1; \
	done

# bench runs every benchmark that carries a target and prints a table of
# ns/op, allocs/op and the ratio to the floor measured in the same run.
bench:
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count $(BENCHCOUNT) \
		./mixnet/sphinx ./mixnet/replay ./mixnet/mixnode ./mixnet/link | tee $(BIN)/bench.txt
	$(GO) test -run '^$$' -bench NodeSockets -benchtime 1x ./mixnet/node | tee -a $(BIN)/bench.txt
	$(GO) test -run '^$$' -bench 'PacketCreation|Goodput|Upstream' -benchtime 3x ./mixnet/client | tee -a $(BIN)/bench.txt
	$(GO) test -run '^$$' -bench 'IssueBook|VerifySpend' -benchtime $(BENCHTIME) ./mixnet/ticket | tee -a $(BIN)/bench.txt
	$(GO) test -run '^$$' -bench GatewayMetering -benchtime $(BENCHTIME) -count $(BENCHCOUNT) ./mixnet/gateway | tee -a $(BIN)/bench.txt
	$(GO) run ./internal/benchtable < $(BIN)/bench.txt
	@if [ "$$(id -u)" = 0 ]; then localnet/bench.sh; else echo "bench: not root, skipping the VPN benchmark (localnet/bench.sh)"; fi

# anonymity measures what a global passive observer learns in each mode
# (anonymity/measure): an in-process network with N VPN clients under web,
# bulk, interactive and idle workloads, every node recording a trace, then
# sender entropy, flow correlation and cover tests; fast mode the same
# through two in-process WireGuard gateways; prints the table README
# shows. No root. ANONYMITY_CLIENTS and ANONYMITY_SECONDS (per mode);
# NYM_ANONYMITY_MODES=fast,nodelay (say) runs some modes only.
ANONYMITY_CLIENTS ?= 10
ANONYMITY_SECONDS ?= 60
anonymity:
	NYM_ANONYMITY_REPORT=1 NYM_ANONYMITY_CLIENTS=$(ANONYMITY_CLIENTS) NYM_ANONYMITY_SECONDS=$(ANONYMITY_SECONDS) \
		$(GO) test -count=1 -timeout 30m -run '^TestAnonymityReport$$' -v ./anonymity/measure

# fuzz runs every fuzz target in the repository for FUZZTIME each, one after
# another, and prints a line per target with the executions go reported.
# It fails if any target finds a crasher (go writes it to the package's
# testdata/fuzz/; commit it with the fix, as a regression input). Go's own
# "context deadline exceeded" when the time runs out while it minimises an
# input is no crasher: it is reported, not failed. Logs: $(BIN)/fuzz/.
fuzz:
	@mkdir -p $(BIN)/fuzz; : > $(BIN)/fuzz/summary.txt; failed=0; \
	for p in $$($(GO) list ./...); do \
		targets=$$($(GO) test -list '^Fuzz' $$p) || { echo "fuzz: cannot list the targets of $$p"; failed=1; continue; }; \
		for t in $$(echo "$$targets" | grep ^Fuzz); do \
			log=$(BIN)/fuzz/$$(echo $$p | tr / _).$$t.log; \
			$(GO) test -count=1 -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) \
				-fuzzminimizetime $(FUZZMINIMIZETIME) $$p > $$log 2>&1; rc=$$?; \
			execs=$$(grep -o 'execs: [0-9]*' $$log | tail -1 | cut -d' ' -f2); \
			if [ $$rc = 0 ]; then status=ok; \
			elif grep -q 'Failing input written to' $$log; then status=CRASHER; failed=1; \
			elif grep -q 'context deadline exceeded' $$log; then status="ok (time ran out while minimising)"; \
			else status=FAILED; failed=1; fi; \
			line=$$(printf '%-40s %-28s %12s execs  %s' $${p#github.com/nym-go/nym/} $$t "$${execs:-0}" "$$status"); \
			echo "$$line" | tee -a $(BIN)/fuzz/summary.txt; \
			if [ "$$status" = CRASHER ] || [ "$$status" = FAILED ]; then grep -E -- '--- FAIL|Failing input|panic:|fuzz_test|_test.go' $$log | head -20; fi; \
		done; \
	done; \
	echo "fuzz: summary in $(BIN)/fuzz/summary.txt"; exit $$failed

# The local network (localnet/localnet.sh): one network namespace per node,
# a pretend internet behind the exit and a client namespace; root only.
# LOCALNET_PREFIX and LOCALNET_DIR pick other namespace names and state dir.
# The script builds what it needs itself, so a nymvpn that does not build
# yet stops neither localnet-up nor the demo's other steps.
localnet-up:
	localnet/localnet.sh up

localnet-down:
	localnet/localnet.sh down

# demo: local network up, nymvpn connect in the client namespace, fetch
# through the tunnel, disconnect, tear down; fails naming the missing step.
demo:
	localnet/demo.sh

clean:
	rm -rf $(BIN)
