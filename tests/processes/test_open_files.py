"""A scheduler process with a small open-file limit under a flood of silent connections: it
keeps answering /health and real clients, and its log stays small (issue 14, finding 2)."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import rawhttp
from memkube import Client

TOKEN = "open-files-test-token-0123456789"
LIMIT = 256  # soft = hard: raising the soft limit cannot help
PRLIMIT = shutil.which("prlimit") or "/usr/bin/prlimit"  # util-linux, on every Debian


def test_a_connection_flood_neither_starves_nor_floods_the_log(tmp_path: Path) -> None:
    env = {**os.environ, "MEMKUBE_TOKEN": TOKEN}
    log_path = tmp_path / "scheduler.log"
    with open(log_path, "w") as log_file:
        sched = subprocess.Popen([PRLIMIT, f"--nofile={LIMIT}:{LIMIT}",
                                  sys.executable, "-m", "memkube", "scheduler", "--host",
                                  "127.0.0.1", "--port", "0", "--log-level", "INFO"],
                                 stdout=subprocess.PIPE, stderr=log_file, text=True, env=env)
    try:
        assert sched.stdout is not None
        address = sched.stdout.readline().split()[-1]
        host, port = address.split("//")[1].split(":")
        http = f"http://{host}:{port}"
        flood: list[socket.socket] = []
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
        for _ in range(2 * LIMIT):  # twice what the scheduler may hold open
            s = socket.create_connection((host, int(port)), timeout=5)
            flood.append(s)
        time.sleep(1.0)
        started = time.monotonic()
        assert rawhttp.blocking("GET", http + "/health")[0] == 200
        with Client(address, token=TOKEN, timeout=30) as client:
            assert "workers" in client.scheduler_info()
        assert rawhttp.blocking("GET", http + "/api/v1/pool",
                                {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        print(f"\n/health + client round trip under a {len(flood)}-connection flood: "
              f"{time.monotonic() - started:.3f} s")
        for s in flood:
            s.close()
    finally:
        sched.send_signal(signal.SIGTERM)
        sched.wait(20)
    size = os.path.getsize(log_path)
    assert size < 200_000, f"scheduler log grew to {size} bytes"
