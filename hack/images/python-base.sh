#!/usr/bin/env bash
# A local stand-in for `python:3.12-slim`, the Dockerfile's base, where no registry is
# reachable: Debian's root filesystem (debootstrap, minbase, the runtime libraries the
# official slim image keeps) with CPython 3.12 under /usr/local, as the official image has.
#
# The CPython is this machine's pyenv build of 3.12.x (compiled from source on the same
# Debian release, --enable-shared), relocated: its files copied to /usr/local, the run path
# and the recorded build prefix rewritten, pip reinstalled from its own bundled wheel
# (ensurepip, offline). The test suite and tkinter are left out, as in the official image.
# Tagged python:3.12-slim (and python:<full version>-slim-bookworm-local); the root
# filesystem is cached as a tarball keyed by Python version, Debian suite and revision.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

REVISION=1
SUITE=${DEBIAN_SUITE:-bookworm}
TAG=${PYTHON_IMAGE:-python:3.12-slim}
PYTHON=${PYTHON_312:-$(PYENV_VERSION=${PYENV_VERSION:-3.12.1} command -v python3.12 || true)}
[ -n "$PYTHON" ] || { log "no python3.12 on this machine to relocate"; exit 1; }
PREFIX=$("$PYTHON" -c 'import sys; print(sys.base_prefix)')
VERSION=$("$PYTHON" -c 'import platform; print(platform.python_version())')
[ "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("Py_ENABLE_SHARED"))')" = 1 ] \
  || { log "$PYTHON is not a shared-library build"; exit 1; }
KEY="$VERSION-$SUITE-r$REVISION"
TARBALL="$CACHE/python-base/$KEY/rootfs.tar"
LOCAL_TAG="python:$VERSION-slim-$SUITE-local"

if image_exists "$LOCAL_TAG" && [ -f "$TARBALL" ]; then
  "$DOCKER" tag "$LOCAL_TAG" "$TAG"
  log "$TAG = $LOCAL_TAG (cached)"
  exit 0
fi

if [ ! -f "$TARBALL" ]; then
  need_root "building the Python base image"
  apt_install patchelf
  work="$CACHE/tmp/python-base-$KEY"
  rootfs="$work/rootfs"
  mkdir -p "$work"
  # The official slim image's runtime packages: certificates, netbase, tzdata and the
  # libraries CPython's extension modules link against.
  debian_rootfs "$rootfs" "$SUITE" \
    ca-certificates,netbase,tzdata,libssl3,libffi8,libsqlite3-0,libncursesw6,libreadline8,libuuid1,libbz2-1.0,liblzma5,zlib1g,libnsl2,libgdbm6,libexpat1,libtirpc3
  log "relocating CPython $VERSION from $PREFIX to /usr/local"
  # bin/, include/ and lib/ (without site-packages, the test suite and tkinter).
  tar -C "$PREFIX" -c \
    --exclude='lib/python3.12/site-packages' --exclude='lib/python3.12/test' \
    --exclude='lib/python3.12/idlelib' --exclude='lib/python3.12/tkinter' \
    --exclude='lib/python3.12/turtledemo' --exclude='lib/python3.12/lib-dynload/_tkinter*' \
    --exclude='bin/pip*' --exclude='bin/idle*' --exclude='bin/2to3*' \
    --exclude='__pycache__' \
    bin include lib | tar -C "$rootfs/usr/local" -x
  mkdir -p "$rootfs/usr/local/lib/python3.12/site-packages"
  # The interpreter found libpython through a run path into the old prefix: drop it, the
  # library is in /usr/local/lib, which the dynamic linker searches (ldconfig below).
  patchelf --remove-rpath "$rootfs/usr/local/bin/python3.12"
  for so in "$rootfs"/usr/local/lib/libpython3*.so*; do
    [ -L "$so" ] || patchelf --remove-rpath "$so"
  done
  # The recorded build configuration names the old prefix: say /usr/local instead.
  grep -rlF "$PREFIX" "$rootfs/usr/local/lib/python3.12" "$rootfs/usr/local/lib/pkgconfig" \
    "$rootfs/usr/local/bin" 2>/dev/null | while read -r f; do
      if grep -Iq . "$f"; then sed -i "s|$PREFIX|/usr/local|g" "$f"; fi
    done
  chroot "$rootfs" /sbin/ldconfig
  # pip as the official image has it, from CPython's own bundled wheel (no network).
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin \
    /usr/local/bin/python3.12 -m ensurepip --default-pip >/dev/null
  for pair in python:python3 python3:python3.12 python-config:python3-config \
      pip:pip3 pydoc:pydoc3; do
    ln -sfn "${pair#*:}" "$rootfs/usr/local/bin/${pair%%:*}"
  done
  chroot "$rootfs" /usr/local/bin/python -c 'import ssl, sqlite3, ctypes, zlib, bz2, lzma, uuid, readline, decimal'
  mkdir -p "$(dirname "$TARBALL")"
  tar -C "$rootfs" --numeric-owner -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$work"
fi

log "importing $TARBALL as $LOCAL_TAG"
"$DOCKER" import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "ENV PYTHON_VERSION=$VERSION" \
  --change 'CMD ["python3"]' \
  --message "memkube local stand-in for $TAG: Debian $SUITE + CPython $VERSION (rev $REVISION)" \
  "$TARBALL" "$LOCAL_TAG" >/dev/null
"$DOCKER" tag "$LOCAL_TAG" "$TAG"
log "$TAG = $LOCAL_TAG"
