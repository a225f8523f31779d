#!/usr/bin/env bash
# The kind node image, built on this machine from local parts only (no registry):
#   1. a base image: Debian (debootstrap) with systemd, runc and the CNI plugins from Debian,
#      containerd and crictl from the Go module proxy (build-node-tools.sh), and this
#      directory's entrypoint, containerd configuration and systemd units;
#   2. the images kind's node preloads, each a static binary in a minimal image (tools/pause,
#      tools/podnet, CoreDNS from the proxy, etcd and the control-plane binaries built by
#      hack/k8s-binaries.sh); kube-proxy gets Debian's iptables and conntrack beside it;
#   3. the node image: the base with kubeadm, kubelet and kubectl in /usr/bin, /kind/version,
#      the pod network manifest, and the images imported into the node's containerd.
# Everything is cached by version under $CACHE; a second run only re-tags.
# Prints the node image's name on stdout.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
# shellcheck disable=SC1090
source "${MEMKUBE_K8S_VERSIONS:-$ROOT/hack/versions.env}"
source "$ROOT/hack/kind/versions.env"
K8S="v$KUBERNETES_VERSION"
ETCD="v$ETCD_VERSION"
HERE="$ROOT/hack/kind"
KEY="$K8S-ctrd$CONTAINERD_VERSION-r$LOCAL_IMAGES_REVISION"
NODE_IMAGE=${KIND_NODE_IMAGE:-localhost/memkube/kind-node:$KEY}
BASE_IMAGE="localhost/memkube/kind-base:ctrd$CONTAINERD_VERSION-r$LOCAL_IMAGES_REVISION"
IMAGES_DIR="$CACHE/kind-images/$KEY"

if image_exists "$NODE_IMAGE"; then
  echo "$NODE_IMAGE"; exit 0
fi
need_root "building the kind node image"

k8s_bin="$CACHE/k8s/$K8S/bin"
etcd_bin="$CACHE/etcd/$ETCD/bin"
if [ ! -x "$k8s_bin/kubelet" ] || [ ! -x "$etcd_bin/etcd" ]; then
  log "building Kubernetes $K8S and etcd $ETCD (hack/k8s-binaries.sh)"
  "$ROOT/hack/k8s-binaries.sh" >&2
fi
"$HERE/build-node-tools.sh"
ctrd_bin="$CACHE/containerd/$CONTAINERD_VERSION/bin"
crictl_bin="$CACHE/crictl/$CRICTL_VERSION/bin"

work="$CACHE/tmp/kind-$KEY"
mkdir -p "$work" "$IMAGES_DIR"

# Our own small programs (hack/kind/tools), keyed by their sources.
tools="$CACHE/kind-tools/$(cat "$HERE"/tools/go.mod "$HERE"/tools/*/*.go | sha256sum | cut -c1-16)/bin"
if [ ! -x "$tools/runc-in-bounds" ]; then
  log "building hack/kind/tools"
  (cd "$HERE/tools" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags '-s -w' -o "$tools.tmp/" \
    ./pause ./podnet ./runc-in-bounds)
  rm -rf "$tools" && mv "$tools.tmp" "$tools"
fi

# --- 1. base image -------------------------------------------------------------------------
if ! image_exists "$BASE_IMAGE"; then
  packages=systemd,systemd-sysv,dbus,iptables,iproute2,ethtool,socat,conntrack,ebtables,kmod,ca-certificates,procps,util-linux,mount,runc,containernetworking-plugins,libseccomp2,pigz
  tarball="$CACHE/kind-base/$DEBIAN_SUITE-$(echo "$packages" | sha256sum | cut -c1-12)/rootfs.tar"
  if [ ! -f "$tarball" ]; then
    rootfs="$work/base-rootfs"
    debian_rootfs "$rootfs" "$DEBIAN_SUITE" "$packages"
    # What systemd in a container must not try: consoles, udev-driven units, timers.
    for unit in getty.target console-getty.service systemd-udevd.service \
        systemd-udev-trigger.service systemd-modules-load.service systemd-firstboot.service \
        apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
      ln -sfn /dev/null "$rootfs/etc/systemd/system/$unit"
    done
    mkdir -p "$rootfs/tmp/.keep"
    mkdir -p "$(dirname "$tarball")"
    tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  ctx="$work/base-ctx"
  rm -rf "$ctx" && mkdir -p "$ctx/rootfs"
  tar -C "$ctx/rootfs" -xf "$tarball"
  r="$ctx/rootfs"
  install -m 0755 "$ctrd_bin/containerd" "$ctrd_bin/containerd-shim-runc-v2" "$ctrd_bin/ctr" \
    "$crictl_bin/crictl" "$HERE/node/entrypoint" "$tools/runc-in-bounds" "$r/usr/local/bin/"
  install -D -m 0644 "$HERE/node/containerd.toml" "$r/etc/containerd/config.toml"
  install -m 0644 "$HERE/node/crictl.yaml" "$r/etc/crictl.yaml"
  install -m 0644 "$HERE/node/containerd.service" "$HERE/node/kubelet.service" \
    "$HERE/node/kubelet.slice" "$r/etc/systemd/system/"
  mkdir -p "$r/etc/systemd/system/multi-user.target.wants" "$r/etc/cni/net.d" "$r/kind" \
    "$r/opt/cni" "$r/var/lib/kubelet"
  ln -sfn /usr/lib/cni "$r/opt/cni/bin"
  for unit in containerd kubelet; do
    ln -sfn "/etc/systemd/system/$unit.service" \
      "$r/etc/systemd/system/multi-user.target.wants/$unit.service"
  done
  printf 'net.ipv4.ip_forward = 1\n' > "$r/etc/sysctl.d/90-kind-node.conf"
  log "importing the base image $BASE_IMAGE"
  tar -C "$r" --numeric-owner -c . | "$DOCKER" import \
    --change 'ENV container=docker' \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
    --message "memkube local kind base: Debian $DEBIAN_SUITE, containerd $CONTAINERD_VERSION" \
    - "$BASE_IMAGE" >/dev/null
  rm -rf "$ctx"
