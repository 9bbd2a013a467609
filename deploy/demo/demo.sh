#!/usr/bin/env bash
# deploy/demo/demo.sh, run by `make demo`: fjord's GitOps loop, end to end, on
# this machine.
#
# It starts a real kube-apiserver and etcd (internal/testenv, built by `make
# testenv`) and fjord, all in one temporary directory, hosts
# deploy/example-gitops in fjord as the repo "gitops" and registers its
# Application. Then it plays two things that happen to every GitOps setup:
#
#   1. CI releases a new image: clone, bump newTag in overlays/prod, commit,
#      push. Nobody runs kubectl; fjord's reconciler deploys the push.
#   2. Someone changes the cluster by hand (kubectl scale); fjord's self-heal
#      puts back what git says.
#
# and prints how long fjord took for each. Everything it started is stopped
# and the temporary directory removed when it ends: on success, on failure
# and on Ctrl-C. There are no prompts, so CI runs it as it is.
#
# Needs git, ssh, ssh-keygen, kubectl and curl, and go to build what is
# missing. Settings, all optional, from the environment:
#
#   FJORD_BIN     the fjord binary (default bin/fjord, built when missing)
#   KUBEENV_BIN   the kubeenv binary (default: built into the temp dir)
#   GO            the go command (default go)
#   DEMO_TIMEOUT  seconds each step may take before the demo fails (default 60)
#   TMPDIR        where the temporary directory is made (default /tmp)

set -Eeuo pipefail

# Paths below are relative to the repo root, wherever the script is run from.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD

# What the demo deploys, as deploy/example-gitops declares it: the
# Application's name and destination namespace (application.yaml), its
# Deployment (base/deployment.yaml), and the image tag CI moves from and to
# (overlays/prod/kustomization.yaml).
SEED=$ROOT/deploy/example-gitops
APP=nordic-payment-gateway
NS=payments
DEPLOY=payment-gateway
OLD_TAG=1.4.2
NEW_TAG=1.4.3
SCALE_TO=7

STEP_TIMEOUT=${DEMO_TIMEOUT:-60}
FJORD=${FJORD_BIN:-bin/fjord}
KUBEENV=${KUBEENV_BIN:-}
GO=${GO:-go}

# The processes the demo starts, for cleanup; empty until started.
TMP="" KUBEENV_PID="" FJORD_PID="" WATCH_PID="" STAMP_PID="" EVENTS=""
# Times, set by stamp.
t0="" t1="" push_start="" push_end=""

# ---------------------------------------------------------------------------
# Output and timing

step() { printf '\n==> %s\n' "$*"; }
say() { printf '    %s\n' "$*"; }

# show prints a command as it would be typed, quoting the words that need it
# for a shell.
show() {
	local word line='    $'
	for word in "$@"; do
		if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
			line+=" $word"
		else
			line+=" '${word//\'/\'\\\'\'}'" # it's -> 'it'\''s'
		fi
	done
	printf '%s\n' "$line"
}

# run shows a command, then runs it with its output indented under it.
run() {
	show "$@"
	"$@" 2>&1 | sed 's/^/      /'
}

# stamp VAR sets VAR to the time in microseconds. It reads bash's own clock
# rather than forking date, so that the latencies printed are not padded by
# process start-up. The decimal separator depends on the locale: strip it.
stamp() { printf -v "$1" '%s' "${EPOCHREALTIME//[!0-9]/}"; }

# ms FROM TO prints the milliseconds between two stamps.
ms() { echo $((($2 - $1) / 1000)); }

# fail stops the demo with a message and the end of each log, which is where
# the reason usually is.
fail() {
	trap - ERR
	printf '\ndemo: FAILED: %s\n' "$*" >&2
	local log
	for log in fjord.log kubeenv.log watch.err; do
		if [[ -n $TMP && -s $TMP/$log ]]; then
			printf -- '--- last lines of %s ---\n' "$log" >&2
			tail -n 25 "$TMP/$log" >&2
		fi
	done
	exit 1
}

# on_err reports a command that failed unexpectedly (set -e). In a subshell
# it leaves the report to the parent, which sees the subshell fail.
on_err() {
	local status=$1 cmd=$2 line=$3
	((BASH_SUBSHELL == 0)) || return 0
	fail "line $line: '$cmd' exited with status $status"
}

