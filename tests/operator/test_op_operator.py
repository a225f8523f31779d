"""The operator running for real (kopf in-process) against the real API server.

Pods do not run (no nodes): where a scenario needs a pod ready or OOM-killed, the test
writes that status through the pods' status subresource, as a kubelet would."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from memkube_operator.builders import build_token_secret, build_worker_pod
from memkube_operator.reconcile import Reconciler
from memkube_operator.settings import PodDefaults
from memkube_operator.spec import parse_pool
from opharness import (
    GROUP,
    PLURAL,
    VERSION,
    ClusterApi,
    FakeScheduler,
    condition,
    free_port,
    operator_config,
    pool_status,
    pool_token,
    running_operator,
    until,
    worker_pods,
)


def workerpool(name: str = "demo", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {"replicas": 3, "worker": {"memoryLimit": "1Gi", "spill": {"size": "1Gi"}}, **spec},
    }


def live(api: ClusterApi, pool: str = "demo") -> list[str]:
    return sorted(
        p["metadata"]["name"]
        for p in worker_pods(api, pool)
        if not p["metadata"].get("deletionTimestamp")
    )


async def ready_pool(api: ClusterApi, replicas: int = 3) -> None:
    """Create ``demo`` and play kubelet until the operator reports it ready."""
    api.create_object(workerpool(replicas=replicas))
    await until(api, lambda: len(live(api)) == replicas)
    api.mark_pods_ready(api.ns)
    await until(
        api,
        lambda: (
            pool_status(api, "demo").get("readyReplicas") == replicas
            and condition(api, "demo", "Ready").get("status") == "True"
        ),
    )


async def test_create_builds_every_child(api: ClusterApi, operator: Reconciler) -> None:
    await ready_pool(api)
    assert api.get_object("", "v1", "secrets", api.ns, "demo-token") is not None
    assert api.get_object("", "v1", "services", api.ns, "demo-scheduler") is not None
    assert api.get_object("", "v1", "pods", api.ns, "demo-scheduler") is not None
    status = pool_status(api, "demo")
    assert status["phase"] == "Running"
    assert status["derived"]["podMemory"] == "1280Mi"
    assert status["memory"] == {"managed": 300, "unmanaged": 7, "spilled": 3}
    assert status["selector"] == "memkube.dev/pool=demo,app.kubernetes.io/component=worker"


def events(api: ClusterApi, reason: str) -> list[dict[str, Any]]:
    return [e for e in api.objects("", "v1", "events", api.ns) if e.get("reason") == reason]


async def scale(api: ClusterApi, replicas: int, pool: str = "demo") -> None:
    """What `kubectl scale` does: a merge patch of the scale subresource."""
    api.scale(pool, replicas)


async def test_pods_deleted_by_hand_come_back(api: ClusterApi, operator: Reconciler) -> None:
    await ready_pool(api)
    victim = live(api)[0]
    api.delete_object("", "v1", "pods", api.ns, victim)
    await until(api, lambda: len(live(api)) == 3 and victim not in live(api))
    scheduler = api.get_object("", "v1", "pods", api.ns, "demo-scheduler")
    assert scheduler is not None
    api.delete_object("", "v1", "pods", api.ns, "demo-scheduler")
    await until(
        api,
        lambda: (
            (api.get_object("", "v1", "pods", api.ns, "demo-scheduler") or {})
            .get("metadata", {})
            .get("uid")
            not in (None, scheduler["metadata"]["uid"])
        ),
    )


async def test_scale_up_creates_pods(api: ClusterApi, operator: Reconciler) -> None:
    await ready_pool(api, replicas=2)
    await scale(api, 5)
    await until(api, lambda: len(live(api)) == 5)
    await until(api, lambda: pool_status(api, "demo").get("replicas") == 5)
    assert condition(api, "demo", "Ready")["status"] == "False"  # 3 new pods not ready yet


async def test_scale_down_deletes_exactly_the_retired_pods(
    api: ClusterApi, operator: Reconciler, scheduler: FakeScheduler
) -> None:
    await ready_pool(api, replicas=4)
    before = live(api)
    await scale(api, 2)
    await until(api, lambda: len(live(api)) == 2)
    assert scheduler.retire_calls == [{"n": 2}]
    # The fake retires the first two by name; exactly those are gone.
    assert live(api) == before[2:]
    await until(api, lambda: len(events(api, "Retired")) == 2)
    await until(api, lambda: pool_status(api, "demo").get("replicas") == 2)


async def test_scale_down_waits_while_the_scheduler_is_unreachable(api: ClusterApi) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with running_operator(api, operator_config(lambda *_: closed)):
        await ready_pool(api, replicas=3)
        before = live(api)
        await scale(api, 1)
        await until(
            api, lambda: condition(api, "demo", "Progressing").get("reason") == "ScaleDownWaiting"
        )
        assert live(api) == before  # nothing deleted
        status = pool_status(api, "demo")
        assert status["scaleDown"]["waitingSince"]
        assert "nothing deleted" in condition(api, "demo", "Progressing")["message"]


async def test_force_timeout_deletes_unretired_pods_when_opted_in(api: ClusterApi) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with running_operator(api, operator_config(lambda *_: closed)):
        api.create_object(workerpool(replicas=3, scaleDown={"forceAfterSeconds": 1}))
        await until(api, lambda: len(live(api)) == 3)
        api.mark_pods_ready(api.ns)
        await scale(api, 1)
        await until(api, lambda: len(live(api)) == 1, timeout=15)
        await until(api, lambda: len(events(api, "ForcedScaleDown")) == 1)


async def test_refused_retirement_deletes_nothing(
    api: ClusterApi, operator: Reconciler, scheduler: FakeScheduler
) -> None:
    await ready_pool(api, replicas=3)
    scheduler.refuse = True
    before = live(api)
    await scale(api, 2)
    await until(api, lambda: len(scheduler.retire_calls) >= 2)  # retried with backoff
    assert live(api) == before
    assert "RetireError" in condition(api, "demo", "Progressing")["message"]
    scheduler.refuse = False
    await until(api, lambda: len(live(api)) == 2)


async def test_spec_change_rolls_pods_one_by_one_through_retirement(
    api: ClusterApi, operator: Reconciler, scheduler: FakeScheduler
) -> None:
    await ready_pool(api, replicas=3)
    old = set(live(api))
    api.patch_object(
        GROUP, VERSION, PLURAL, api.ns, "demo", {"spec": {"worker": {"memoryLimit": "2Gi"}}}
    )
    seen_max = 0

    def rolled() -> bool:
        nonlocal seen_max
        api.mark_pods_ready(api.ns)  # play kubelet: new pods become ready as they appear
        seen_max = max(seen_max, len(live(api)))
        return not (set(live(api)) & old) and len(live(api)) == 3

    await until(api, rolled, timeout=20)
    assert seen_max <= 4  # one surge pod at a time
    assert [c for c in scheduler.retire_calls if "n" in c] == []
    assert sorted(n for c in scheduler.retire_calls for n in c["names"]) == sorted(old)
    for pod in worker_pods(api, "demo"):
        command = pod["spec"]["containers"][0]["command"]
        assert command[command.index("--memory-limit") + 1] == "2Gi"
    await until(api, lambda: pool_status(api, "demo").get("updatedReplicas") == 3)


async def test_invalid_spec_is_a_condition_and_an_event_not_a_half_built_pool(
    api: ClusterApi, operator: Reconciler
) -> None:
    api.create_object(workerpool(worker={"memoryLimit": "1Mi"}))
    await until(api, lambda: pool_status(api, "demo").get("phase") == "Invalid")
    degraded = condition(api, "demo", "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert degraded["message"].startswith("spec.worker.memoryLimit")
    await until(api, lambda: len(events(api, "InvalidSpec")) == 1)
    assert api.objects("", "v1", "pods", api.ns) == []
    assert api.get_object("", "v1", "secrets", api.ns, "demo-token") is None


async def test_invalid_update_keeps_the_running_pool(api: ClusterApi, operator: Reconciler) -> None:
    await ready_pool(api, replicas=2)
    before = live(api)
    api.patch_object(
        GROUP,
        VERSION,
        PLURAL,
        api.ns,
        "demo",
        {"spec": {"worker": {"env": [{"name": "POD_NAME", "value": "x"}]}}},
    )
    await until(api, lambda: pool_status(api, "demo").get("phase") == "Invalid")
    assert "spec.worker.env[0].name" in condition(api, "demo", "Degraded")["message"]
    assert live(api) == before
    api.patch_object(GROUP, VERSION, PLURAL, api.ns, "demo", {"spec": {"worker": {"env": []}}})
    await until(api, lambda: pool_status(api, "demo").get("phase") not in (None, "Invalid"))


async def test_oom_kills_are_counted_once_reported_and_evented(
    api: ClusterApi, operator: Reconciler, scheduler: FakeScheduler
) -> None:
    await ready_pool(api, replicas=2)
    victim = live(api)[0]
    api.set_oom_killed(api.ns, victim)
    await until(api, lambda: pool_status(api, "demo").get("oomKills") == 1)
    await until(api, lambda: len(scheduler.reports) == 1)
    assert scheduler.reports[0]["kind"] == "oom-kill"
    assert scheduler.reports[0]["worker"] == victim
    assert condition(api, "demo", "Degraded")["reason"] == "OOMKilled"
    # More passes (a pod replaced by hand) must not count the same kill again.
    other = live(api)[1]
    api.delete_object("", "v1", "pods", api.ns, other)
    await until(api, lambda: len(live(api)) == 2 and other not in live(api))
    api.mark_pods_ready(api.ns)
    await until(
        api,
        lambda: (
            pool_status(api, "demo").get("readyReplicas") == 2
            and other not in pool_status(api, "demo").get("oomRecorded", {})
        ),
    )
    assert pool_status(api, "demo")["oomKills"] == 1
    assert len(events(api, "OOMKilled")) == 1
    api.set_oom_killed(api.ns, victim)
    await until(api, lambda: pool_status(api, "demo").get("oomKills") == 2)


async def test_deleting_the_pool_removes_every_child(api: ClusterApi, operator: Reconciler) -> None:
    await ready_pool(api, replicas=2)
    api.delete_object(GROUP, VERSION, PLURAL, api.ns, "demo")
    await until(api, lambda: api.get_object(GROUP, VERSION, PLURAL, api.ns, "demo") is None)
    # The operator deletes nothing itself: kube-controller-manager's garbage collector
    # removes every child through its ownerReference, in the background.
    await until(
        api,
        lambda: (
            api.objects("", "v1", "pods", api.ns) == []
            and api.get_object("", "v1", "services", api.ns, "demo-scheduler") is None
            and api.get_object("", "v1", "secrets", api.ns, "demo-token") is None
        ),
        timeout=60,
    )


async def test_a_pool_deleted_during_a_resync_pass_is_released_promptly(
    api: ClusterApi, scheduler: FakeScheduler
) -> None:
    # kopf keeps its finalizer until the resync timer has exited; a timer busy with a pass
    # (here: waiting on a slow scheduler) used to push the next look to 60 s later.
    config = operator_config(lambda *_: scheduler.url)
    config = replace(config, scheduler=replace(config.scheduler, request_timeout=30.0))
    async with running_operator(api, config):
        await ready_pool(api, replicas=1)
        scheduler.stall = 6.0
        seen = scheduler.stalled
        await until(api, lambda: scheduler.stalled > seen)
        # Passes are serialized per pool: whichever holds the scheduler now, a resync timer
        # that fired (every 2 s) waits behind it, so the timer is running at the deletion.
        await asyncio.sleep(2.5)
        api.delete_object(GROUP, VERSION, PLURAL, api.ns, "demo")
        scheduler.stall = 0.0
        # The pass in progress ends within one stall (6 s); the deletion must follow then.
        await until(
            api, lambda: api.get_object(GROUP, VERSION, PLURAL, api.ns, "demo") is None, 40.0
        )


async def test_an_operator_restarted_halfway_finishes_without_duplicates(
    api: ClusterApi, scheduler: FakeScheduler
) -> None:
    # The state a crashed operator left: the pool, its Secret and one of three workers.
    body = api.create_object(workerpool(replicas=3))
    pool = parse_pool(body)
    api.create_object(dict(build_token_secret(pool, "token-from-before")))
    api.create_object(dict(build_worker_pod(pool, PodDefaults())))
    config = operator_config(lambda *_: scheduler.url, max_creates_per_pass=1)
    async with running_operator(api, config):
        await until(api, lambda: len(live(api)) >= 2)
    # Stopped again partway (one pod per pass); a new operator takes over.
    async with running_operator(api, operator_config(lambda *_: scheduler.url)):
        await until(api, lambda: len(live(api)) == 3)
        api.mark_pods_ready(api.ns)
        await until(api, lambda: condition(api, "demo", "Ready").get("status") == "True")
        assert len(live(api)) == 3
    assert pool_token(api, "demo") == "token-from-before"
    schedulers = [
        p
        for p in api.objects("", "v1", "pods", api.ns)
        if p["metadata"]["labels"]["app.kubernetes.io/component"] == "scheduler"
    ]
    assert len(schedulers) == 1


async def test_a_foreign_secret_without_a_token_is_reported_not_overwritten(
    api: ClusterApi, operator: Reconciler
) -> None:
    api.create_object(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "demo-token"},
            "data": {"other": "eA=="},
        }
    )
    api.create_object(workerpool())
    await until(api, lambda: pool_status(api, "demo").get("phase") == "Invalid")
    assert condition(api, "demo", "Degraded")["message"].startswith("Secret/demo-token")
    assert api.objects("", "v1", "pods", api.ns) == []
    secret = api.get_object("", "v1", "secrets", api.ns, "demo-token")
    assert secret is not None and secret["data"] == {"other": "eA=="}


async def test_fixing_the_image_of_a_pool_that_never_started_replaces_its_pods(
    api: ClusterApi, operator: Reconciler
) -> None:
    api.create_object(workerpool(replicas=2, image="registry.example/typo:1"))
    await until(api, lambda: len(live(api)) == 2)  # never ready: the image does not exist
    api.patch_object(
        GROUP, VERSION, PLURAL, api.ns, "demo", {"spec": {"image": "registry.example/memkube:1"}}
    )

    def images() -> set[str]:
        return {
            c["image"]
            for p in worker_pods(api, "demo")
            if not p["metadata"].get("deletionTimestamp")
            for c in p["spec"]["containers"]
        }

    await until(api, lambda: images() == {"registry.example/memkube:1"} and len(live(api)) == 2)
