# fjord — build, run and test. `make run` and `make test` are the two commands
# a new user needs; both work on a machine with only Go, git and ssh.

GO      ?= go
BIN     := bin/fjord
DATA    ?= ./data
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build run test bench lint testenv

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/fjord

# run starts the server on the embedded default: bbolt and repos in $(DATA),
# SSH on 127.0.0.1:2222, HTTP on 127.0.0.1:8080.
run: build
	$(BIN) serve --data $(DATA)

# testenv builds the real kube-apiserver and etcd that the reconciler's tests
# run against (internal/testenv) into ${FJORD_TESTENV_CACHE:-~/.cache/fjord/testenv},
# once per version: minutes the first time, nothing after.
testenv:
	GO='$(GO)' bash internal/testenv/tools/build.sh

test: build testenv
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
