"""A bounded soak: a real local pool (``memkube local``) on 127.0.0.1 under silent, trickling,
slow-body, large-body and churning connections from another process, while a normal client
works. The pool keeps serving, loses nothing and stays small; the round trips under attack
and idle are printed (run with ``-s``), never asserted beyond generous liveness bounds.
"""

from __future__ import annotations

import json
import operator
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import procs
import psutil
import pytest
import rawhttp
from memkube import Client

ATTACKS = Path(__file__).resolve().parents[1] / "support" / "attacks.py"
DURATION = 20.0  # seconds of attack; the whole test takes about twice that
MiB = 2**20
pytestmark = pytest.mark.slow


def _round_trips(client: Client, n: int, start: int = 0) -> list[float]:
    out = []
    for i in range(start, start + n):
        t = time.perf_counter()
        assert client.submit(operator.add, i, 1, pure=False).result(timeout=30) == i + 1
        out.append(time.perf_counter() - t)
    return out


def _health(url: str) -> float:
    t = time.perf_counter()
    assert rawhttp.blocking("GET", url + "/health", timeout=30)[0] == 200  # a new connection
    return time.perf_counter() - t


def _summary(samples: list[float]) -> str:
    ms = sorted(x * 1000 for x in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return (f"n={len(ms):4d} median={statistics.median(ms):7.1f} ms  p95={p95:7.1f} ms  "
            f"max={ms[-1]:7.1f} ms")


def test_the_pool_keeps_serving_under_attack(tmp_path: Path) -> None:
    log_path = tmp_path / "pool.log"
    with open(log_path, "w") as log_file:
        pool = subprocess.Popen([sys.executable, "-m", "memkube", "local", "--workers", "2",
                                 "--port", "0", "--memory-limit", "512MiB",
                                 "--log-level", "WARNING"],
                                stdout=subprocess.PIPE, stderr=log_file, text=True)
    attacker: subprocess.Popen[str] | None = None
    try:
        assert pool.stdout is not None
        lines = [pool.stdout.readline() for _ in range(3)]
        address, token = lines[0].split()[-1], lines[2].split()[-1]
        http = address.replace("tcp://", "http://")
        with Client(address, token=token) as client:
            # data that must survive: scattered values (cannot be recomputed) and results
            blobs = [os.urandom(MiB) for _ in range(8)]
            scattered = client.scatter(blobs)
            persisted = client.map(operator.add, range(50), [1] * 50)
            assert client.gather(persisted) == list(range(1, 51))
            workers = client.scheduler_info()["workers"]
            worker_http = [w["address"].replace("tcp://", "http://")
                           for w in (workers.values() if isinstance(workers, dict) else workers)]
            assert len(worker_http) == 2
            worker_pids = {p.pid for p in psutil.Process(pool.pid).children()}
            rss_idle = psutil.Process(pool.pid).memory_info().rss

            idle_rt = _round_trips(client, 100)
            idle_health = [_health(http) for _ in range(30)]

            attacker = subprocess.Popen(
                [sys.executable, str(ATTACKS), "--duration", str(DURATION), http,
                 *worker_http], stdout=subprocess.PIPE, text=True)
            assert attacker.stdout is not None
            assert attacker.stdout.readline().strip() == "attacking"
            rss_peak = [rss_idle]

            def sample_rss() -> None:
                while attacker is not None and attacker.poll() is None:
                    rss_peak.append(psutil.Process(pool.pid).memory_info().rss)
                    time.sleep(0.2)

            sampler = threading.Thread(target=sample_rss, daemon=True)
            sampler.start()
            time.sleep(3.0)  # let the attack build up
            attack_rt: list[float] = []
            attack_health: list[float] = []
            connects: list[float] = []
            i = 1000
            while attacker.poll() is None:
                attack_rt += _round_trips(client, 5, i)
                i += 5
                attack_health.append(_health(http))
                if len(attack_rt) % 50 == 0:
                    t = time.perf_counter()
                    with Client(address, token=token, timeout=30) as other:
                        assert other.submit(operator.add, 1, 1).result(timeout=30) == 2
                    connects.append(time.perf_counter() - t)
            counts = json.loads(attacker.stdout.readline())
            sampler.join(5)

            # nothing lost, nobody restarted, still serving
            assert client.gather(scattered) == blobs
            assert client.gather(persisted) == list(range(1, 51))
            assert len(client.scheduler_info()["workers"]) == 2
            assert {p.pid for p in psutil.Process(pool.pid).children()} == worker_pids
            assert _round_trips(client, 10, 10**6)

        growth = (max(rss_peak) - rss_idle) / MiB
        print(f"\nsoak: {DURATION:.0f} s of attack on a 2-worker local pool")
        print(f"  attacker: {json.dumps(counts, sort_keys=True)}")
        print(f"  submit().result() idle:         {_summary(idle_rt)}")
        print(f"  submit().result() under attack: {_summary(attack_rt)}")
        print(f"  GET /health (new conn) idle:    {_summary(idle_health)}")
        print(f"  GET /health under attack:       {_summary(attack_health)}")
        if connects:
            print(f"  new Client + 1 task under attack: {_summary(connects)}")
        print(f"  pool process RSS: idle {rss_idle / MiB:.0f} MiB, peak +{growth:.0f} MiB")
        assert attack_rt and attack_health
        assert growth < 300, f"the pool process grew by {growth:.0f} MiB under attack"
        # the attack really happened: large bodies were sent and refused, slow ones closed
        assert counts.get("silent", 0) >= 600
        assert counts.get("large-body", 0) >= 2
    finally:
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
            attacker.wait()
        procs.stop(pool, signal.SIGINT, timeout=30)
    size = log_path.stat().st_size
    assert size < 1_000_000, f"the pool logged {size} bytes under attack"
