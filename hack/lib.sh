# Shared by the image and kind scripts: cache location, the Docker CLI to use, helpers.
# Source it; it sets CACHE, DOCKER, ROOT and defines log/need_root/debian_rootfs.
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MEMKUBE_CACHE:-$HOME/.cache/memkube}
# Debian's docker.io CLI (20.10) has BuildKit built in; a newer static CLI without the buildx
# plugin refuses BuildKit builds ("BuildKit is enabled but the buildx component is missing").
if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
export DOCKER
GO=${GO:-go}
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    log "$1 needs root (debootstrap, chroot)"; exit 1
  fi
}

apt_install() {  # apt_install PKG...: install Debian packages on this machine if missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  need_root "installing ${missing[*]}"
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

debian_mirror() {  # the mirror apt on this machine already uses
  local uri
  uri=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  [ -n "$uri" ] || uri=$(awk '$1=="deb" && $3 ~ /^(bookworm|trixie)$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  echo "${uri:-http://deb.debian.org/debian}"
}

debian_rootfs() {  # debian_rootfs DIR SUITE PKGS(comma-separated): a minbase root filesystem
  local dir=$1 suite=$2 include=$3
  apt_install debootstrap
  rm -rf "$dir"
  mkdir -p "$CACHE/debs"
  log "debootstrap $suite into $dir (+ $include)"
  debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$include" \
    "$suite" "$dir" "$(debian_mirror)" >"$dir.debootstrap.log" 2>&1 \
    || { tail -n 30 "$dir.debootstrap.log" >&2; return 1; }
  # What an image does not need: package lists, caches, docs (as Debian's slim images do).
  chroot "$dir" apt-get clean
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/usr/share/doc/* \
    "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/var/log/*.log
}

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
