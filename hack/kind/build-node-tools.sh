#!/usr/bin/env bash
# containerd (+ its runc shim and ctr) and crictl for the kind node image, built from the
# Go module proxy at the versions in hack/kind/versions.env, cached by version:
#   $CACHE/containerd/<v>/bin/{containerd,containerd-shim-runc-v2,ctr}
#   $CACHE/crictl/<v>/bin/crictl
# Static binaries (CGO off, the snapshotters that need C libraries left out).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$ROOT/hack/kind/versions.env"

build() {  # build OUT_DIR LDFLAGS TAGS PACKAGE@VERSION...
  local out=$1 ldflags=$2 tags=$3; shift 3
  mkdir -p "$out.tmp"
  CGO_ENABLED=0 GOBIN="$out.tmp" "$GO" install -trimpath -tags "$tags" -ldflags "-s -w $ldflags" "$@"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

ctrd="$CACHE/containerd/$CONTAINERD_VERSION/bin"
if [ ! -x "$ctrd/containerd-shim-runc-v2" ]; then
  log "building containerd $CONTAINERD_VERSION"
  m=github.com/containerd/containerd/v2
  build "$ctrd" "-X $m/version.Version=$CONTAINERD_VERSION" \
    "no_aufs no_zfs no_btrfs no_devmapper" \
    "$m/cmd/containerd@$CONTAINERD_VERSION" "$m/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "$m/cmd/ctr@$CONTAINERD_VERSION"
fi
crictl="$CACHE/crictl/$CRICTL_VERSION/bin"
if [ ! -x "$crictl/crictl" ]; then
  log "building crictl $CRICTL_VERSION"
  build "$crictl" "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" "" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
fi
"$ctrd/containerd" --version >&2
"$crictl/crictl" --version >&2
