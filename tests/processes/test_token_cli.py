"""The worker command and tokens: none refuses to start, the opt-out is loud, the metrics
token reads /metrics and nothing else (real processes on loopback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import procs
import rawhttp

TOKEN = "cli-test-token-0123456789abcdef"
METRICS = "cli-metrics-token-fedcba9876543210"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MEMKUBE_TOKEN", "MEMKUBE_METRICS_TOKEN", "MEMKUBE_INSECURE_NO_TOKEN")}
    return {**env, **extra}


@contextmanager
def _process(args: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``python -m memkube ARGS``; yield it and its first stdout line (the banner)."""
    proc = subprocess.Popen([sys.executable, "-m", "memkube", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        yield proc, proc.stdout.readline()
    finally:
        procs.stop(proc)


def test_worker_without_a_token_exits_with_a_clear_error() -> None:
    out = subprocess.run([sys.executable, "-m", "memkube", "worker", "tcp://127.0.0.1:1",
                          "--death-timeout", "1"], env=_env(), capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 2, out.stderr
    assert "token" in out.stderr and "--insecure-no-token" in out.stderr


def test_insecure_opt_out_runs_and_says_so_loudly() -> None:
    scheduler_args = ["scheduler", "--host", "127.0.0.1", "--port", "0", "--insecure-no-token",
                      "--log-level", "WARNING"]
    with _process(scheduler_args, _env()) as (sched, banner):
        address = banner.split()[-1]
        assert address.startswith("tcp://127.0.0.1:"), banner
        worker_args = ["worker", address, "--insecure-no-token", "--memory-limit", "256MiB",
                       "--log-level", "WARNING"]
        with _process(worker_args, _env()) as (worker, wbanner):
            assert "memkube worker" in wbanner
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=20)
        assert "NO TOKEN" in err
        sched.send_signal(signal.SIGTERM)
        _, err = sched.communicate(timeout=20)
    assert "NO TOKEN" in err


def test_worker_serves_metrics_to_the_metrics_token_only() -> None:
    env = _env(MEMKUBE_TOKEN=TOKEN, MEMKUBE_METRICS_TOKEN=METRICS)
    scheduler_args = ["scheduler", "--host", "127.0.0.1", "--port", "0", "--log-level", "WARNING"]
    with _process(scheduler_args, env) as (_, banner):
        address = banner.split()[-1]
        with _process(["worker", address, "--memory-limit", "256MiB", "--log-level", "WARNING"],
                      env) as (_, wbanner):
            url = wbanner.split()[-1].replace("tcp://", "http://")
            scrape = {"Authorization": f"Bearer {METRICS}"}
            status, text = rawhttp.blocking("GET", url + "/metrics", scrape)
            assert status == 200
            assert "memkube_worker_memory_bytes" in text
            for method, path in (("PUT", "/data"), ("POST", "/data"), ("GET", "/data/x")):
                status, _ = rawhttp.blocking(method, url + path, scrape, b"\x80")
                assert status == 401, (method, path)
            http = address.replace("tcp://", "http://")
            assert rawhttp.blocking("GET", http + "/metrics", scrape)[0] == 200
            assert rawhttp.blocking("GET", http + "/api/v1/pool", scrape)[0] == 401
