"""kubectl against the API double, the way a user drives the operator."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from apidouble import ApiDouble
from memkube_operator.crd import CRD_PATH
from opcases import EXAMPLE
from opharness import (
    NS,
    FakeScheduler,
    operator_config,
    pool_status,
    pool_token,
    running_operator,
    until,
    worker_pods,
)

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")


async def kubectl(api: ApiDouble, *args: str) -> str:
    """Run kubectl without blocking the loop the double serves on."""
    process = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        str(api.kubeconfig_path),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()


def live(api: ApiDouble) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in worker_pods(api, "etl")
        if not p["metadata"].get("deletionTimestamp")
    ]


async def test_apply_get_scale_delete_with_kubectl() -> None:
    async with ApiDouble() as api:
        scheduler = FakeScheduler(api, "etl", lambda: pool_token(api, "etl"))
        await scheduler.start()
        try:
            out = await kubectl(api, "apply", "-f", str(CRD_PATH))
            assert "workerpools.memkube.dev created" in out
            async with running_operator(api, operator_config(lambda *_: scheduler.url)):
                out = await kubectl(api, "apply", "-f", str(EXAMPLE))
                assert "workerpool.memkube.dev/etl created" in out
                await until(api, lambda: len(live(api)) == 4)
                api.mark_pods_ready(NS)
                await until(api, lambda: pool_status(api, "etl").get("phase") == "Running")

                table = (await kubectl(api, "get", "wp")).splitlines()
                assert table[0].split() == [
                    "NAME",
                    "WORKERS",
                    "READY",
                    "MEMORY",
                    "SPILL",
                    "SPILL-SIZE",
                    "PHASE",
                    "AGE",
                ]
                assert table[1].split()[:7] == ["etl", "4", "4", "8Gi", "Disk", "40Gi", "Running"]

                out = await kubectl(api, "scale", "wp/etl", "--replicas=2")
                assert "scaled" in out
                await until(api, lambda: len(live(api)) == 2)
                assert scheduler.retire_calls == [{"n": 2}]
                await until(api, lambda: pool_status(api, "etl").get("readyReplicas") == 2)
                row = (await kubectl(api, "get", "workerpool", "etl")).splitlines()[1].split()
                assert row[1:3] == ["2", "2"]

                out = await kubectl(api, "delete", "-f", str(EXAMPLE))
                assert "deleted" in out
                await until(api, lambda: api.objects("", "v1", "pods", NS) == [])
                assert api.get_object("", "v1", "secrets", NS, "etl-token") is None
        finally:
            await scheduler.stop()
