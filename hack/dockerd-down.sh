#!/usr/bin/env bash
# Stop the dockerd that hack/dockerd-up.sh started (its pid file), and only that one.
set -euo pipefail
CACHE=${MEMKUBE_CACHE:-$HOME/.cache/memkube}
pidfile="$CACHE/dockerd.pid"
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null && grep -q dockerd "/proc/$pid/cmdline" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
fi
rm -f "$pidfile"
