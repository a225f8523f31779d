"""Pure builders: the translation, the worker flags, security, and schema validity."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_validate import validate
from memkube.quantity import parse_bytes
from memkube_operator import naming
from memkube_operator.builders import build_all, build_worker_pod
from memkube_operator.builders.worker import worker_resources
from memkube_operator.settings import PodDefaults
from memkube_operator.spec import SpecError, parse_pool
from opcases import pool_body

MEDIA = ["Disk", "Memory", "PersistentVolume", "None"]


def _container(pod: Any) -> dict[str, Any]:
    (container,) = pod["spec"]["containers"]
    found: dict[str, Any] = container
    return found


def _flags(pod: Any) -> dict[str, str]:
    command = _container(pod)["command"]
    return dict(zip(command[3::2], command[4::2], strict=True))


def _pool(medium: str = "Disk", **worker: Any) -> Any:
    spec_worker = {"memoryLimit": "4Gi", "spill": {"medium": medium, "size": "20Gi"}, **worker}
    return parse_pool(pool_body(replicas=3, worker=spec_worker))


@pytest.mark.parametrize("version", ["1.28.0", "1.33.0"])
@pytest.mark.parametrize("medium", MEDIA)
def test_every_built_object_validates_strictly(version: str, medium: str) -> None:
    pool = _pool(medium, cpuLimit=medium != "Memory", env=[{"name": "A", "value": "b"}])
    objects = build_all(pool, PodDefaults(), "secret-token")
    assert [o["kind"] for o in objects] == ["Secret", "Pod", "Service", "Pod", "Pod", "Pod"]
    for obj in objects:
        validate(dict(obj), version, strict=True)


@pytest.mark.parametrize("version", ["1.28.0", "1.33.0"])
def test_example_objects_validate_strictly(version: str, example: dict[str, Any]) -> None:
    for obj in build_all(parse_pool(example), PodDefaults(), "t"):
        validate(dict(obj), version, strict=True)


def test_worker_command_follows_the_worker_cli_contract() -> None:
    pod = build_worker_pod(_pool(), PodDefaults())
    command = _container(pod)["command"]
    assert command[:3] == ["memkube", "worker", "tcp://demo-scheduler.ns.svc:8786"]
    assert _flags(pod) == {
        "--name": "$(POD_NAME)",
        "--host": "0.0.0.0",
        "--port": "8788",
        "--contact-address": "tcp://$(POD_IP):8788",
        "--nthreads": "1",
        "--memory-limit": "4Gi",
        "--memory-target": "0.6",
        "--memory-spill": "0.7",
        "--memory-pause": "0.8",
        "--memory-terminate": "0.95",
        "--max-spill": "19Gi",
        "--spill-dir": "/spill",
        "--spill-compression": "auto",
    }


def test_disk_spill_is_a_sized_emptydir_with_matching_ephemeral_storage() -> None:
    pod = build_worker_pod(_pool("Disk"), PodDefaults(scratch_size="256Mi"))
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["spill"] == {"name": "spill", "emptyDir": {"sizeLimit": "20Gi"}}
    resources = _container(pod)["resources"]
    assert resources["requests"] == resources["limits"]
    storage = parse_bytes(resources["limits"]["ephemeral-storage"])
    assert storage == 20 * 2**30 + 256 * 2**20
    # 4Gi limit + default overhead max(256Mi, 10%) = 4Gi + 410Mi
    assert parse_bytes(resources["limits"]["memory"]) == 4 * 2**30 + 410 * 2**20


def test_memory_spill_counts_against_the_pod() -> None:
    pod = build_worker_pod(_pool("Memory", memoryOverhead="512Mi"), PodDefaults())
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["spill"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "20Gi"}
    limits = _container(pod)["resources"]["limits"]
    assert parse_bytes(limits["memory"]) == 4 * 2**30 + 512 * 2**20 + 20 * 2**30


def test_persistent_volume_spill_is_a_generic_ephemeral_volume() -> None:
    pool = _pool(
        "PersistentVolume",
        spill={"medium": "PersistentVolume", "size": "50Gi", "storageClassName": "fast-ssd"},
    )
    pod = build_worker_pod(pool, PodDefaults())
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    claim = volumes["spill"]["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "50Gi"
    assert claim["storageClassName"] == "fast-ssd"
    assert _flags(pod)["--max-spill"] == f"{50 * 1024 * 95 // 100}Mi"  # 95% of 50Gi


def test_a_retired_worker_stays_down_but_failures_restart() -> None:
    pod = build_worker_pod(_pool(), PodDefaults())
    assert pod["spec"]["restartPolicy"] == "OnFailure"


def test_no_spill_disables_target_and_spill_and_mounts_nothing() -> None:
    pod = build_worker_pod(_pool("None"), PodDefaults())
    flags = _flags(pod)
    assert flags["--memory-target"] == flags["--memory-spill"] == "none"
    assert "--max-spill" not in flags
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["scratch"]


def test_guaranteed_qos_unless_cpu_limit_is_off() -> None:
    guaranteed = _container(build_worker_pod(_pool(cpu="2"), PodDefaults()))["resources"]
    assert guaranteed["requests"] == guaranteed["limits"]
    assert guaranteed["limits"]["cpu"] == "2"
    burstable = _container(build_worker_pod(_pool(cpuLimit=False), PodDefaults()))["resources"]
    assert "cpu" not in burstable["limits"]
    assert burstable["requests"]["memory"] == burstable["limits"]["memory"]
    assert worker_resources(_pool(cpuLimit=False), PodDefaults()).qos_class == "Burstable"


def test_pods_are_locked_down_and_get_their_identity_from_the_downward_api() -> None:
    pool = _pool()
    for pod in [o for o in build_all(pool, PodDefaults(), "t") if o["kind"] == "Pod"]:
        spec = pod["spec"]
        container = _container(pod)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }
        env = {e["name"]: e.get("valueFrom") for e in container["env"]}
        assert env["MEMKUBE_TOKEN"] == {"secretKeyRef": {"name": "demo-token", "key": "token"}}
        assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
        assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert pod["metadata"]["ownerReferences"] == [naming.owner_reference("demo", "uid-1")]


def test_the_token_is_never_inline() -> None:
    objects = build_all(_pool(), PodDefaults(), "very-secret-token", "metrics-secret")
    pods = repr([o for o in objects if o["kind"] != "Secret"])
    assert "very-secret-token" not in pods and "metrics-secret" not in pods


def test_scheduler_and_workers_read_the_metrics_token_from_the_pool_secret() -> None:
    objects = build_all(_pool(), PodDefaults(), "t", "m-token")
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    assert secret["data"] == {"token": "dA==", "metrics-token": "bS10b2tlbg=="}
    pods = [o for o in objects if o["kind"] == "Pod"]
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods}
    assert components == {"scheduler", "worker"}
    for pod in pods:
        env = {e["name"]: e.get("valueFrom") for e in _container(pod)["env"]}
        assert env["MEMKUBE_METRICS_TOKEN"] == {
            "secretKeyRef": {"name": "demo-token", "key": "metrics-token", "optional": True}
        }


def test_without_a_metrics_token_the_secret_holds_only_the_pool_token() -> None:
    (secret,) = [o for o in build_all(_pool(), PodDefaults(), "t") if o["kind"] == "Secret"]
    assert secret["data"] == {"token": "dA=="}


def test_the_metrics_token_cannot_be_overridden_through_the_worker_env() -> None:
    with pytest.raises(SpecError, match="MEMKUBE_METRICS_TOKEN"):
        _pool(env=[{"name": "MEMKUBE_METRICS_TOKEN", "value": "x"}])


def test_spec_hash_moves_only_with_what_changes_the_pod() -> None:
    def digest(pool: Any, defaults: PodDefaults | None = None) -> str:
        return build_worker_pod(pool, defaults or PodDefaults())["metadata"]["annotations"][
            naming.SPEC_HASH_ANNOTATION
        ]

    base = digest(_pool())
    assert (
        digest(
            parse_pool(
                pool_body(replicas=7, worker={"memoryLimit": "4Gi", "spill": {"size": "20Gi"}})
            )
        )
        == base
    )
    assert digest(_pool(memoryLimit="5Gi")) != base
    assert digest(_pool(), PodDefaults(image="other:1")) != base


def test_pod_template_places_pods_without_overriding_operator_labels() -> None:
    body = pool_body(
        podTemplate={
            "labels": {naming.POOL_LABEL: "hijack", "team": "a"},
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "priorityClassName": "high",
        }
    )
    pod = build_worker_pod(parse_pool(body), PodDefaults())
    assert pod["metadata"]["labels"][naming.POOL_LABEL] == "demo"
    assert pod["metadata"]["labels"]["team"] == "a"
    assert pod["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert pod["spec"]["priorityClassName"] == "high"
