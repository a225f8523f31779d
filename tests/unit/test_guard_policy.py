"""The memory guard's policy driven by injected readings and clock, and its cgroup reader on
cgroup v2 fixture files (this machine has no v2 memory controller: /sys/fs/cgroup/unified
is a v2 mount without controllers, so v2 is tested on files laid out as the kernel does)."""

from __future__ import annotations

from pathlib import Path

from memkube.guard.policy import GuardConfig, GuardPolicy, GuardReading, Kill, RequestSpill
from memkube.guard.supervisor import CgroupReader
from memkube.memory.cgroup import CgroupMemory

MB = 10**6
LIMIT = 400 * MB


def at(t: float, rss_mb: float, cgroup_mb: float | None = None) -> GuardReading:
    return GuardReading(t, int(rss_mb * MB), None if cgroup_mb is None else int(cgroup_mb * MB))


def test_below_the_terminate_line_nothing_happens() -> None:
    policy = GuardPolicy(GuardConfig(LIMIT))
    assert all(policy.step(at(i / 100, 100 + i)) == [] for i in range(270))


def test_above_terminate_it_asks_for_a_spill_first_and_spares_a_worker_that_recovers() -> None:
    policy = GuardPolicy(GuardConfig(LIMIT))
    assert policy.step(at(0.0, 385)) == [RequestSpill()]
    assert policy.step(at(0.005, 386)) == []  # once per crossing
    policy.spill_answered(0.05)
    assert policy.step(at(0.06, 300)) == []  # spilling freed enough: no kill
    assert policy.kills == 0
    assert policy.step(at(1.0, 385)) == [RequestSpill()]  # a new crossing asks again


def test_still_above_after_the_spill_answer_kills_with_a_report() -> None:
    policy = GuardPolicy(GuardConfig(LIMIT))
    policy.task_started("hog-1", int(70 * MB))
    assert policy.step(at(0.0, 383)) == [RequestSpill()]
    policy.spill_answered(0.01)
    assert policy.step(at(0.02, 384)) == []  # what is left may be a transfer's buffers
    assert policy.step(at(0.5, 384)) == []
    (kill,) = policy.step(at(0.51, 384))  # still above 0.5 s after the answer
    assert isinstance(kill, Kill) and "after spilling everything" in kill.reason
    assert kill.report["keys"] == ["hog-1"]
    assert kill.report["peak"] == 384 * MB and kill.report["task_peak"] == 314 * MB
    assert kill.report["limit"] == LIMIT and kill.report["retry_gain"] == 0
    assert policy.step(at(0.03, 390)) == []  # one kill per worker


def test_answered_and_climbing_kills_before_the_settling_is_over() -> None:
    policy = GuardPolicy(GuardConfig(LIMIT))
    assert policy.step(at(0.0, 381)) == [RequestSpill()]
    policy.spill_answered(0.01)
    assert policy.step(at(0.02, 382)) == []
    assert policy.step(at(0.03, 393)) == []  # +11 MB: under 3 % of the limit
    (kill,) = policy.step(at(0.04, 395))  # +13 MB above the first reading after the answer
    assert isinstance(kill, Kill) and "climbing" in kill.reason


def test_answered_and_back_under_the_line_is_no_kill_and_a_new_crossing_asks_again() -> None:
    """Transfer buffers over the line for a moment (the 128 MiB retirement test's
    receivers): the worker had nothing left to spill, and memory fell back by itself."""
    policy = GuardPolicy(GuardConfig(LIMIT))
    assert policy.step(at(0.0, 382)) == [RequestSpill()]
    policy.spill_answered(0.005)
    assert policy.step(at(0.01, 383)) == []
    assert policy.step(at(0.1, 378)) == []  # under the line (380 MB), not well under
    assert policy.step(at(0.7, 382)) == [RequestSpill()]
    policy.spill_answered(0.705)
    assert policy.step(at(0.8, 381)) == []
    assert policy.kills == 0


def test_unanswered_and_climbing_kills_before_the_wait_is_over() -> None:
    policy = GuardPolicy(GuardConfig(LIMIT, spill_wait=0.5))
    assert policy.step(at(0.0, 381)) == [RequestSpill()]
    assert policy.step(at(0.005, 390)) == []
    (kill,) = policy.step(at(0.010, 394))  # +13 MB > 3% of the limit, no answer
    assert isinstance(kill, Kill) and "unanswered" in kill.reason


def test_unanswered_and_steady_kills_after_the_wait() -> None:
    policy = GuardPolicy(GuardConfig(LIMIT, spill_wait=0.5))
    assert policy.step(at(0.0, 381)) == [RequestSpill()]
    assert policy.step(at(0.49, 382)) == []
    assert isinstance(policy.step(at(0.5, 382))[0], Kill)


