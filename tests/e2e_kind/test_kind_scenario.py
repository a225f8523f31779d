"""The kind scenarios, checked where no cluster exists: their manifests are valid and their
numbers really force spilling and an OOM kill. (The API server admitting them is what the
kind tier itself checks; the CRD on the real server is tests/operator's.)"""

from __future__ import annotations

import kubernetes_validate
import pytest
from scenario import (
    BLOCK,
    BLOCKS,
    NS,
    POD_MEMORY,
    SPILL_SIZE,
    WORKER_MEMORY,
    WORKERS,
    e2e_pool,
    plain_pod,
)

IMAGE = "memkube:e2e"
MI = 2**20


def _mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_the_numbers_force_spilling_and_an_oom_kill() -> None:
    data = BLOCK * BLOCKS // MI
    assert data > WORKERS * _mebibytes(WORKER_MEMORY)  # the pool must spill to hold it
    assert data > _mebibytes(POD_MEMORY)  # a plain pod with a worker's limit cannot
    # Two copies of everything (replication factor 2) still fit the spill disks after
    # scale-down to two workers.
    assert 2 * data < (WORKERS - 1) * _mebibytes(SPILL_SIZE)


def test_the_operator_translates_the_pool_as_the_e2e_expects() -> None:
    render = pytest.importorskip("memkube_operator.cli").render_objects
    defaults = pytest.importorskip("memkube_operator.settings").PodDefaults(image=IMAGE)
    objects = render([e2e_pool(IMAGE)], NS, defaults)
    workers = [o for o in objects if o["metadata"].get("generateName", "").endswith("-worker-")]
    assert len(workers) == WORKERS
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
    resources = workers[0]["spec"]["containers"][0]["resources"]
    assert resources["limits"]["memory"] == resources["requests"]["memory"] == POD_MEMORY
    spill = next(v for v in workers[0]["spec"]["volumes"] if v["name"] == "spill")
    assert spill["emptyDir"]["sizeLimit"] == SPILL_SIZE
    # Small enough for a hosted runner: every pod's memory together under 3 GiB.
    total = sum(
        _mebibytes(c["resources"]["limits"]["memory"])
        for o in objects
        if o["kind"] == "Pod"
        for c in o["spec"]["containers"]
    )
    assert total < 3 * 1024


def test_the_plain_pod_is_valid_and_restricted() -> None:
    pod = plain_pod(IMAGE)
    kubernetes_validate.validate(pod, "1.30.0", strict=True)
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"]["memory"] == POD_MEMORY
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_fault_pools_force_an_oom_kill_only_without_the_memory_manager() -> None:
    from scenario import OOM_BLOCKS, small_pool

    assert OOM_BLOCKS * BLOCK // MI > _mebibytes(POD_MEMORY)  # more than the pod may hold
    off, on = small_pool(IMAGE, "off", 1, False), small_pool(IMAGE, "on", 1, True)
    assert off["spec"]["worker"]["thresholds"] == dict.fromkeys(
        ("target", "spill", "pause", "terminate")
    )
    assert on["spec"]["worker"]["thresholds"] == e2e_pool(IMAGE)["spec"]["worker"]["thresholds"]
    # Spilling must be able to take everything the default pool is given.
    assert OOM_BLOCKS * BLOCK // MI < _mebibytes(on["spec"]["worker"]["spill"]["size"])
    render = pytest.importorskip("memkube_operator.cli").render_objects
    defaults = pytest.importorskip("memkube_operator.settings").PodDefaults(image=IMAGE)
    for obj in render([off, on], off["metadata"]["namespace"], defaults):
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
