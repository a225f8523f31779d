"""The examples run as users run them (the WorkerPool YAML is exercised by the operator and
kubectl tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_main_job_example_spills_and_kills_no_worker() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "out_of_core.py"), "--gib", "1.5",
         "--limit", "400MiB"],
        capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "-> correct" in out.stdout
    assert "workers killed by the kernel (OOM): 0" in out.stdout
    spilled = next(line for line in out.stdout.splitlines() if line.startswith("spilled"))
    assert float(spilled.split()[3]) > 0.3  # GiB written to disk: the pool really spilled
    assert "OK: the pool held several times its memory" in out.stdout
    # A memory restart (the worker's own last resort, its data recomputed) may happen on a
    # loaded machine at this small limit; the kernel's OOM killer never may.
