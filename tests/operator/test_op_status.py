"""Status derivation: counts, phase and conditions with stable transition times."""

from __future__ import annotations

from typing import Any

from memkube_operator.observe import PodView
from memkube_operator.plan import Plan, plan
from memkube_operator.status import Observation, derive_status, invalid_status
from memkube_operator.translate import DerivedStatus

DERIVED = DerivedStatus(
    memoryLimit="1Gi",
    memoryOverhead="256Mi",
    podMemory="1280Mi",
    cpu="1",
    threads=1,
    maxSpill="9728Mi",
    ephemeralStorage="10496Mi",
    spillVolume="emptyDir",
    qosClass="Guaranteed",
)


def worker(name: str, ready: bool = True) -> PodView:
    return PodView(
        name=name,
        phase="Running",
        ready=ready,
        started=True,
        deleting=False,
        spec_hash="h",
        created=name,
        restart_count=0,
        last_oom=False,
    )


def observe(
    pods: list[PodView],
    replicas: int = 2,
    *,
    snapshot: dict[str, Any] | None = None,
    scheduler_ready: bool = True,
    error: str | None = None,
    step: Plan | None = None,
    new_ooms: tuple[str, ...] = (),
) -> Observation:
    return Observation(
        pool="demo",
        namespace="ns",
        generation=3,
        replicas=replicas,
        desired_hash="h",
        workers=pods,
        scheduler_ready=scheduler_ready,
        snapshot=snapshot,
        scheduler_error=error,
        plan=step or plan(replicas, "h", pods, max_creates=50),
        oom_kills=len(new_ooms),
        new_ooms=new_ooms,
    )


def conditions(status: Any) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


SNAPSHOT = {
    "memory": {"managed": 10, "unmanaged": 5, "spilled": 7},
    "workers": [{"name": "a", "status": "running", "memory": {"state": "normal"}}],
}


def test_a_converged_pool_is_running_and_ready() -> None:
    status = derive_status(
        observe([worker("a"), worker("b")], snapshot=SNAPSHOT), DERIVED, {}, now="T1"
    )
    assert status["phase"] == "Running"
    assert (status["replicas"], status["readyReplicas"], status["observedGeneration"]) == (2, 2, 3)
    assert status["selector"] == "memkube.dev/pool=demo,app.kubernetes.io/component=worker"
    assert status["memory"] == {"managed": 10, "unmanaged": 5, "spilled": 7}
    assert status["schedulerAddress"] == "tcp://demo-scheduler.ns.svc:8786"
    assert conditions(status) == {
        "Ready": ("True", "AllWorkersReady"),
        "Progressing": ("False", "Converged"),
        "MemoryPressure": ("False", "BelowThresholds"),
        "Degraded": ("False", "Healthy"),
    }


def test_transition_times_stay_while_the_status_holds() -> None:
    first = derive_status(observe([worker("a"), worker("b")]), DERIVED, {}, now="T1")
    second = derive_status(observe([worker("a"), worker("b")]), DERIVED, dict(first), now="T2")
    assert {c["lastTransitionTime"] for c in second["conditions"]} == {"T1"}
    third = derive_status(
        observe([worker("a"), worker("b", ready=False)]), DERIVED, dict(second), now="T3"
    )
    times = {c["type"]: c["lastTransitionTime"] for c in third["conditions"]}
    assert times["Ready"] == "T3"
    assert times["Degraded"] == "T1"


def test_scale_down_waiting_for_the_scheduler_is_a_condition() -> None:
    pods = [worker("a"), worker("b"), worker("c")]
    status = derive_status(observe(pods, error="CommError: unreachable"), DERIVED, {}, now="T")
    assert status["phase"] == "Scaling"
    assert conditions(status)["Progressing"] == ("True", "ScaleDownWaiting")
    message = next(c["message"] for c in status["conditions"] if c["type"] == "Progressing")
    assert "nothing deleted" in message


def test_paused_workers_mean_memory_pressure() -> None:
    snapshot = {"memory": {}, "workers": [{"name": "a", "status": "paused", "memory": {}}]}
    status = derive_status(
        observe([worker("a"), worker("b")], snapshot=snapshot), DERIVED, {}, now="T"
    )
    assert conditions(status)["MemoryPressure"] == ("True", "WorkersPaused")


def test_oom_kills_degrade_the_pool() -> None:
    status = derive_status(
        observe([worker("a"), worker("b")], new_ooms=("a",)), DERIVED, {}, now="T"
    )
    assert status["phase"] == "Degraded"
    assert status["oomKills"] == 1
    assert conditions(status)["Degraded"] == ("True", "OOMKilled")


def test_invalid_spec_status_names_the_field_and_keeps_other_conditions() -> None:
    previous = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "AllWorkersReady",
                "message": "",
                "lastTransitionTime": "T0",
            }
        ]
    }
    patch = invalid_status("spec.worker.memoryLimit", "too small", previous, generation=4, now="T")
    assert patch["phase"] == "Invalid"
    by_type = {c["type"]: c for c in patch["conditions"]}
    assert by_type["Degraded"]["message"] == "spec.worker.memoryLimit: too small"
    assert by_type["Ready"]["status"] == "True"  # the existing pods keep serving
