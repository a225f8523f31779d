"""The spill store against the raw disk: which write-through mode, and how many writers.

Writes ``--total`` bytes of random float64 in ``--chunk`` values through memkube's spill
store (``SpillDisk`` over ``File``: encode, checksum, write through, no page cache left) in
each write mode and with 1..N writers in flight, then reads them back; next to it, the raw
disk in the same run: one sequential ``O_DIRECT`` write of the same bytes from one reused
aligned buffer, and its read back. Prints MiB/s and the fraction of the raw figure.

    .venv/bin/python bench/disk_bench.py [--total GIB] [--chunk MIB] [--spill-dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
from benchlib import GiB, MiB


def store_speed(directory: Path, mode: str, writers: int, values: list[Any]) -> tuple[float, float]:
    from memkube.memory.disk import SpillDisk
    from memkube.memory.files import File

    spill = Path(tempfile.mkdtemp(prefix=f"disk-{mode}-", dir=directory))
    try:
        disk = SpillDisk(File(spill, mode=mode), compression="auto")
        nbytes = sum(v.nbytes for v in values)
        start = time.perf_counter()
        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(lambda iv: disk.__setitem__(f"k{iv[0]}", iv[1]), enumerate(values)))
        write = nbytes / (time.perf_counter() - start)
        start = time.perf_counter()
        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(lambda i: disk[f"k{i}"], range(len(values))))
        read = nbytes / (time.perf_counter() - start)
        disk.clear()
        return write, read
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=float, default=1.0, help="GiB per measurement")
    parser.add_argument("--chunk", type=int, default=32, help="MiB per value")
    parser.add_argument("--spill-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--writers", default="1,2,3")
    args = parser.parse_args()
    import numpy as np

    chunk = args.chunk * MiB
    n = int(args.total * GiB) // chunk
    nbytes = n * chunk
    rng = np.random.default_rng(0)
    values = [rng.random(chunk // 8) for _ in range(n)]
    load = benchlib.load_average()
    raw_w, raw_r = benchlib.raw_disk(args.spill_dir, nbytes)
    rows = [{"mode": "raw O_DIRECT", "writers": 1, "write MiB/s": raw_w / MiB,
             "read MiB/s": raw_r / MiB, "write / raw": 1.0, "read / raw": 1.0}]
    for mode in ("range", "direct"):
        for writers in (int(w) for w in args.writers.split(",")):
            w, r = store_speed(args.spill_dir, mode, writers, values)
            rows.append({"mode": mode, "writers": writers, "write MiB/s": w / MiB,
                         "read MiB/s": r / MiB, "write / raw": w / raw_w, "read / raw": r / raw_r})
    benchlib.print_table(f"spill store vs raw disk: {n} x {args.chunk} MiB random float64, "
                         f"load before {load}", rows,
                         ["mode", "writers", "write MiB/s", "read MiB/s", "write / raw",
                          "read / raw"])
    benchlib.write_json("disk", {"machine": benchlib.machine(), "load_before": load,
                                 "rows": rows, "bytes": nbytes})


if __name__ == "__main__":
    main()
