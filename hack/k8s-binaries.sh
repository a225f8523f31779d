#!/usr/bin/env bash
# Build (or restore from cache) the pinned Kubernetes and etcd binaries from Go module source.
#
#   hack/k8s-binaries.sh            build what is missing, print the two bin directories
#   hack/k8s-binaries.sh --check    exit 0 if both are cached, 3 if not (builds nothing)
#
# Versions come from hack/versions.env only. Output (outside the repository, keyed by version):
#   ${MEMKUBE_CACHE:-$HOME/.cache/memkube}/k8s/v$KUBERNETES_VERSION/bin/
#       kube-apiserver kube-controller-manager kube-scheduler kubelet kubeadm kube-proxy kubectl
#   ${MEMKUBE_CACHE:-$HOME/.cache/memkube}/etcd/v$ETCD_VERSION/bin/   etcd etcdctl
# Each version directory appears in one rename once complete, so a reader never sees half a
# cache; a second run finds it and costs nothing. GOCACHE and GOMODCACHE keep Go's defaults.
# Exit status 3: Go or the module proxy is not available (callers skip, or fail under CI).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$HERE/versions.env"
CACHE=${MEMKUBE_CACHE:-$HOME/.cache/memkube}
K8S_DIR=$CACHE/k8s/v$KUBERNETES_VERSION
ETCD_DIR=$CACHE/etcd/v$ETCD_VERSION
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubeadm kube-proxy kubectl)
ETCD_BINS=(etcd etcdctl)

have_all() {  # dir bin...
  local dir=$1; shift
  for b in "$@"; do [ -x "$dir/bin/$b" ] || return 1; done
}
cached() { have_all "$K8S_DIR" "${K8S_BINS[@]}" && have_all "$ETCD_DIR" "${ETCD_BINS[@]}"; }
report() { echo "k8s:  $K8S_DIR/bin"; echo "etcd: $ETCD_DIR/bin"; }

if cached; then report; exit 0; fi
if [ "${1:-}" = --check ]; then echo "not cached: $K8S_DIR/bin, $ETCD_DIR/bin" >&2; exit 3; fi

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if ! [ -x "$GO" ]; then echo "no Go toolchain (looked for go on PATH and /usr/local/go/bin/go)" >&2; exit 3; fi
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"
if ! "$GO" list -m -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" >/dev/null 2>&1; then
  echo "the Go module proxy ($("$GO" env GOPROXY)) does not serve k8s.io/kubernetes@v$KUBERNETES_VERSION" >&2
  exit 3
fi

mkdir -p "$CACHE/k8s" "$CACHE/etcd"
# One builder at a time (other worktrees share the cache); the loser waits, then finds it cached.
exec 9>"$CACHE/.build.lock"
flock 9
if cached; then report; exit 0; fi

NICE=(nice -n "${MEMKUBE_BUILD_NICE:-10}")
now() { date +%s; }

build_k8s() {
  local t0 tmp mod minor ld
  t0=$(now)
  tmp=$(mktemp -d "$CACHE/k8s/.tmp-v$KUBERNETES_VERSION.XXXXXX")
  mkdir -p "$tmp/src" "$tmp/out/bin"
  cd "$tmp/src"
  "$GO" mod init local/memkube-k8s-binaries >/dev/null 2>&1
  "$GO" mod edit -go=1.26.0
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging
  # paths, which a consumer ignores: replace each with its published v0.<minor>.<patch>.
  mod=$("$GO" mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" \
        | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  minor=${KUBERNETES_VERSION#1.}
  for m in $(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/.*|\1|p' "$mod"); do
    "$GO" mod edit "-replace=$m=$m@v0.$minor"
  done
  local pkgs=()
  for b in "${K8S_BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  local at=()
  for p in "${pkgs[@]}"; do at+=("$p@v$KUBERNETES_VERSION"); done
  "$GO" get -tool "${at[@]}"
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=v$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=${minor%%.*}"
    # The module proxy serves no commit id, so gitCommit stays empty.
    ld+=" -X $p.gitTreeState=clean"
    ld+=" -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  # One go build for all binaries: they share every compiled package.
  "${NICE[@]}" "$GO" build -trimpath -ldflags "$ld" -o "$tmp/out/bin/" "${pkgs[@]}"
  printf '{"version": "v%s", "go": "%s", "build_seconds": %d, "built": "%s"}\n' \
    "$KUBERNETES_VERSION" "$("$GO" env GOVERSION)" $(( $(now) - t0 )) "$(date -u +%FT%TZ)" \
    > "$tmp/out/build-info.json"
  rm -rf "$K8S_DIR"
  mv -T "$tmp/out" "$K8S_DIR"
  rm -rf "$tmp"
}

build_etcd() {
  local t0 tmp
  t0=$(now)
  tmp=$(mktemp -d "$CACHE/etcd/.tmp-v$ETCD_VERSION.XXXXXX")
  mkdir -p "$tmp/src" "$tmp/out/bin"
  cd "$tmp/src"
  # etcd's server module has relative replaces, so `go install ...@v` fails; a wrapper module
  # that requires it as a tool resolves everything from the proxy.
  "$GO" mod init local/memkube-etcd-binaries >/dev/null 2>&1
  "$GO" mod edit -go=1.26.0
  "$GO" get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@v$ETCD_VERSION"
  local ld="-s -w"
  "${NICE[@]}" "$GO" build -trimpath -ldflags "$ld" -o "$tmp/out/bin/" \
    go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3
  # A path ending in /v3 names its binary after the element before it: server, etcdctl.
  mv "$tmp/out/bin/server" "$tmp/out/bin/etcd"
  printf '{"version": "v%s", "go": "%s", "build_seconds": %d, "built": "%s"}\n' \
    "$ETCD_VERSION" "$("$GO" env GOVERSION)" $(( $(now) - t0 )) "$(date -u +%FT%TZ)" \
    > "$tmp/out/build-info.json"
  rm -rf "$ETCD_DIR"
  mv -T "$tmp/out" "$ETCD_DIR"
  rm -rf "$tmp"
}

if ! have_all "$ETCD_DIR" "${ETCD_BINS[@]}"; then build_etcd; fi
if ! have_all "$K8S_DIR" "${K8S_BINS[@]}"; then build_k8s; fi
report
