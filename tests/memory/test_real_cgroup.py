"""Real memory cgroups: ChildCgroup, `auto` in a nested cgroup, kernel-event reaction, and
a worker's memory persisting several times its limit without an OOM kill.

Needs root and a writable cgroup memory controller; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from memkube.memory import ChildCgroup
from memkube.memory.events import MemoryEvents

pytestmark = pytest.mark.cgroup

MiB = 1 << 20
PROGS = Path(__file__).parent / "progs"


def test_child_cgroup_limits_counts_and_cleans_up(run_python) -> None:
    with ChildCgroup(limit=64 * MiB) as cg:
        path = cg.path
        assert path.is_dir() and cg.cgroup.own_limit() == 64 * MiB
        ok = run_python("b = bytearray(16 << 20); b[::4096] = b'x' * len(b[::4096])", cgroup=cg)
        assert ok.returncode == 0, ok.stderr
        assert (cg.max_usage() or 0) >= 16 * MiB and cg.oom_kills() == 0
        # over the limit the kernel kills, exactly as in a pod: what the other tests rule out
        killed = run_python(
            "b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096])", cgroup=cg
        )
        assert killed.returncode == -9
        assert cg.oom_kills() == 1
    assert not path.exists()


def test_auto_reads_the_limit_of_its_own_nested_cgroup(run_python) -> None:
    code = (
        "import json\n"
        "from memkube.memory import parse_memory_limit\n"
        "from memkube.memory.cgroup import own_memory_cgroup\n"
        "print(json.dumps([parse_memory_limit('auto'),\n"
        "                  parse_memory_limit('auto', nworkers_on_host=2),\n"
        "                  parse_memory_limit('0.5'), parse_memory_limit('64GiB'),\n"
        "                  str(own_memory_cgroup().path)]))\n"
    )
    with ChildCgroup(limit=300 * MiB) as cg:
        out = run_python(code, cgroup=cg)
        assert out.returncode == 0, out.stderr
        auto, half_auto, fraction, capped, path = json.loads(out.stdout)
        assert path == str(cg.path)
    assert auto == 300 * MiB
    assert half_auto == fraction == 150 * MiB
    assert capped == 300 * MiB  # a limit above the cgroup's is capped to it


def test_kernel_events_fire_on_thresholds_and_then_settle(run_python) -> None:
    fired: list[str] = []
    crossed = threading.Event()

    def notify(source: str) -> None:
        fired.append(source)
        crossed.set()

    with ChildCgroup(limit=256 * MiB) as cg:
        events = MemoryEvents(cg.cgroup, [48 * MiB], notify)
        assert events.start()
        assert {"pressure", "oom"} <= set(events.sources)
        try:
            # allocate 96 MiB, then hold it while the event thread must stay quiet
            out = run_python(
                "import time; b = bytearray(96 << 20); b[::4096] = b'x' * len(b[::4096]);"
                " time.sleep(0.5)",
                cgroup=cg,
            )
            assert out.returncode == 0, out.stderr
            assert crossed.wait(5)
        finally:
            events.close()
    assert f"usage>{48 * MiB}" in fired
    assert len(fired) < 20  # each descriptor is re-armed, not left signalling in a loop


def test_monitor_reacts_to_kernel_events_not_the_poll(run_python) -> None:
    # the monitor polls every 30 s; pausing within the 10 s timeout needs a kernel event
    limit, allocate = 256 * MiB, 180 * MiB
    with ChildCgroup(limit=512 * MiB) as cg:
        out = run_python(
            f"import runpy, sys; sys.argv = ['react', '{limit}', '{allocate}'];"
            f" runpy.run_path({str(PROGS / 'react.py')!r}, run_name='__main__')",
            cgroup=cg,
        )
        assert out.returncode == 0, out.stderr
        assert cg.oom_kills() == 0
    result = json.loads(out.stdout)
    assert result["kernel_events"] > 0 and "pressure" in result["sources"]
    assert result["pause_latency"] < 1.0 and result["resume_latency"] < 1.0


@pytest.mark.slow
def test_worker_memory_persists_several_times_its_limit(run_python, tmp_path: Path) -> None:
    """400 MB limit in a 700 MB cgroup; 3 GB of incompressible arrays; reduce; no OOM."""
    limit, cgroup_limit, total, chunk = 400 * 10**6, 700 * 10**6, 3 * 10**9, 32 * MiB
    with ChildCgroup(limit=cgroup_limit) as cg:
        out = run_python(
            f"import runpy, sys; sys.argv = ['p', '400MB', '{total}', '{chunk}', {str(tmp_path)!r}];"
            f" runpy.run_path({str(PROGS / 'persist_and_reduce.py')!r}, run_name='__main__')",
            cgroup=cg,
            timeout=240,
        )
        peak = cg.max_usage()
        oom_kills = cg.oom_kills()
    assert out.returncode == 0, out.stderr[-3000:]
    assert oom_kills == 0
    result = json.loads(out.stdout)
    assert result["written"] == result["read"] and len(result["read"]) == total // chunk
    figures = result["figures"]
    assert figures["spilled"] >= total - 2 * limit
    assert figures["spill_full"] is False and not any(
        e.startswith("terminate") for e in result["events"]
    )
    assert peak is not None and peak < cgroup_limit
    assert list(tmp_path.iterdir()) == []  # closing removed every spill file
    print(
        f"\npersist+reduce {total / 1e9:.0f} GB in {result['seconds']:.1f}s, "
        f"peak cgroup {peak / cgroup_limit:.0%} of its limit, "
        f"{figures['spill_count']} spills, kernel events {result['kernel_events']}",
        file=sys.stderr,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task_mib", "outcomes"),
    [(100, {"completed"}), (300, {"completed", "terminate"})],
)
def test_a_fast_allocating_task_meets_the_monitor_not_the_oom_killer(
    run_python, task_mib: int, outcomes: set[str]
) -> None:
    """Managed data at target, then a task allocating in 8 MiB steps as fast as it can.

    A small task completes (spilling makes room); a big one drives the worker to its
    terminate threshold, where it exits by itself (75), before the cgroup limit 100 MiB
    above the worker's limit is reached.
    """
    limit = 400 * MiB
    with ChildCgroup(limit=limit + 100 * MiB) as cg:
        out = run_python(
            f"import runpy, sys; sys.argv = ['t', '{limit}', '{task_mib * MiB}', '{8 * MiB}'];"
            f" runpy.run_path({str(PROGS / 'fast_task.py')!r}, run_name='__main__')",
            cgroup=cg,
        )
        assert cg.oom_kills() == 0
        peak = cg.max_usage()
    result = json.loads(out.stdout)
    assert result["outcome"] in outcomes
    assert out.returncode == (0 if result["outcome"] == "completed" else 75), out.stderr
    assert peak is not None and peak < limit + 100 * MiB


def test_readings_through_kept_open_files_follow_the_usage() -> None:
    # usage and working set are read through descriptors kept open (seq_files regenerate
    # from offset 0): each reading must still be the kernel's current figure
    code = ("import sys\n"
            "b = bytearray(96 << 20); b[::4096] = b'x' * len(b[::4096])\n"
            "print('held', flush=True); sys.stdin.readline()\n")
    with ChildCgroup(limit=256 * MiB) as cg:
        reader = cg.cgroup
        idle = reader.working_set()
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True,
                                preexec_fn=cg.enter_in_child)  # noqa: PLW1509 - as ChildCgroup documents
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            held = reader.working_set()
            assert held - idle >= 90 * MiB
            assert reader.usage() >= held
        finally:
            proc.communicate("\n", timeout=30)
        assert reader.working_set() < held - 80 * MiB  # freed: the reading falls again
    # the cgroup is gone: a reading raises (the manager then goes on with RSS alone)
    with pytest.raises(OSError):
        reader.working_set()
