#!/usr/bin/env bash
# kind and helm from the Go module proxy at pinned versions, cached by version:
#   $CACHE/kind/v<KIND_VERSION>/bin/kind, $CACHE/helm/<HELM_VERSION>/bin/helm
# Prints a PATH prefix that puts them, and the Kubernetes build's kubectl, first.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
# shellcheck disable=SC1090
source "${MEMKUBE_K8S_VERSIONS:-$ROOT/hack/versions.env}"
source "$ROOT/hack/kind/versions.env"

gobuild() {  # gobuild DIR PACKAGE@VERSION [LDFLAGS]
  local dir=$1 pkg=$2 ldflags=${3:-}
  [ -x "$dir/$(basename "${pkg%@*}")" ] && return 0
  log "building $pkg"
  rm -rf "$dir.tmp"
  CGO_ENABLED=0 GOBIN="$dir.tmp" "$GO" install -trimpath -ldflags "-s -w $ldflags" "$pkg"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

kind_dir="$CACHE/kind/v${KIND_VERSION#v}/bin"
helm_dir="$CACHE/helm/$HELM_VERSION/bin"
gobuild "$kind_dir" "sigs.k8s.io/kind@v${KIND_VERSION#v}"
gobuild "$helm_dir" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
k8s_bin="$CACHE/k8s/v$KUBERNETES_VERSION/bin"
if [ ! -x "$k8s_bin/kubectl" ]; then
  "$ROOT/hack/k8s-binaries.sh" >&2
fi
echo "$kind_dir:$helm_dir:$k8s_bin"