# ---------------------------------------------------------------------------
# Cleanup: on every exit, whatever caused it.

# stop_pid PID ends one process the demo started: SIGTERM, then SIGKILL if it
# has not exited within ten seconds (fjord and kubeenv take well under one).
stop_pid() {
	local pid=$1 i
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local status=$?
	# A second Ctrl-C must not cut the cleanup short and leave an API
	# server running.
	trap '' INT TERM
	trap - ERR
	set +e
	cd "$ROOT"
	if [[ -n $EVENTS ]]; then exec {EVENTS}<&-; fi
	stop_pid "$WATCH_PID"
	stop_pid "$STAMP_PID"
	# fjord before the API server: the other way round, its watches would
	# spend the shutdown retrying a dead server.
	stop_pid "$FJORD_PID"
	stop_pid "$KUBEENV_PID"
	if [[ -n $TMP ]]; then
		rm -rf "$TMP"
		printf '\ndemo: cleaned up: stopped fjord, kube-apiserver and etcd; removed %s\n' "$TMP"
	fi
	exit "$status"
}

trap cleanup EXIT
trap 'printf "\ndemo: interrupted\n" >&2; exit 130' INT
trap 'printf "\ndemo: terminated\n" >&2; exit 143' TERM
trap 'on_err $? "$BASH_COMMAND" $LINENO' ERR

# ---------------------------------------------------------------------------
# Waiting

# poll DESC SECONDS CMD...: runs CMD every 50 ms until it succeeds, and fails
# the demo after SECONDS.
poll() {
	local desc=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@"; do
		((SECONDS < deadline)) || fail "timed out after ${secs}s waiting for $desc"
		sleep 0.05
	done
}

# alive NAME PID fails the demo if the process has exited: waiting for it to
# become ready would only run into the timeout.
alive() {
	kill -0 "$2" 2>/dev/null || fail "$1 exited"
}

# start_watch runs a kubectl watch of the Deployment that prints one line,
# "IMAGE REPLICAS", per change, and stamps each line with the time it
# arrived, in a process of its own: the demo reads the lines later, after a
# git push or kubectl scale returns, but the latency counts from when the API
# server sent them. One watch serves the whole demo and also sees changes
# that are undone within milliseconds, which polling with kubectl get would
# miss. It selects by name, so it can start before the namespace exists.
start_watch() {
	mkfifo "$TMP/watch.raw" "$TMP/watch.events"
	# `command`: the kubectl function would run in a subshell of its own,
	# and WATCH_PID would be that subshell's, not kubectl's.
	command kubectl --cache-dir "$TMP/kube-cache" get deployment -n "$NS" --field-selector "metadata.name=$DEPLOY" --watch \
		-o jsonpath='{.spec.template.spec.containers[0].image} {.spec.replicas}{"\n"}' \
		>"$TMP/watch.raw" 2>"$TMP/watch.err" &
	WATCH_PID=$!
	stamp_lines <"$TMP/watch.raw" >"$TMP/watch.events" &
	STAMP_PID=$!
	exec {EVENTS}<"$TMP/watch.events"
}

stamp_lines() {
	local line now
	while IFS= read -r line; do
		stamp now
		printf '%s %s\n' "$now" "$line"
	done
}

# await DESC PATTERN reads the watch's lines until "IMAGE REPLICAS" matches
# the glob PATTERN, and sets EV_AT (when it arrived), EV_IMAGE and
# EV_REPLICAS. It fails the demo after STEP_TIMEOUT seconds, or if the watch
# ends, naming the last state it saw.
await() {
	local desc=$1 pattern=$2 deadline=$((SECONDS + STEP_TIMEOUT)) last="nothing" at image replicas left
	while :; do
		left=$((deadline - SECONDS))
		((left > 0)) || fail "timed out after ${STEP_TIMEOUT}s waiting for $desc; last seen: $last"
		if ! read -r -t "$left" -u "$EVENTS" at image replicas; then
			((SECONDS < deadline)) || fail "timed out after ${STEP_TIMEOUT}s waiting for $desc; last seen: $last"
			fail "the kubectl watch of deployment/$DEPLOY ended while waiting for $desc: $(tail -n 3 "$TMP/watch.err")"
		fi
		last="image $image, replicas $replicas"
		# shellcheck disable=SC2053 # $pattern is a glob on purpose
		if [[ "$image $replicas" == $pattern ]]; then
			EV_AT=$at EV_IMAGE=$image EV_REPLICAS=$replicas
			return 0
		fi
	done
}

