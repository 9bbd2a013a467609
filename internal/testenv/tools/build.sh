#!/usr/bin/env bash
# build.sh builds the kube-apiserver and etcd that fjord's tests run against
# (see internal/testenv) from the tools modules beside this script, into a
# cache outside the work tree keyed by version:
#
#   ${FJORD_TESTENV_CACHE:-$HOME/.cache/fjord/testenv}/k8s-v1.34.4/kube-apiserver
#   ${FJORD_TESTENV_CACHE:-$HOME/.cache/fjord/testenv}/etcd-v3.6.4/etcd
#
# A binary that is already there is not built again, so `make test` pays the
# build once per machine and version: 7 to 12 minutes for kube-apiserver on
# two cores shared with other builds, under 2 for etcd. Each binary is built
# under a temporary name and renamed into place,
# so an interrupted build never leaves a half-written binary that looks done.
#
# The versions here must match the tools modules' go.mod files and the
# constants in internal/testenv/binaries.go; a test in internal/testenv
# checks all three agree.
set -euo pipefail

K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.4

here="$(cd "$(dirname "$0")" && pwd)"
cache="${FJORD_TESTENV_CACHE:-$HOME/.cache/fjord/testenv}"
go="${GO:-go}"

# kube-apiserver reports its version (GET /version, kubectl version) from
# variables that Kubernetes' own build stamps with -X; a plain go build
# would report v0.0.0-master. Both copies are stamped, as upstream does.
k8s_minor="${K8S_VERSION#v1.}"
k8s_minor="${k8s_minor%%.*}"
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
	k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit="
done

# build NAME MODULE_DIR OUT [LDFLAGS] builds the main package of MODULE_DIR
# to OUT, with LDFLAGS added to the ones that strip the binary.
build() {
	local name="$1" dir="$2" out="$3" ldflags="${4:-}"
	if [[ -x "$out" ]]; then
		echo "testenv: $name is cached at $out"
		return
	fi
	mkdir -p "$(dirname "$out")"
	# A lock per binary: two `make test` runs at once (two work trees on one
	# machine) wait for one build instead of doing it twice. flock is in
	# util-linux; without it both build, and the rename still keeps it safe.
	if command -v flock >/dev/null; then
		exec 9>"$out.lock"
		if ! flock -n 9; then
			# Say why nothing happens: the other build may take minutes.
			echo "testenv: waiting for another build of $name (lock $out.lock)"
			flock 9
		fi
		if [[ -x "$out" ]]; then
			echo "testenv: $name is cached at $out"
			exec 9>&-
			return
		fi
	fi
	local tmp="$out.tmp.$$"
	trap 'rm -f "$tmp"' EXIT
	echo "testenv: building $name into $out (kube-apiserver takes minutes)"
	local start=$SECONDS
	# GOWORK=off: a go.work above the tools modules must not pull them into
	# fjord's build list. CGO_ENABLED=0 as upstream releases are built, so no
	# C toolchain is needed. -buildvcs=false: the binary must not depend on
	# the state of fjord's work tree.
	(cd "$dir" && GOWORK=off CGO_ENABLED=0 "$go" build -mod=readonly -trimpath -buildvcs=false \
		-ldflags="-s -w$ldflags" -o "$tmp" .)
	mv -f "$tmp" "$out"
	trap - EXIT
	echo "testenv: built $name in $((SECONDS - start))s ($(du -h "$out" | cut -f1))"
	if command -v flock >/dev/null; then
		exec 9>&-
	fi
}

build etcd "$here/etcd" "$cache/etcd-$ETCD_VERSION/etcd"
build kube-apiserver "$here/kube-apiserver" "$cache/k8s-$K8S_VERSION/kube-apiserver" "$k8s_ldflags"
