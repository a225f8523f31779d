"""Shared plumbing for the head-to-head benchmarks (memkube vs dask.distributed).

Covers: result tables and JSON files, machine facts, ratios, dask worker processes started
by hand (optionally inside a child memory cgroup, as memkube's local pool does), sampling of
memory while a workload runs, and directory sizes. Not covered: the workloads themselves,
which live in the ``*_bench.py`` scripts so each reads top to bottom.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import psutil

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 2**20
GiB = 2**30

# The runtime measured: this checkout's, or another copy (MEMKUBE_SRC, e.g. a patched tree
# to try a fix from FINDINGS.md). PYTHONPATH carries the choice to the worker processes.
RUNTIME_SRC = os.environ.get("MEMKUBE_SRC") or str(
    Path(__file__).resolve().parents[1] / "worker_image"
)
sys.path.insert(0, RUNTIME_SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (RUNTIME_SRC, os.environ.get("PYTHONPATH")) if p
)


# ---------------------------------------------------------------------- reporting

def ratio(memkube: float | None, dask: float | None) -> float | None:
    """memkube / dask, or None when either side has no figure."""
    if memkube is None or dask is None or dask == 0:
        return None
    return memkube / dask


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """A plain text table: one row per figure, memkube / dask / ratio columns."""
    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def machine() -> dict[str, Any]:
    """Facts that make a figure comparable with another run."""
    from importlib.metadata import version

    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "ram_bytes": psutil.virtual_memory().total,
        "loadavg_at_start": os.getloadavg(),  # 1, 5, 15 min: how shared the CPUs were
        "python": platform.python_version(),
        "kernel": platform.release(),
        "dask": version("dask"),
        "distributed": version("distributed"),
        "ray": _version_or_none("ray"),
        "memkube_src": RUNTIME_SRC,
    }


def _version_or_none(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def load_average() -> str:
    """``uptime``'s three load averages, to print beside a figure (the machine is shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def raw_disk(directory: Path, nbytes: int, block: int = 32 << 20) -> tuple[float, float]:
    """Bytes/s of the bare disk: one sequential ``O_DIRECT`` write of ``nbytes`` from one
    reused page-aligned buffer (fsynced), then its ``O_DIRECT`` read into the same buffer.
    The physical limit of a spill: no serialization, checksum, allocation or page cache."""
    import mmap

    path = Path(directory) / f"raw-disk-test-{os.getpid()}"
    buf = mmap.mmap(-1, block)
    buf.write(os.urandom(1 << 20) * (block >> 20))
    n = max(1, nbytes // block)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
        try:
            start = time.perf_counter()
            for i in range(n):
                os.pwrite(fd, buf, i * block)
            os.fsync(fd)
            write = n * block / (time.perf_counter() - start)
        finally:
            os.close(fd)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            start = time.perf_counter()
            for i in range(n):
                os.preadv(fd, [buf], i * block)
            read = n * block / (time.perf_counter() - start)
        finally:
            os.close(fd)
        return write, read
    finally:
        path.unlink(missing_ok=True)
        buf.close()


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"\nwrote {path}")
    return path


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# ---------------------------------------------------------------------- processes

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec: the child gets SIGKILL when this script dies, so no worker outlives a run."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def process_tree_rss(pids: Sequence[int]) -> int:
    """RSS of the processes and their children; vanished processes count as zero."""
    total = 0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
    return total


