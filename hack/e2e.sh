#!/usr/bin/env bash
# `make e2e`: the kind end-to-end tier on this machine, from nothing but the package
# registries. It installs and starts what it needs and stops what it started:
#   1. Debian's docker.io, and dockerd unless an engine already answers (hack/dockerd-up.sh);
#   2. kind and helm from the Go module proxy, kubectl from the Kubernetes build (tools.sh);
#   3. the project's image (hack/images/memkube.sh, on the local python:3.12-slim stand-in);
#   4. the cluster: the node image built here, one control plane and two workers
#      (hack/kind/cluster-up.sh);
#   5. pytest tests/e2e_kind --kind against it (it loads the image and installs the chart).
# Afterwards the cluster is deleted (MEMKUBE_E2E_KEEP=1 keeps it) and a dockerd started here
# is stopped. Every built part is cached by version under ${MEMKUBE_CACHE:-~/.cache/memkube}.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CLUSTER=${MEMKUBE_E2E_CLUSTER_NAME:-memkube-e2e}
started_dockerd=
cleanup() {
  local rc=$?
  if [ "${MEMKUBE_E2E_KEEP:-}" != 1 ] && command -v kind >/dev/null 2>&1; then
    kind delete cluster --name "$CLUSTER" >&2 || true
  fi
  if [ -n "$started_dockerd" ]; then "$ROOT/hack/dockerd-down.sh" || true; fi
  exit "$rc"
}
trap cleanup EXIT

t0=$(date +%s)
if ! "$DOCKER" info >/dev/null 2>&1; then
  "$ROOT/hack/dockerd-up.sh"
  started_dockerd=1
fi
PATH="$("$ROOT/hack/kind/tools.sh"):$PATH"
export PATH
# kind drives `docker` by name: the engine's own CLI first.
bindir=$(mktemp -d)
ln -s "$DOCKER" "$bindir/docker"
PATH="$bindir:$PATH"
image=$("$ROOT/hack/images/memkube.sh" memkube:e2e)
t_images=$(date +%s)
kubeconfig="$bindir/kubeconfig"
kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
"$ROOT/hack/kind/cluster-up.sh" "$CLUSTER" "$kubeconfig"
t_cluster=$(date +%s)
log "set-up: images $((t_images - t0)) s, node image and cluster $((t_cluster - t_images)) s"

MEMKUBE_E2E_CLUSTER=$CLUSTER MEMKUBE_E2E_IMAGE=$image \
  "$ROOT/.venv/bin/python" -m pytest "$ROOT/tests/e2e_kind" --kind -v -rs -p no:cacheprovider \
  "$@"
log "make e2e: $(($(date +%s) - t0)) s in all"