def test_acknowledged_and_spilling_on_a_slow_disk_is_not_killed_for_the_wait() -> None:
    """``spilling`` came at once (no task holds the interpreter): a spill that takes longer
    than ``spill_wait`` is waited for, up to ``spill_time``, unless memory climbs."""
    policy = GuardPolicy(GuardConfig(LIMIT, spill_wait=0.5, spill_time=10.0))
    assert policy.step(at(0.0, 381)) == [RequestSpill()]
    policy.spill_acknowledged(0.001)
    assert policy.step(at(0.6, 383)) == []
    assert policy.step(at(9.9, 383)) == []
    (kill,) = policy.step(at(10.0, 383))
    assert isinstance(kill, Kill) and "not done in 10.0 s" in kill.reason


def test_acknowledged_a_spill_may_race_an_allocating_task_up_to_the_limit() -> None:
    """A numpy task fills 250 MB with the interpreter released while the worker spills
    what it holds (tests/processes/test_memory_guard.py): memory rises past the crossing
    before the spill outruns it. The worker's limit is the line it may not pass."""
    policy = GuardPolicy(GuardConfig(LIMIT, cgroup_limit=700 * MB))
    assert policy.step(at(0.0, 381)) == [RequestSpill()]
    policy.spill_acknowledged(0.001)
    assert policy.step(at(0.01, 397)) == []  # +16 MB: over 3 %, but acknowledged
    assert policy.step(at(0.02, 390)) == []
    (kill,) = policy.step(at(0.03, 400))
    assert isinstance(kill, Kill) and "reached its limit" in kill.reason


def test_an_acknowledgement_from_an_earlier_crossing_does_not_count() -> None:
    policy = GuardPolicy(GuardConfig(LIMIT, spill_wait=0.5))
    assert policy.step(at(0.0, 381)) == [RequestSpill()]
    policy.spill_acknowledged(0.001)
    policy.spill_answered(0.002)
    assert policy.step(at(0.1, 300)) == []  # well below: the episode is over
    assert policy.step(at(1.0, 381)) == [RequestSpill()]
    assert isinstance(policy.step(at(1.5, 381))[0], Kill)  # this request went unanswered


def test_without_a_cgroup_the_limit_itself_is_the_kill_line() -> None:
    policy = GuardPolicy(GuardConfig(LIMIT, terminate=None))
    assert policy.step(at(0.0, 399)) == []
    (kill,) = policy.step(at(0.005, 401))
    assert isinstance(kill, Kill) and "kill line" in kill.reason


def test_with_a_cgroup_the_guard_kills_just_below_the_kernels_limit() -> None:
    policy = GuardPolicy(GuardConfig(LIMIT, terminate=None, cgroup_limit=700 * MB))
    assert policy.step(at(0.0, 600, cgroup_mb=640)) == []  # RSS over the limit: the cgroup rules
    (kill,) = policy.step(at(0.005, 630, cgroup_mb=666))
    assert isinstance(kill, Kill) and "hard limit 700 MB" in kill.reason


def test_the_report_counts_from_the_oldest_running_task_and_the_idle_worker() -> None:
    policy = GuardPolicy(GuardConfig(LIMIT))
    policy.task_started("a-1", int(80 * MB))  # the worker was at 80 MB when idle
    policy.task_stopped("a-1")
    policy.task_started("b-1", int(150 * MB))
    policy.task_started("b-2", int(200 * MB))
    policy.step(at(0.0, 300))
    report = policy.report("test")
    assert report["keys"] == ["b-1", "b-2"]
    assert report["task_peak"] == 150 * MB and report["retry_gain"] == 70 * MB
    policy.child_started()
    assert policy.report("fresh")["keys"] == []


def test_no_limit_means_no_guarding() -> None:
    policy = GuardPolicy(GuardConfig(None))
    assert policy.step(at(0.0, 10_000)) == []


def _v2_cgroup(tmp_path: Path, usage: int, inactive: int, oom_kill: int) -> CgroupMemory:
    (tmp_path / "memory.max").write_text(f"{700 * MB}\n")
    (tmp_path / "memory.current").write_text(f"{usage}\n")
    (tmp_path / "memory.stat").write_text(f"anon {usage - inactive}\ninactive_file {inactive}\n")
    (tmp_path / "memory.events").write_text(f"low 0\nhigh 0\nmax 2\noom 1\noom_kill {oom_kill}\n")
    return CgroupMemory(2, tmp_path)


def test_v2_cgroup_reader_on_fixture_files(tmp_path: Path) -> None:
    reader = CgroupReader(_v2_cgroup(tmp_path, 500 * MB, 100 * MB, 0))
    assert reader.limit == 700 * MB
    assert reader.usage() == 400 * MB  # usage minus the inactive file cache
    (tmp_path / "memory.current").write_text(f"{600 * MB}\n")
    assert reader.usage() == 500 * MB  # fast path: same cache estimate, new usage
    assert reader.oom_kills() == 0
    (tmp_path / "memory.events").write_text("oom 2\noom_kill 1\n")
    assert reader.oom_kills() == 1  # a kernel OOM kill shows in memory.events


def test_cgroup_reader_without_a_cgroup_reads_nothing() -> None:
    reader = CgroupReader(None)
    assert reader.limit is None and reader.usage() is None and reader.oom_kills() == 0