# ---------------------------------------------------------------------------
# The tools, as the demo shows them

# fjord is the binary under test; FJORD_DATA (exported below) points every
# command at the demo's server. The two functions are for commands run in
# the foreground: one run in the background with & would be a subshell, and
# $! its PID rather than the program's.
fjord() { "$FJORD" "$@"; }

# kubectl keeps its discovery cache in the temp dir rather than ~/.kube.
kubectl() { command kubectl --cache-dir "$TMP/kube-cache" "$@"; }

# ---------------------------------------------------------------------------
# Set up

for tool in git ssh ssh-keygen kubectl curl; do
	command -v "$tool" >/dev/null || fail "$tool is not installed; the demo needs git, ssh, ssh-keygen, kubectl and curl"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fjord-demo.XXXXXX")
printf 'fjord demo: a git push goes live in the cluster, a change by hand is reverted\n'
say "working in $TMP (removed on exit)"

if [[ ! -x $FJORD ]]; then
	step "building $FJORD"
	"$GO" build -o "$FJORD" ./cmd/fjord
fi
FJORD=$(cd "$(dirname "$FJORD")" && pwd)/$(basename "$FJORD")
if [[ -z $KUBEENV ]]; then
	# Built each run, into the temp dir: Go's build cache makes that a
	# second, and `make demo` leaves nothing new in bin/.
	KUBEENV=$TMP/kubeenv
	"$GO" build -o "$KUBEENV" ./internal/testenv/cmd/kubeenv
fi

# From here on the demo works in its temp dir, so the paths it shows are short.
cd "$TMP"

# Git must not pick up the user's settings (commit signing, hooks, a
# different default branch) nor sign in with their keys: the demo's server
# knows only the key made below, and its host key is checked, not trusted on
# first use.
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME="fjord demo" GIT_AUTHOR_EMAIL=demo@fjord.invalid
export GIT_COMMITTER_NAME="fjord demo" GIT_COMMITTER_EMAIL=demo@fjord.invalid
printf -v GIT_SSH_COMMAND 'ssh -F /dev/null -i %q -o IdentitiesOnly=yes -o UserKnownHostsFile=%q -o StrictHostKeyChecking=yes -o BatchMode=yes' \
	"$TMP/id_ed25519" "$TMP/known_hosts"
export GIT_SSH_COMMAND
# fjord likewise: its data dir is the demo's, and a host key the user's
# environment names for their own fjord is not the demo's to use.
export FJORD_DATA=$TMP/data
unset FJORD_HOST_KEY FJORD_ADMIN_KEY

# ---------------------------------------------------------------------------
step "starting kube-apiserver and etcd (internal/testenv; no scheduler or kubelet, so no pods run)"
stamp t0
"$KUBEENV" -kubeconfig-out "$TMP/kubeconfig.path" -dir "$TMP" 2>"$TMP/kubeenv.log" &
KUBEENV_PID=$!
kubeenv_ready() {
	alive kubeenv "$KUBEENV_PID"
	[[ -s $TMP/kubeconfig.path ]]
}
# kubeenv bounds its own start at two minutes; this only catches a hang.
poll "kube-apiserver to be ready" 150 kubeenv_ready
KUBECONFIG=$(<"$TMP/kubeconfig.path")
export KUBECONFIG
stamp t1
say "ready in $(ms "$t0" "$t1") ms: $(kubectl config view -o jsonpath='{.clusters[0].cluster.server}')"

# ---------------------------------------------------------------------------
step "starting fjord serve, with the reconciler pointed at that API server"
ssh-keygen -q -t ed25519 -N '' -C fjord-demo -f "$TMP/id_ed25519"
stamp t0
# Port 0: the kernel picks free ports, so the demo never collides with a
# fjord already running on 2222/8080; fjord logs the ports it got.
# "$FJORD" rather than the fjord function: FJORD_PID must be fjord's own.
"$FJORD" serve --ssh-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
	--admin-key "$TMP/id_ed25519.pub" --kubeconfig "$KUBECONFIG" >"$TMP/fjord.log" 2>&1 &
