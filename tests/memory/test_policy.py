"""The memory policy driven by injected readings: no sleeps, no processes."""

from __future__ import annotations

from memkube.memory.policy import (
    CollectGarbage,
    Escalation,
    MemoryPolicy,
    Pause,
    Reading,
    Resume,
    Spill,
    Terminate,
    Thresholds,
    TrimMalloc,
    Warn,
)

LIMIT = 1000


def reading(
    t: float = 0.0, process: int = 0, managed: int = 0, spillable: int | None = None, **kw: object
) -> Reading:
    return Reading(
        time=t,
        process=process,
        managed=managed,
        spillable=managed if spillable is None else spillable,
        **kw,
    )  # type: ignore[arg-type]


def kinds(actions: list[object]) -> list[type]:
    return [type(a) for a in actions]


def test_below_every_threshold_nothing_happens() -> None:
    policy = MemoryPolicy(LIMIT)
    assert policy.step(reading(process=500, managed=400)) == []
    assert policy.state == "normal"


def test_no_limit_means_no_actions() -> None:
    policy = MemoryPolicy(None)
    assert policy.step(reading(process=10**12, managed=10**12)) == []


def test_managed_above_target_spills_the_excess() -> None:
    policy = MemoryPolicy(LIMIT)
    assert policy.step(reading(process=650, managed=640)) == [Spill(40)]
    assert policy.state == "spilling"


def test_process_above_spill_spills_down_to_target_with_hysteresis() -> None:
    policy = MemoryPolicy(LIMIT)
    assert policy.step(reading(process=720, managed=300)) == [Spill(120)]
    # below spill but above target: keeps spilling until target
    assert policy.step(reading(process=650, managed=250)) == [Spill(50)]
    assert policy.step(reading(process=590, managed=200)) == []
    # between target and spill again: no longer spilling (the hysteresis was left)
    assert policy.step(reading(process=650, managed=200)) == []


def test_spill_is_capped_by_what_can_be_spilled() -> None:
    policy = MemoryPolicy(LIMIT)
    assert policy.step(reading(process=750, managed=100, spillable=30)) == [Spill(30)]


def test_nothing_to_spill_no_spill_action() -> None:
    policy = MemoryPolicy(LIMIT)
    assert policy.step(reading(process=750, managed=0)) == []


def test_pause_and_resume_with_hysteresis() -> None:
    policy = MemoryPolicy(LIMIT)
    actions = policy.step(reading(process=820, managed=0))
    assert kinds(actions) == [Pause]
    assert "82%" in actions[0].reason  # type: ignore[attr-defined]
    assert policy.paused and policy.state == "paused"
    assert policy.step(reading(t=0.1, process=780, managed=0)) == []  # within the margin
    assert policy.paused
    # below the resume line, but resuming waits for it to hold (hysteresis in time)
    assert policy.step(reading(t=0.2, process=740, managed=0)) == []
    assert policy.step(reading(t=0.25, process=790, managed=0)) == []  # back up: clock resets
    assert policy.step(reading(t=0.3, process=740, managed=0)) == []
    assert policy.step(reading(t=0.35, process=740, managed=0)) == []
    assert kinds(policy.step(reading(t=0.4, process=740, managed=0))) == [Resume]
    assert not policy.paused


def test_pause_does_not_flap_on_readings_around_the_line() -> None:
    policy = MemoryPolicy(LIMIT)
    changes = 0
    for i in range(200):  # 1 ms apart, alternating 81% and 70%
        actions = policy.step(reading(t=i / 1000, process=810 if i % 2 else 700, managed=0))
        changes += sum(isinstance(a, (Pause, Resume)) for a in actions)
    assert changes == 1  # one pause, never a resume while memory keeps coming back


def test_cgroup_usage_counts_against_the_cgroup_limit() -> None:
    policy = MemoryPolicy(LIMIT)
    # the process is small, but its cgroup (limit 2000) is at 85%
    actions = policy.step(reading(process=100, managed=0, cgroup_usage=1700, cgroup_limit=2000))
    assert kinds(actions) == [Pause]


def test_terminate_threshold_spills_everything_before_terminating_once() -> None:
    policy = MemoryPolicy(LIMIT)
    actions = policy.step(reading(process=960, managed=500))
    assert actions[0] == Spill(500) and kinds(actions) == [Spill, Pause]
    assert policy.step(reading(t=0.1, process=960, managed=200)) == [Spill(200)]  # going on
    assert policy.step(reading(t=0.2, process=960, managed=0)) == []  # all spilled, above
    assert policy.step(reading(t=0.69, process=960, managed=0)) == []  # settling
    actions = policy.step(reading(t=0.71, process=960, managed=0))  # still above 0.5 s on
    assert kinds(actions) == [Terminate] and "nothing left to spill" in actions[0].reason
    assert policy.step(reading(t=1, process=960, managed=500)) == []


def test_above_terminate_with_nothing_to_spill_a_transient_that_passes_is_no_restart() -> None:
    """A transfer's buffers are not spillable: memory over the line for a moment, then
    back under it, restarts nothing (the 128 MiB retirement test's receivers do this)."""
    policy = MemoryPolicy(LIMIT)
    assert kinds(policy.step(reading(t=0.0, process=960, managed=0))) == [Pause]
    assert policy.step(reading(t=0.3, process=965, managed=0)) == []
    assert Terminate not in kinds(policy.step(reading(t=0.4, process=700, managed=0)))
    assert policy.step(reading(t=0.6, process=960, managed=0)) == []  # a new episode
    assert policy.step(reading(t=1.0, process=960, managed=0)) == []
    assert not policy.terminated