def dir_size(path: Path) -> int:
    """Bytes of regular files under ``path`` (files removed while walking are skipped)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


class Sampler:
    """Samples ``probe()`` every ``interval`` seconds in a thread; keeps the peak.

    Memory has no "peak changed" event to await, so sampling is the measurement itself.
    """

    def __init__(self, probe: Callable[[], int], interval: float = 0.05) -> None:
        self.probe = probe
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.probe())
            except OSError:
                pass  # the cgroup or process went away between samples
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> float:
    """Seconds until ``condition()`` holds, or raise TimeoutError.

    Used where the thing measured is an external effect (a process's RSS, files on disk)
    that no event announces.
    """
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)
    return time.perf_counter() - start


# ---------------------------------------------------------------------- dask

@contextmanager
def dask_pool(n_workers: int, *, nthreads: int = 1, memory_limit: str = "1GiB",
              local_directory: Path | None = None, cgroup_limit: int | None = None,
              extra_args: Sequence[str] = (),
              scheduler_config: dict[str, Any] | None = None,
              ) -> Iterator[tuple[Any, list[DaskWorker]]]:
    """An in-process dask scheduler and ``n_workers`` ``dask worker`` processes.

    Each worker (with its nanny, as dask deploys by default) runs in its own child memory
    cgroup of ``cgroup_limit`` bytes when given, exactly like memkube's ``cgroup=True``.
    ``scheduler_config`` is dask configuration for the (in-process) scheduler.
    Yields a connected ``distributed.Client`` and the worker handles.
    """
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set(scheduler_config or {}):
        cluster = LocalCluster(n_workers=0, dashboard_address=None, processes=False,
                               protocol="tcp", host="127.0.0.1")
    workers: list[DaskWorker] = []
    client = None
    try:
        for i in range(n_workers):
            workers.append(DaskWorker.start(
                cluster.scheduler_address, f"dask-{i}", nthreads=nthreads,
                memory_limit=memory_limit, local_directory=local_directory,
                cgroup_limit=cgroup_limit, extra_args=extra_args))
        client = Client(cluster)
        client.wait_for_workers(n_workers, timeout=60)
        yield client, workers
    finally:
        if client is not None:
            client.close()
        for w in workers:
            w.stop()
        cluster.close()


class DaskWorker:
    """One ``dask worker`` process tree (nanny + worker), optionally in a ChildCgroup."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], cgroup: Any) -> None:
        self.name = name
        self.proc = proc
        self.cgroup = cgroup

    @classmethod
    def start(cls, address: str, name: str, *, nthreads: int, memory_limit: str,
              local_directory: Path | None, cgroup_limit: int | None,
              extra_args: Sequence[str]) -> DaskWorker:
        from memkube.memory import ChildCgroup

        cgroup = None
        if cgroup_limit is not None:
            cgroup = ChildCgroup(cgroup_limit, name=f"bench-{name}-{os.getpid()}")
            cgroup.__enter__()

        def preexec() -> None:
            die_with_parent()
            if cgroup is not None:
                cgroup.enter_in_child()

        cmd = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name,
               "--nthreads", str(nthreads), "--nworkers", "1",
               "--memory-limit", memory_limit, "--no-dashboard", *extra_args]
        if local_directory is not None:
            cmd += ["--local-directory", str(local_directory)]
        RESULTS.mkdir(exist_ok=True)
        with open(RESULTS / f"{name}.log", "wb") as log:  # for post-mortems of failed runs
            # preexec_fn: the child must join the cgroup before it runs anything (as
            # memkube's LocalCluster does); it only writes a pid to a cgroup file
            proc = subprocess.Popen(cmd, preexec_fn=preexec,  # noqa: PLW1509
                                    stdout=log, stderr=log)
        return cls(name, proc, cgroup)

    def worker_pid(self) -> int | None:
        """The worker process (the nanny's child), not the nanny."""
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return None
        return children[0].pid if children else None

    def oom_kills(self) -> int:
        return self.cgroup.oom_kills() if self.cgroup is not None else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.remove()


def dask_spill_figures(client: Any) -> dict[str, float]:
    """Spill figures of all dask workers, shaped like memkube's memory figures.

    From each worker's SpillBuffer metrics. Seconds cover the same steps memkube's do:
    writing = serialize + compress + disk write, reading = disk read + decompress +
    deserialize.
    """

    def read(dask_worker: Any) -> dict[str, float]:
        metrics = getattr(dask_worker.data, "cumulative_metrics", {})
        return {f"{label}-{unit}": float(v) for (label, unit), v in metrics.items()
                if isinstance(label, str)}

    per_worker: dict[str, dict[str, float]] = client.run(read)

    def total(*names: str) -> float:
        return sum(m.get(n, 0.0) for m in per_worker.values() for n in names)

    return {
        "spill_bytes": total("disk-write-bytes"),
        "spill_count": total("disk-write-count"),
        "spill_seconds": total("serialize-seconds", "compress-seconds", "disk-write-seconds"),
        "unspill_bytes": total("disk-read-bytes"),
        "unspill_seconds": total("disk-read-seconds", "decompress-seconds",
                                 "deserialize-seconds"),
    }
