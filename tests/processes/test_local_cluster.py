"""The local pool with real worker processes: the sync API, failures and no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import memkube
import psutil
import pytest
from memkube import Client, LocalCluster


def slow_identity(x: int, seconds: float = 0.0) -> int:
    time.sleep(seconds)
    return x


@pytest.fixture(scope="module")
def cluster() -> LocalCluster:
    with LocalCluster(n_workers=2, memory_limit="512MiB", log_level="WARNING") as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Client:
    with Client(cluster) as c:
        yield c


def test_sync_api(client: Client) -> None:
    futures = client.map(lambda x: x * 2, range(1000))
    assert sum(client.gather(futures)) == 2 * sum(range(1000))
    assert client.submit(sum, futures[:10]).result(timeout=30) == 90
    done, not_done = memkube.wait(futures[:5], timeout=30)
    assert len(done) == 5 and not not_done
    seen = [f.key for f in memkube.as_completed(futures[:20])]
    assert sorted(seen) == sorted(f.key for f in futures[:20])
    results = {f.key: r for f, r in memkube.as_completed(futures[:3], with_results=True)}
    assert sorted(results.values()) == [0, 2, 4]


def test_scheduler_info_has_worker_processes(client: Client, cluster: LocalCluster) -> None:
    info = client.scheduler_info()
    pids = {w["pid"] for w in info["workers"].values()}
    # each worker runs under its memory guard, the process the pool started
    guards = {psutil.Process(p).ppid() for p in pids}
    assert guards == set(cluster.worker_pids().values())
    for w in info["workers"].values():
        assert w["nthreads"] == 1 and w["host"] == "127.0.0.1"
        assert w["memory"]["limit"] == 512 * 2**20 and w["memory"]["process"] > 0


def test_result_timeout(client: Client) -> None:
    fut = client.submit(slow_identity, 1, 5, pure=False)
    with pytest.raises(memkube.errors.TimeoutError):
        fut.result(timeout=0.2)
    fut.cancel()


def test_worker_killed_mid_task_completes_elsewhere(cluster: LocalCluster,
                                                    client: Client) -> None:
    fut = client.submit(slow_identity, 42, 3, pure=False)
    deadline = time.monotonic() + 10
    runner = None
    while runner is None and time.monotonic() < deadline:
        ts = cluster.scheduler.state.tasks.get(fut.key)
        if ts is not None and ts.processing_on is not None:
            runner = ts.processing_on
        time.sleep(0.02)
    assert runner is not None
    os.kill(runner.pid, signal.SIGKILL)
    assert fut.result(timeout=30) == 42
    # the supervisor restarts the killed worker, as a pod's restart policy would
    client.wait_for_workers(2, timeout=30)


def test_client_without_address_starts_a_local_pool() -> None:
    with Client(n_workers=1, memory_limit="256MiB") as c:
        assert c.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        pids = [w["pid"] for w in c.scheduler_info()["workers"].values()]
    time.sleep(0.5)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                   for p in pids)


def test_clients_of_an_in_process_pool_run_on_its_loop_thread_and_close_in_any_order() -> None:
    import threading

    def loop_threads() -> list[str]:
        return sorted(t.name for t in threading.enumerate() if t.name.startswith("memkube-"))

    before = loop_threads()
    with LocalCluster(n_workers=1, memory_limit="256MiB", log_level="WARNING") as cluster:
        threads = loop_threads()
        first, second = Client(cluster), Client(cluster)
        # the clients share the cluster's loop thread: no thread of their own
        assert first._loop is second._loop is cluster.loop_thread.loop
        assert loop_threads() == threads
        assert first.submit(sum, [1, 2]).result(timeout=30) == 3
        assert second.gather(second.scatter([b"x" * (4 << 20)]))[0] == b"x" * (4 << 20)
        first.close()  # the loop goes on for the cluster and the other client
        assert first.status == "closed"
        assert second.submit(sum, [3, 4]).result(timeout=30) == 7
    # the cluster closed first: the other client's close is a no-op, not a hang
    started = time.monotonic()
    second.close()
    assert second.status == "closed" and time.monotonic() - started < 5
    time.sleep(0.2)
    assert loop_threads() == before


SCRIPT = """
import memkube, sys, time
cluster = memkube.LocalCluster(n_workers=2, memory_limit="256MiB", log_level="ERROR")
print(" ".join(str(p) for p in cluster.worker_pids().values()), flush=True)
time.sleep(60)
"""


def _gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_killed_client_process_leaves_no_workers(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    proc.kill()
    proc.wait()
    assert _gone(pids, 10), "workers outlived their killed parent"


def test_worker_exits_when_its_scheduler_is_gone(tmp_path: Path) -> None:
    env = {**os.environ, "MEMKUBE_TOKEN": "t0ken"}
    sched = subprocess.Popen([sys.executable, "-m", "memkube", "scheduler", "--host",
                              "127.0.0.1", "--port", "0", "--log-level", "WARNING"],
                             stdout=subprocess.PIPE, text=True, env=env)
    assert sched.stdout is not None
    address = sched.stdout.readline().split()[-1]
    assert address.startswith("tcp://127.0.0.1:")
    worker = subprocess.Popen([sys.executable, "-m", "memkube", "worker", address,
                               "--death-timeout", "2", "--log-level", "WARNING"],
                              stdout=subprocess.PIPE, text=True, env=env)
    assert worker.stdout is not None
    assert "memkube worker" in worker.stdout.readline()
    sched.send_signal(signal.SIGTERM)
    assert sched.wait(10) == 0
    assert worker.wait(20) != 0  # gave up on the scheduler and exited


@pytest.mark.parametrize("argv", [
    ["memkube", "--help"], ["memkube", "scheduler", "--help"], ["memkube", "worker", "--help"],
    ["memkube", "local", "--help"], ["memkube-worker", "--help"],
    ["memkube-scheduler", "--help"],
])
def test_cli_help(argv: list[str]) -> None:
    exe = Path(sys.executable).parent / argv[0]
    out = subprocess.run([str(exe), *argv[1:]], capture_output=True, text=True, timeout=30,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_cli_rejects_nonsense_memory_limit() -> None:
    out = subprocess.run([sys.executable, "-m", "memkube", "worker", "tcp://127.0.0.1:1",
                          "--memory-limit", "4XB"], capture_output=True, text=True, timeout=30,
                         check=False, env={**os.environ, "MEMKUBE_TOKEN": "t0ken"})
    assert out.returncode == 2
    assert "4XB" in out.stderr


def test_memkube_local_runs_and_stops_cleanly() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "memkube", "local", "--workers", "1",
                             "--port", "0", "--memory-limit", "256MiB", "--log-level",
                             "WARNING"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    address = lines[0].split()[-1]
    token = lines[2].split()[-1]
    with Client(address, token=token) as c:
        assert c.submit(pow, 2, 10).result(timeout=30) == 1024
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0


def hog(_: int) -> bytes:
    return b"\x01" * (400 * 2**20)  # 400 MiB written in a 256 MiB worker


def lazy_hog(_: int) -> bytes:
    return bytes(400 * 2**20)  # 400 MiB of zero pages: no memory until read back


def test_task_that_takes_down_workers_fails_after_bounded_tries() -> None:
    with LocalCluster(n_workers=2, memory_limit="256MiB", log_level="CRITICAL") as cluster, \
            Client(cluster) as client:
        future = client.submit(hog, 1)
        with pytest.raises(memkube.TaskMemoryError, match="memory limit of 268 MB") as info:
            future.result(timeout=120)
        assert future.key in str(info.value) and info.value.key == future.key
        assert info.value.peak > 200 * 2**20 and info.value.limit == 256 * 2**20
        assert client.submit(sum, [1, 2]).result(timeout=60) == 3  # the pool recovered
        restarts = cluster.scheduler.state.restarts_by_name
        assert sum(restarts.values()) >= 1  # the workers restarted, in time
        assert all(wp.proc.returncode is None for wp in cluster.workers.values())


def test_a_result_larger_than_any_worker_fails_at_once_instead_of_killing_its_readers() -> None:
    """Before: the result was spilled (reading untouched zero pages costs nothing), then
    every worker that read it back to serve it was killed, and it was recomputed, forever."""
    with LocalCluster(n_workers=2, memory_limit="256MiB", log_level="CRITICAL") as cluster, \
            Client(cluster) as client:
        future = client.submit(lazy_hog, 1)
        with pytest.raises(memkube.TaskMemoryError, match="its result alone is 419 MB") as info:
            future.result(timeout=60)
        assert info.value.key == future.key and info.value.peak >= 400 * 2**20
        assert dict(cluster.scheduler.state.restarts_by_name) == {}  # nobody was killed
        assert client.submit(sum, [1, 2]).result(timeout=60) == 3