def test_above_terminate_with_nothing_to_spill_and_climbing_restarts_at_once() -> None:
    policy = MemoryPolicy(LIMIT)
    assert kinds(policy.step(reading(t=0.0, process=955, managed=0))) == [Pause]
    assert policy.step(reading(t=0.05, process=980, managed=0)) == []  # +2.5 %
    assert kinds(policy.step(reading(t=0.1, process=986, managed=0))) == [Terminate]  # +3.1 %


def test_spilling_above_terminate_avoids_the_restart_when_it_frees_enough() -> None:
    policy = MemoryPolicy(LIMIT)
    assert kinds(policy.step(reading(process=960, managed=500))) == [Spill, Pause]
    assert Terminate not in kinds(policy.step(reading(t=0.1, process=500, managed=0)))
    assert not policy.terminated


def test_disabled_thresholds_do_nothing() -> None:
    policy = MemoryPolicy(LIMIT, Thresholds(None, None, None, None))
    assert policy.step(reading(process=990, managed=990)) == []


def test_full_spill_store_pauses_instead_of_spilling() -> None:
    policy = MemoryPolicy(LIMIT)
    actions = policy.step(reading(process=700, managed=690, spill_full=True))
    assert kinds(actions) == [Pause]
    assert "spill store full" in actions[0].reason  # type: ignore[attr-defined]
    # still full: stays paused
    assert policy.step(reading(t=0.5, process=700, managed=690, spill_full=True)) == []
    # room again, and memory below pause minus the margin: spill and resume
    assert kinds(policy.step(reading(t=2, process=700, managed=690))) == [Spill]
    assert kinds(policy.step(reading(t=2.1, process=700, managed=690))) == [Spill, Resume]


def test_unmanaged_memory_escalates_gc_trim_terminate() -> None:
    policy = MemoryPolicy(
        LIMIT, escalation=Escalation(gc_after=1, trim_after=3, terminate_after=10)
    )
    assert kinds(policy.step(reading(t=100, process=850))) == [Pause]
    assert policy.step(reading(t=100.5, process=850)) == []
    assert kinds(policy.step(reading(t=101, process=850))) == [CollectGarbage]
    assert policy.step(reading(t=102, process=850)) == []
    assert kinds(policy.step(reading(t=103, process=850))) == [TrimMalloc]
    assert policy.step(reading(t=109, process=850)) == []
    actions = policy.step(reading(t=110, process=850))
    assert kinds(actions) == [Terminate]
    assert "paused for 10s" in actions[0].reason  # type: ignore[attr-defined]


def test_escalation_restarts_when_memory_becomes_spillable() -> None:
    policy = MemoryPolicy(LIMIT, escalation=Escalation(gc_after=1, trim_after=2, terminate_after=5))
    policy.step(reading(t=0, process=850))
    policy.step(reading(t=1.5, process=850))  # gc
    # a new value arrives: spilling can help, the clock stops
    assert kinds(policy.step(reading(t=2, process=850, managed=100))) == [Spill]
    assert kinds(policy.step(reading(t=3, process=850))) == []
    assert kinds(policy.step(reading(t=4, process=850))) == [CollectGarbage]


def test_escalation_without_terminate_warns_periodically() -> None:
    policy = MemoryPolicy(
        LIMIT, escalation=Escalation(gc_after=0, trim_after=0, terminate_after=None, warn_every=30)
    )
    assert kinds(policy.step(reading(t=0, process=850))) == [
        Pause,
        CollectGarbage,
        TrimMalloc,
        Warn,
    ]
    assert policy.step(reading(t=10, process=850)) == []
    assert kinds(policy.step(reading(t=31, process=850))) == [Warn]
    assert policy.paused and not policy.terminated


def test_resume_resets_escalation() -> None:
    policy = MemoryPolicy(LIMIT, escalation=Escalation(gc_after=1, trim_after=2, terminate_after=3))
    policy.step(reading(t=0, process=850))
    policy.step(reading(t=1, process=850))
    assert policy.step(reading(t=1.5, process=500)) == []
    assert kinds(policy.step(reading(t=1.6, process=500))) == [Resume]
    assert kinds(policy.step(reading(t=10, process=850))) == [Pause]
    assert policy.step(reading(t=10.5, process=850)) == []  # the clock started again


def test_the_manager_is_off_only_when_every_threshold_is_disabled() -> None:
    # `memkube worker` runs without its memory guard exactly then (the kernel acts instead).
    assert Thresholds(None, None, None, None).all_disabled
    assert not Thresholds().all_disabled
    assert not Thresholds(None, None, None, 0.95).all_disabled


def test_the_lines_fall_back_to_the_next_threshold_set_then_to_the_limit() -> None:
    assert (Thresholds().intake_line, Thresholds().run_line) == (0.8, 0.95)
    assert (Thresholds(pause=None).intake_line, Thresholds(terminate=None).run_line) == (0.95, 0.8)
    off = Thresholds(None, None, None, None)
    assert (off.intake_line, off.run_line) == (1.0, 1.0)


def test_a_switched_off_manager_acts_on_no_limit() -> None:
    from memkube.memory import MemoryConfig

    assert MemoryConfig(limit=2**30).acting_limit == 2**30
    assert MemoryConfig(limit=2**30, thresholds=Thresholds(None, None, None, None)).acting_limit is None
    assert MemoryConfig(limit=None).acting_limit is None