fi

# --- 2. the preloaded images -------------------------------------------------------------------
# minimal_image NAME DIR ENTRYPOINT_JSON: DIR's files as an image (with /etc/passwd for
# runAsNonRoot checks and a /tmp), saved to $IMAGES_DIR.
minimal_image() {
  local name=$1 dir=$2 entrypoint=$3 file
  file="$IMAGES_DIR/$(echo "$name" | tr '/:' '__').tar"
  [ -f "$file" ] && return 0
  mkdir -p "$dir/etc" "$dir/tmp" && chmod 1777 "$dir/tmp"
  [ -f "$dir/etc/passwd" ] || printf 'root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' > "$dir/etc/passwd"
  [ -f "$dir/etc/group" ] || printf 'root:x:0:\nnogroup:x:65534:\n' > "$dir/etc/group"
  log "image $name"
  tar -C "$dir" --numeric-owner -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENTRYPOINT $entrypoint" --message "memkube local kind image $name" \
    - "$name" >/dev/null
  "$DOCKER" save -o "$file.tmp" "$name" && mv "$file.tmp" "$file"
}

coredns_bin="$CACHE/coredns/$COREDNS_VERSION/bin"
if [ ! -x "$coredns_bin/coredns" ]; then
  log "building CoreDNS $COREDNS_VERSION"
  CGO_ENABLED=0 GOBIN="$coredns_bin.tmp" "$GO" install -trimpath -ldflags '-s -w' \
    "github.com/coredns/coredns@$COREDNS_VERSION"
  rm -rf "$coredns_bin" && mv "$coredns_bin.tmp" "$coredns_bin"
fi

stage="$work/stage"
rm -rf "$stage"
one() { rm -rf "$stage" && mkdir -p "$stage/usr/local/bin"; }

one; install -m 0755 "$tools/pause" "$stage/pause"
minimal_image localhost/memkube/pause:1 "$stage" '["/pause"]'
one; install -m 0755 "$tools/podnet" "$stage/usr/local/bin/podnet"
mkdir -p "$stage/bin" && install -m 0755 /bin/busybox "$stage/bin/busybox" && ln -s busybox "$stage/bin/ip"
minimal_image localhost/memkube/podnet:1 "$stage" '["/usr/local/bin/podnet"]'
one; install -m 0755 "$coredns_bin/coredns" "$stage/coredns"
minimal_image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "$stage" '["/coredns"]'
one; install -m 0755 "$etcd_bin/etcd" "$etcd_bin/etcdctl" "$stage/usr/local/bin/"
minimal_image "registry.k8s.io/etcd:$ETCD_VERSION" "$stage" '["/usr/local/bin/etcd"]'
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  one; install -m 0755 "$k8s_bin/$b" "$stage/usr/local/bin/"
  minimal_image "registry.k8s.io/$b:$K8S" "$stage" "[\"/usr/local/bin/$b\"]"
done
# kube-proxy programs the node's iptables: Debian's iptables (nft) and conntrack beside it.
if [ ! -f "$IMAGES_DIR/registry.k8s.io_kube-proxy_$K8S.tar" ]; then
  proxyfs="$work/proxy-rootfs"
  debian_rootfs "$proxyfs" "$DEBIAN_SUITE" iptables,conntrack,kmod
  install -m 0755 "$k8s_bin/kube-proxy" "$proxyfs/usr/local/bin/"
  minimal_image "registry.k8s.io/kube-proxy:$K8S" "$proxyfs" '["/usr/local/bin/kube-proxy"]'
  rm -rf "$proxyfs"
fi

# --- 3. the node image -------------------------------------------------------------------------
log "assembling $NODE_IMAGE"
cid=$("$DOCKER" run -d --entrypoint=sleep --security-opt seccomp=unconfined "$BASE_IMAGE" infinity)
trap '"$DOCKER" rm -f -v "$cid" >/dev/null 2>&1 || true' EXIT
for b in kubeadm kubelet kubectl; do
  "$DOCKER" cp "$k8s_bin/$b" "$cid:/usr/bin/$b"
done
"$DOCKER" exec "$cid" mkdir -p /kind/manifests
"$DOCKER" cp "$HERE/node/default-cni.yaml" "$cid:/kind/manifests/default-cni.yaml"
"$DOCKER" exec "$cid" sh -c "echo $K8S > /kind/version"
"$DOCKER" exec "$cid" sh -c 'nohup containerd >/tmp/containerd.log 2>&1 &
  for i in $(seq 1 30); do [ -S /run/containerd/containerd.sock ] && break; sleep 1; done; ctr version >/dev/null'
for tarfile in "$IMAGES_DIR"/*.tar; do
  log "preloading $(basename "$tarfile")"
  "$DOCKER" exec -i "$cid" ctr --namespace=k8s.io images import --all-platforms --digests --no-unpack \
    --label=io.cri-containerd.pinned=pinned - < "$tarfile" >/dev/null
done
"$DOCKER" exec "$cid" sh -c 'ctr --namespace=k8s.io images list -q' >&2
"$DOCKER" exec "$cid" sh -c 'pkill containerd; for i in $(seq 1 30); do pgrep containerd >/dev/null || exit 0; sleep 1; done'
"$DOCKER" commit \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change 'CMD []' \
  "$cid" "$NODE_IMAGE" >/dev/null
echo "$NODE_IMAGE"
