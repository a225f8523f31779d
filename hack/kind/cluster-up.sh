#!/usr/bin/env bash
# Create the end-to-end kind cluster on this machine: hack/kind/cluster.yaml with the node
# image built by node-image.sh, plus what that image needs:
#   - kubeadm is told the etcd image's real tag (the one built here, not kubeadm's default);
#   - CoreDNS answers for the cluster only: the node image keeps Docker's resolver
#     (127.0.0.11, reachable from the nodes alone), which CoreDNS would otherwise be told to
#     forward to and, inside its pod, would find itself there and stop on its loop check. The
#     cluster's names need no upstream, and nothing is forwarded off the machine.
# Usage: cluster-up.sh NAME KUBECONFIG. Needs kind, kubectl on PATH (tools.sh) and dockerd.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
# shellcheck disable=SC1090
source "${MEMKUBE_K8S_VERSIONS:-$ROOT/hack/versions.env}"
source "$ROOT/hack/kind/versions.env"
name=$1 kubeconfig=$2
node_image=$("$ROOT/hack/kind/node-image.sh")

config=$(mktemp --suffix=.yaml)
trap 'rm -f "$config"' EXIT
cat "$ROOT/hack/kind/cluster.yaml" - > "$config" <<YAML
  - |
    kind: ClusterConfiguration
    etcd:
      local:
        imageTag: "$ETCD_VERSION"
YAML

log "kind create cluster --name $name --image $node_image"
kind create cluster --name "$name" --image "$node_image" --config "$config" \
  --kubeconfig "$kubeconfig" --wait 300s >&2

log "CoreDNS: cluster names only"
corefile=$(kubectl --kubeconfig "$kubeconfig" -n kube-system get configmap coredns \
  -o jsonpath='{.data.Corefile}')
# Drop the forward block and the loop check (which only guards forwarding).
corefile=$(printf '%s\n' "$corefile" | awk '
  /^[[:space:]]*forward / { skip = ($0 ~ /\{[[:space:]]*$/); next }
  skip && /^[[:space:]]*\}/ { skip = 0; next }
  skip { next }
  /^[[:space:]]*loop[[:space:]]*$/ { next }
  { print }')
kubectl --kubeconfig "$kubeconfig" -n kube-system create configmap coredns \
  --from-literal=Corefile="$corefile" --dry-run=client -o yaml \
  | kubectl --kubeconfig "$kubeconfig" apply -f - >&2
kubectl --kubeconfig "$kubeconfig" -n kube-system rollout restart deployment/coredns >&2
kubectl --kubeconfig "$kubeconfig" -n kube-system rollout status deployment/coredns --timeout=300s >&2
kubectl --kubeconfig "$kubeconfig" get nodes -o wide >&2
