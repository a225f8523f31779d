"""The reconcile plan: scale up, retire on scale-down, roll through retirement."""

from __future__ import annotations

from memkube_operator.observe import PodView, pod_view
from memkube_operator.plan import plan

NEW, OLD = "new", "old"


def pod(
    name: str,
    *,
    ready: bool = True,
    started: bool | None = None,
    hash_: str = NEW,
    phase: str = "Running",
    deleting: bool = False,
    created: str | None = None,
) -> PodView:
    return PodView(
        name=name,
        phase=phase,
        ready=ready,
        started=ready if started is None else started,
        deleting=deleting,
        spec_hash=hash_,
        created=created or name,
        restart_count=0,
        last_oom=False,
    )


def test_missing_pods_are_created_and_capped_per_pass() -> None:
    assert plan(4, NEW, [pod("a")], max_creates=50).create_workers == 3
    assert plan(100, NEW, [], max_creates=10).create_workers == 10


def test_a_converged_pool_is_idle() -> None:
    step = plan(2, NEW, [pod("a"), pod("b")], max_creates=50)
    assert step.idle


def test_pods_being_deleted_do_not_count() -> None:
    step = plan(2, NEW, [pod("a"), pod("b", deleting=True)], max_creates=50)
    assert step.create_workers == 1


def test_finished_pods_are_deleted_and_replaced() -> None:
    step = plan(2, NEW, [pod("a"), pod("b", phase="Failed", ready=False)], max_creates=50)
    assert step.delete_now == ("b",)
    assert step.create_workers == 1


def test_scale_down_asks_the_scheduler_to_choose() -> None:
    step = plan(1, NEW, [pod("a"), pod("b"), pod("c")], max_creates=50)
    assert step.retire_count == 2
    assert step.retire_names == ()
    assert step.delete_now == ()


def test_scale_down_deletes_never_started_pods_first_without_retiring() -> None:
    pods = [pod("a"), pod("b"), pod("c", ready=False, started=False)]
    step = plan(1, NEW, pods, max_creates=50)
    assert step.delete_now == ("c",)
    assert step.retire_count == 1


def test_outdated_ready_pool_surges_one_pod() -> None:
    step = plan(2, NEW, [pod("a", hash_=OLD), pod("b", hash_=OLD)], max_creates=50)
    assert step.create_workers == 1
    assert not step.retires


def test_surplus_during_a_roll_retires_an_outdated_pod_by_name() -> None:
    pods = [pod("a", hash_=OLD), pod("b", hash_=OLD), pod("c")]
    step = plan(2, NEW, pods, max_creates=50)
    assert step.retire_names == ("a",)
    assert step.retire_count == 0
    assert step.delete_now == ()


def test_roll_waits_for_the_surge_pod_to_be_ready() -> None:
    pods = [pod("a", hash_=OLD), pod("b", hash_=OLD), pod("c", ready=False, started=False)]
    step = plan(2, NEW, pods, max_creates=50)
    assert not step.retires
    assert step.delete_now == ()
    assert step.waiting is not None


def test_roll_does_not_start_while_pods_are_unready() -> None:
    # b runs (it may hold data) but is not ready right now: wait rather than retire blindly.
    unready = pod("b", hash_=OLD, ready=False, started=True)
    step = plan(2, NEW, [pod("a", hash_=OLD), unready], max_creates=50)
    assert step.create_workers == 0
    assert step.delete_now == ()
    assert step.waiting is not None


def test_pod_view_reads_readiness_oom_and_hash() -> None:
    manifest = {
        "metadata": {
            "name": "w",
            "annotations": {"memkube.dev/spec-hash": "h"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "restartCount": 2,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"reason": "OOMKilled"}},
                }
            ],
        },
    }
    view = pod_view(manifest)
    assert (view.ready, view.started, view.spec_hash, view.restart_count, view.last_oom) == (
        True,
        True,
        "h",
        2,
        True,
    )
    assert pod_view({"metadata": {"name": "fresh"}}).started is False


def test_force_is_due_only_when_configured_and_waited_long_enough() -> None:
    import datetime

    from memkube_operator.scaledown import force_due

    now = datetime.datetime(2026, 1, 1, 0, 10, tzinfo=datetime.UTC)
    assert not force_due("2026-01-01T00:00:00Z", None, now)
    assert not force_due(None, 60, now)
    assert force_due("2026-01-01T00:00:00Z", 600, now)
    assert not force_due("2026-01-01T00:00:01Z", 600, now)


def test_a_spec_change_replaces_broken_outdated_pods_at_once() -> None:
    crashing = PodView(
        name="b",
        phase="Running",
        ready=False,
        started=True,
        deleting=False,
        spec_hash=OLD,
        created="b",
        restart_count=4,
        last_oom=False,
    )
    pods = [pod("a", hash_=OLD), crashing, pod("c", hash_=OLD, ready=False, started=False)]
    step = plan(3, NEW, pods, max_creates=50)
    assert step.delete_now == ("b", "c")
    assert not step.retires
    # A ready outdated pod is never deleted directly.
    assert "a" not in step.delete_now


def test_scale_down_drops_a_crash_looping_pod_before_retiring_healthy_ones() -> None:
    looping = PodView(
        name="b",
        phase="Running",
        ready=False,
        started=True,
        deleting=False,
        spec_hash=NEW,
        created="b",
        restart_count=7,
        last_oom=False,
    )
    step = plan(2, NEW, [pod("a"), looping, pod("c")], max_creates=50)
    assert step.delete_now == ("b",)
    assert step.retire_count == 0