FJORD_PID=$!
fjord_ready() {
	alive fjord "$FJORD_PID"
	local line
	line=$(grep -m1 'msg="fjord serving"' "$TMP/fjord.log") || return 1
	SSH_ADDR=$(sed -n 's/.* ssh=\([^ ]*\).*/\1/p' <<<"$line")
	HTTP_ADDR=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' <<<"$line")
	curl -fsS -o /dev/null "http://$HTTP_ADDR/readyz"
}
poll "fjord to be ready (/readyz)" 30 fjord_ready
grep -q 'msg="reconciler on"' "$TMP/fjord.log" || fail "fjord started without its reconciler"
stamp t1
say "fjord ready in $(ms "$t0" "$t1") ms: SSH $SSH_ADDR, HTTP http://$HTTP_ADDR, log $TMP/fjord.log"
REPO_URL=ssh://git@$SSH_ADDR/gitops.git
run fjord hostkey
fjord hostkey >known_hosts 2>/dev/null

# ---------------------------------------------------------------------------
step "hosting deploy/example-gitops in fjord as the repo gitops"
run fjord repo create gitops
cp -R "$SEED/." seed/
git -C seed init -q -b main
git -C seed add .
git -C seed commit -q -m "payment gateway"
run git -C seed push -q "$REPO_URL" main

# The watch starts before the Application exists, so that it sees every
# change the demo makes from the first sync on.
start_watch

step "registering the Application (syncPolicy.automated: prune, selfHeal)"
stamp t0
run fjord app apply -f "$SEED/application.yaml"
await "deployment/$DEPLOY with image tag $OLD_TAG" "*:$OLD_TAG *"
first_ms=$(ms "$t0" "$EV_AT")
REPLICAS=$EV_REPLICAS
say "deployment/$DEPLOY live in $first_ms ms: $EV_IMAGE, $REPLICAS replicas"

# ---------------------------------------------------------------------------
step "CI releases $NEW_TAG: clone, bump newTag in overlays/prod, commit, push"
run git clone -q "$REPO_URL" ci
run sed -i "s/newTag: .*/newTag: \"$NEW_TAG\"/" ci/overlays/prod/kustomization.yaml
grep -q "newTag: \"$NEW_TAG\"" ci/overlays/prod/kustomization.yaml ||
	fail "sed did not set newTag in overlays/prod/kustomization.yaml"
run git -C ci commit -q -am "release payment-gateway $NEW_TAG"
show git -C ci push -q origin main
stamp push_start
git -C ci push -q origin main
stamp push_end
await "deployment/$DEPLOY to get image tag $NEW_TAG" "*:$NEW_TAG *"
push_ms=$(ms "$push_start" "$push_end")
live_ms=$(ms "$push_end" "$EV_AT")
if ((live_ms < 0)); then
	# fjord deploys on the ref update, which git reports to the client a
	# little later: the deploy can beat the client's git push home.
	say "new image live in 0 ms: $EV_IMAGE was live $((-live_ms)) ms before git push returned (git push itself took $push_ms ms)"
	live_ms=0
else
	say "new image live in $live_ms ms after git push returned: $EV_IMAGE (git push itself took $push_ms ms)"
fi

# ---------------------------------------------------------------------------
step "someone scales deployment/$DEPLOY by hand; fjord's self-heal puts git's $REPLICAS replicas back"
stamp t0
run kubectl scale "deployment/$DEPLOY" -n "$NS" --replicas="$SCALE_TO"
await "the manual scale to $SCALE_TO replicas" "* $SCALE_TO"
scaled_at=$EV_AT
await "the replicas of deployment/$DEPLOY to go back to $REPLICAS" "* $REPLICAS"
heal_ms=$(ms "$scaled_at" "$EV_AT")
say "manual scale reverted in $heal_ms ms: replicas $SCALE_TO -> $EV_REPLICAS (from the API server's event of the scale to fjord's revert)"

# ---------------------------------------------------------------------------
step "what fjord reports"
run fjord app list
run fjord app history "$APP"
run fjord app get "$APP"
say "(Health stays InProgress: this API server has no controller-manager or kubelet, so no pod ever runs.)"

step "summary"
say "first sync (app apply -> Deployment in the cluster)   $first_ms ms"
say "CI push -> new image live                             $live_ms ms"
say "manual kubectl scale -> reverted                      $heal_ms ms"
printf '\ndemo: OK\n'
