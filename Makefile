# fjord — build, run and test. `make run` and `make test` are the two commands
# a new user needs; both work on a machine with only Go, git and ssh.

GO      ?= go
BIN     := bin/fjord
DATA    ?= ./data
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build run test bench lint testenv sealed-secrets bench-compare deploy-check demo crash load fuzz

all: build

# The recipes below use bash for pipefail: a failed build must fail make even
# when its output goes through a filter.
SHELL := bash

# build compiles bin/fjord. The first build on a machine downloads the modules
# and compiles the Kubernetes libraries: several minutes on 2 cores. It says
# so, and condenses go's -v output into a progress line every 50 packages
# (compile errors are printed whole); a build from a warm cache takes seconds
# and prints only the first line.
build:
	@echo "make build: $(BIN) (the first build downloads modules and compiles the Kubernetes libraries: several minutes; later builds take seconds)"
	@set -o pipefail; CGO_ENABLED=0 $(GO) build -v -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/fjord 2>&1 | \
		awk '/^go: downloading / { if (++d % 20 == 1) printf "  downloading modules: %d so far (%s)\n", d, $$3; fflush(); next } \
			/^[A-Za-z0-9._~\/-]+$$/ { if (++c % 50 == 0) printf "  compiled %d packages (%s)\n", c, $$0; fflush(); next } \
			{ print; fflush() } \
			END { if (c >= 50) printf "  compiled %d packages: done\n", c }'

# run starts the server on the embedded default: bbolt and repos in $(DATA),
# SSH on 127.0.0.1:2222, HTTP on 127.0.0.1:8080. ARGS are more `fjord serve`
# flags: make run ARGS='--kubeconfig ~/.kube/config' turns the reconciler on.
ARGS ?=
run: build
	$(BIN) serve --data $(DATA) $(ARGS)

# testenv builds the real kube-apiserver and etcd that the reconciler's tests
# run against (internal/testenv) into ${FJORD_TESTENV_CACHE:-~/.cache/fjord/testenv},
# once per version: minutes the first time, nothing after.
testenv:
	GO='$(GO)' bash internal/testenv/tools/build.sh

# sealed-secrets builds the real Sealed Secrets controller and kubeseal
# (bitnami-labs/sealed-secrets v0.27.1, from the Go module proxy in a tools
# module of their own) and copies their CRD into the same cache as testenv,
# once per version: a minute or two the first time, nothing after.
# internal/sealedtest runs them against the test kube-apiserver.
sealed-secrets:
	GO='$(GO)' bash internal/sealedtest/tools/build.sh

# demo plays fjord's GitOps loop on this machine (deploy/demo/demo.sh): a
# real kube-apiserver and etcd, fjord, the example GitOps repo; a release
# pushed from "CI" goes live and a manual kubectl scale is reverted, each
# with its measured latency. Everything runs in a temp dir removed on exit
# and on Ctrl-C. Needs git, ssh, kubectl and curl.
demo: build testenv
	FJORD_BIN='$(BIN)' GO='$(GO)' bash deploy/demo/demo.sh

# test installs Debian's chromium when missing: bench's HTML report is
# checked for clipped and overlapping labels in headless Chromium, and the
# web UI is tested in it (ui's TestBrowser, driven by chromedp). It installs
# gpg too when missing: signed commits are tested with real OpenPGP
# signatures (reconciler's TestSignedCommits and TestVerifyCommit).
test: build testenv sealed-secrets
	@command -v chromium >/dev/null 2>&1 || { \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		echo "installing chromium from Debian's packages (for the HTML report's layout test and the web UI's browser test)"; \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q chromium; }
	@command -v gpg >/dev/null 2>&1 || { \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		echo "installing gnupg from Debian's packages (for the signed-commit tests)"; \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q gnupg; }
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...

# crash kills the real `fjord serve` with SIGKILL at random moments during
# pushes, mirror syncs, app syncs with prune (on the test kube-apiserver)
# and admin writes, CRASH_TRIALS times per kind, checks after every restart
# (acknowledged writes present, git fsck, served refs = disk, bbolt check,
# the next sync converges) and prints the table of trials and violations.
# The failover kind kills a replica group's primary instead (20 trials here,
# FJORD_FAILOVER_TRIALS=N to change). make test runs 3 trials per kind.
# FJORD_CRASH_SEED=N replays a run.
CRASH_TRIALS ?= 100
crash: build testenv
	FJORD_CRASH_TRIALS=$(CRASH_TRIALS) $(GO) test -count=1 -v -run '^TestCrash$$' -timeout 90m ./internal/crashtest

