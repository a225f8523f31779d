#!/usr/bin/env bash
# Start Debian's dockerd (package docker.io) if no Docker engine answers, and wait for it.
# Installs docker.io first when root on apt and it is missing. Prints nothing when an engine
# already runs. The pid of a dockerd started here goes to $MEMKUBE_CACHE/dockerd.pid, so
# hack/dockerd-down.sh stops exactly that one and nothing else.
set -euo pipefail
CACHE=${MEMKUBE_CACHE:-$HOME/.cache/memkube}
DOCKER=${DOCKER:-/usr/bin/docker}
mkdir -p "$CACHE"

if ! command -v dockerd >/dev/null 2>&1 || [ ! -x "$DOCKER" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's docker.io" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  else
    echo "dockerd missing and not root with apt: install Docker yourself" >&2
    exit 1
  fi
fi

if "$DOCKER" info >/dev/null 2>&1; then
  exit 0
fi

log="$CACHE/dockerd.log"
echo "starting dockerd (log: $log)" >&2
# setsid: dockerd outlives this script and its shell's job control. The default runtime is
# runc behind hack/kind/tools/runc-in-bounds, which keeps privileged containers (kind's nodes)
# within this machine's capability bounding set.
here=$(cd "$(dirname "$0")" && pwd)
src="$here/kind/tools/runc-in-bounds/main.go"
wrapper="$CACHE/runc-in-bounds/$(sha256sum "$src" | cut -c1-16)/runc-in-bounds"
if [ ! -x "$wrapper" ]; then
  (cd "$here/kind/tools" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
    go build -trimpath -o "$wrapper" ./runc-in-bounds)
fi
setsid dockerd --storage-driver=overlay2 \
  --add-runtime "in-bounds=$wrapper" --default-runtime in-bounds \
  >"$log" 2>&1 < /dev/null &
echo $! > "$CACHE/dockerd.pid"
for _ in $(seq 1 60); do
  if "$DOCKER" info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "dockerd did not answer within 60 s; its log:" >&2
tail -n 40 "$log" >&2
exit 1
