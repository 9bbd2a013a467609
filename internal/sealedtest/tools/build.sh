#!/usr/bin/env bash
# build.sh builds the Sealed Secrets controller and kubeseal that fjord's
# Sealed Secrets test runs (see internal/sealedtest) from the tools module
# beside this script, and copies the SealedSecret CRD out of the same module,
# into the test cache outside the work tree, keyed by version:
#
#   ${FJORD_TESTENV_CACHE:-$HOME/.cache/fjord/testenv}/sealed-secrets-v0.27.1/controller
#   ${FJORD_TESTENV_CACHE:-$HOME/.cache/fjord/testenv}/sealed-secrets-v0.27.1/kubeseal
#   ${FJORD_TESTENV_CACHE:-$HOME/.cache/fjord/testenv}/sealed-secrets-v0.27.1/bitnami.com_sealedsecrets.yaml
#
# The module is github.com/bitnami-labs/sealed-secrets: later releases moved
# to github.com/bitnami/sealed-secrets, which the Go module proxy does not
# serve, so v0.27.1 is the last one buildable from the proxy. It lives in its
# own module (the `tool` lines of go.mod here) so that its dependency graph
# never enters fjord's go.mod. What is already in the cache is not built
# again: the first run takes a minute or two, later ones nothing. Each file
# is written under a temporary name and renamed into place, so an
# interrupted build never leaves a half-written file that looks done.
#
# The version here must match go.mod beside this script and the constant in
# internal/sealedtest; a test there checks that they agree.
set -euo pipefail

SEALED_SECRETS_VERSION=v0.27.1
module=github.com/bitnami-labs/sealed-secrets

here="$(cd "$(dirname "$0")" && pwd)"
cache="${FJORD_TESTENV_CACHE:-$HOME/.cache/fjord/testenv}"
out="$cache/sealed-secrets-$SEALED_SECRETS_VERSION"
go="${GO:-go}"

done_already() {
	[[ -x "$out/controller" && -x "$out/kubeseal" && -s "$out/bitnami.com_sealedsecrets.yaml" ]]
}

if done_already; then
	echo "sealed-secrets: $SEALED_SECRETS_VERSION is cached at $out"
	exit 0
fi
mkdir -p "$out"
# One lock for the three files: two `make test` runs at once (two work
# trees on one machine) wait for one build instead of doing it twice. flock
# is in util-linux; without it both build, and the renames keep it safe.
if command -v flock >/dev/null; then
	exec 9>"$out/.lock"
	if ! flock -n 9; then
		echo "sealed-secrets: waiting for another build (lock $out/.lock)"
		flock 9
	fi
	if done_already; then
		echo "sealed-secrets: $SEALED_SECRETS_VERSION is cached at $out"
		exit 0
	fi
fi

tmps=()
trap 'rm -f "${tmps[@]}"' EXIT

# GOWORK=off: a go.work above the tools module must not pull it into
# fjord's build list. CGO_ENABLED=0 as upstream releases are built.
# -buildvcs=false: the binaries must not depend on fjord's work tree.
for cmd in controller kubeseal; do
	if [[ -x "$out/$cmd" ]]; then
		echo "sealed-secrets: $cmd is cached at $out/$cmd"
		continue
	fi
	tmp="$out/$cmd.tmp.$$"
	tmps+=("$tmp")
	echo "sealed-secrets: building $cmd $SEALED_SECRETS_VERSION into $out/$cmd (a minute or two the first time)"
	start=$SECONDS
	(cd "$here" && GOWORK=off CGO_ENABLED=0 "$go" build -mod=readonly -trimpath -buildvcs=false \
		-ldflags="-s -w -X main.VERSION=$SEALED_SECRETS_VERSION" -o "$tmp" "$module/cmd/$cmd")
	mv -f "$tmp" "$out/$cmd"
	echo "sealed-secrets: built $cmd in $((SECONDS - start))s ($(du -h "$out/$cmd" | cut -f1))"
done

# The CRD ships in the module (the Helm chart's crds/): take it from the
# module cache the build just used, so it is the same release's CRD.
dir="$(cd "$here" && GOWORK=off "$go" list -mod=readonly -m -f '{{.Dir}}' "$module")"
crd="$dir/helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml"
if [[ ! -s "$crd" ]]; then
	echo "sealed-secrets: the module at $dir has no $crd" >&2
	exit 1
fi
tmp="$out/bitnami.com_sealedsecrets.yaml.tmp.$$"
tmps+=("$tmp")
cp "$crd" "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$out/bitnami.com_sealedsecrets.yaml"
echo "sealed-secrets: CRD copied to $out/bitnami.com_sealedsecrets.yaml"