# fuzz runs every Fuzz target of the module for FUZZTIME each: the pkt-line
# reader, the v2 request and exec-line parsers, repo-name normalization,
# webhook payloads and signatures, ParseApplication and the admin API's
# request decoding. go test -fuzz takes one target per run, hence the loop.
# Their seeds (testdata/fuzz/FuzzXxx) run in make test as ordinary tests;
# a crash found here is written there by go test: fix it and keep it.
FUZZTIME ?= 60s
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$dir/*_test.go); do \
			echo "== $$dir $$t for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$dir; \
		done; \
	done

# load puts one fjord under LOAD_FETCHERS fetch/clone clients and
# LOAD_PUSHERS pushers over loopback for LOAD_DURATION (it stops by
# itself), then again with --max-sessions below the load: zero errors but
# the documented refusal, the fast path's p50/p99 under load, clone, fetch
# and push latencies, fjord's peak RSS and goroutines, and no goroutine or
# fd left once the load stops. make test runs 3 s of 16 clients and 4
# pushers.
LOAD_DURATION ?= 60s
LOAD_FETCHERS ?= 200
LOAD_PUSHERS  ?= 20
load: build
	FJORD_LOAD_DURATION=$(LOAD_DURATION) FJORD_LOAD_FETCHERS=$(LOAD_FETCHERS) FJORD_LOAD_PUSHERS=$(LOAD_PUSHERS) \
		$(GO) test -count=1 -v -run '^TestLoad$$' -timeout 30m ./internal/loadtest

# bench prints the fast-path table (fjord's "anything new?" beside a bare
# gliderlabs/ssh and x/crypto/ssh server answering the same bytes, idle and
# under 20 clones, with server CPU and allocations per question), the
# repo-server table (fjord against OpenSSH sshd on the same repo in the same
# run: openssh-server comes from Debian's packages when missing), the mirror
# benchmarks, the disk workload benchmarks, and the
# reconciler against `kubectl apply --server-side -k` on the test API server,
# a 200-object Helm chart against `helm template | kubectl apply --server-side`
# (the helm CLI built from the module cache when not on PATH),
# the single-primary ceiling (1,000 apps of 20 objects synced from a cold
# start on the test API server: time, CPU, memory, one idle resync),
# a repo aged by 2,000 single-commit pushes under housekeeping against
# the same repo freshly repacked (clone, incremental fetch, packs), and the
# web UI's apps page rendered from a store of 1,000 apps (p50/p99), and a
# replica group of fjord processes: push → acknowledged with 0 and with 1
# synchronous replica (p50/p99), follower lag after a push, failover time.
bench: build testenv
	@command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || { \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		echo "installing openssh-server from Debian's packages (for the OpenSSH column)"; \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q openssh-server; }
	$(GO) test -run '^$$' -bench 'AnythingNew|ServePath' -benchtime 2000x -timeout 30m ./gitserver/
	$(GO) test -run '^$$' -bench 'GitCLI' -benchtime 200x -timeout 30m ./gitserver/
	$(GO) test -run '^$$' -bench 'WebhookToServed' -benchtime 1x -timeout 30m ./mirror/
	$(GO) test -run '^$$' -bench 'IdleCheckPass' -benchtime 3x -timeout 30m ./mirror/
	$(GO) test -run '^$$' -bench 'Chart' -benchtime 2s -timeout 10m ./helmrepo/
	$(GO) test -run '^$$' -bench . -timeout 30m ./bench/
	$(GO) test -run '^$$' -bench 'Reconciler' -benchtime 1x -timeout 30m ./reconciler/
	$(GO) test -run '^$$' -bench 'SinglePrimaryScale' -benchtime 1x -timeout 40m ./reconciler/
	$(GO) test -run '^$$' -bench 'HelmChart' -benchtime 1x -timeout 30m ./reconciler/
	$(GO) test -run '^$$' -bench 'AgedRepo' -benchtime 1x -timeout 40m ./housekeeping/
	$(GO) test -run '^$$' -bench 'GroupPush|Failover' -benchtime 1x -timeout 30m ./ha/
	$(GO) test -run '^$$' -bench 'PushAcked|ChangeAcked' -benchtime 200x -timeout 20m ./replication/
	$(GO) test -run '^$$' -bench 'KeptChartAcked' -benchtime 10x -timeout 10m ./replication/
	$(GO) test -run '^$$' -bench 'AppsPage' -benchtime 200x -timeout 10m ./ui/

# bench-compare runs fio's etcd job (IBM/etcd recipe) and fjord's own version
# of it side by side, with the rest of `fjord bench disk`, on the disk under
# BENCH_DIR (default /var/tmp: disk-backed, unlike a tmpfs /tmp). fio comes
# from Debian's packages when missing.
BENCH_DIR   ?= /var/tmp
BENCH_FLAGS ?=
bench-compare: build
	@command -v fio >/dev/null 2>&1 || { \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		echo "installing fio from Debian's packages"; \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q fio; }
	@dir=$$(mktemp -d "$(BENCH_DIR)/fjord-bench-compare.XXXXXX") && \
		trap 'rmdir "$$dir"' EXIT && \
		$(BIN) bench disk --dir "$$dir" --compare-fio $(BENCH_FLAGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# deploy-check checks what deploy/ ships: `kubectl kustomize` renders every
# kustomization, internal/deploytest dry-runs them on the real kube-apiserver
# of `make testenv` and runs `systemd-analyze verify` on the systemd unit
# (systemd comes from Debian's packages when systemd-analyze is missing, here
# and not in `make test`, because it pulls in a lot).
deploy-check: testenv
	@command -v systemd-analyze >/dev/null 2>&1 || { \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		echo "installing systemd from Debian's packages (for systemd-analyze verify)"; \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q --no-install-recommends systemd; }
	@for k in $$(grep -L '^kind: Component' $$(find deploy -name kustomization.yaml | sort)); do \
		echo "kubectl kustomize $$(dirname $$k)"; \
		kubectl kustomize "$$(dirname $$k)" >/dev/null || exit 1; \
	done
	FJORD_REQUIRE_SYSTEMD=1 $(GO) test -count=1 ./internal/deploytest
