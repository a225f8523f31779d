#!/usr/bin/env bash
# Build the project's image from the Dockerfile, unchanged in what it produces, on a machine
# that reaches PyPI but no container registry:
#   - the base (python:3.12-slim) comes from hack/images/python-base.sh when not present;
#   - the dependencies' wheels are downloaded here first (pip, on this machine) into a
#     wheelhouse cached by the hash of pyproject.toml, served read-only on 127.0.0.1 for the
#     duration of the build, which runs on the host's network namespace so that loopback
#     address is this machine's; pip inside the build uses only that (PIP_NO_INDEX).
#   - Debian's Docker CLI (20.10, BuildKit built in) runs the build: DOCKER_BUILDKIT=1.
# Usage: hack/images/memkube.sh [TAG]   (default memkube:dev). Prints the tag on stdout.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
TAG=${1:-memkube:dev}

if ! image_exists python:3.12-slim; then
  "$ROOT/hack/images/python-base.sh"
fi

PY=${PYTHON_312:-$(PYENV_VERSION=${PYENV_VERSION:-3.12.1} command -v python3.12)}
key=$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)
wheels="$CACHE/wheelhouse/$key"
if [ ! -f "$wheels/.complete" ]; then
  log "wheelhouse for pyproject.toml $key"
  rm -rf "$wheels" && mkdir -p "$wheels"
  # The build backend (pip wheel builds memkube in an isolated environment) and every
  # runtime dependency of memkube[operator], for this Python and platform.
  "$PY" -m pip download -q --only-binary=:all: -d "$wheels" "setuptools>=69" wheel
  "$PY" -m pip wheel -q -w "$wheels" "$ROOT[operator]"
  rm -f "$wheels"/memkube-*.whl
  touch "$wheels/.complete"
fi

portfile=$(mktemp)
"$PY" - "$wheels" "$portfile" <<'PY' &
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
handler.log_message = lambda *a: None
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
with open(sys.argv[2], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
PY
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$portfile"' EXIT
for _ in $(seq 1 50); do [ -s "$portfile" ] && break; sleep 0.1; done
port=$(cat "$portfile")

log "docker build -t $TAG (BuildKit, wheels from 127.0.0.1:$port)"
DOCKER_BUILDKIT=1 "$DOCKER" build --network=host \
  --build-arg PIP_FIND_LINKS="http://127.0.0.1:$port/" --build-arg PIP_NO_INDEX=1 \
  -t "$TAG" "$ROOT" >&2
echo "$TAG"
