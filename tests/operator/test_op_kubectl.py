"""kubectl (the pinned build, hack/versions.env) against the real API server, the way a user
drives the operator: apply, get (printer columns), scale (scale subresource), delete
(garbage collection). Pod readiness is written by the test, as a kubelet would."""

from __future__ import annotations

import asyncio

from localkube import ensure
from memkube_operator.crd import CRD_PATH
from opcases import EXAMPLE
from opharness import (
    ClusterApi,
    FakeScheduler,
    operator_config,
    pool_status,
    pool_token,
    running_operator,
    until,
    worker_pods,
)


async def kubectl(api: ClusterApi, *args: str) -> str:
    """Run kubectl in the test's namespace without blocking the loop."""
    process = await asyncio.create_subprocess_exec(
        str(ensure(build=False).path("kubectl")),
        "--kubeconfig",
        str(api.kubeconfig_path),
        "--namespace",
        api.ns,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()


def live(api: ClusterApi) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in worker_pods(api, "etl")
        if not p["metadata"].get("deletionTimestamp")
    ]


async def test_apply_get_scale_delete_with_kubectl(api: ClusterApi) -> None:
    if True:
        scheduler = FakeScheduler(api, "etl", lambda: pool_token(api, "etl"))
        await scheduler.start()
        try:
            out = await kubectl(api, "apply", "-f", str(CRD_PATH))  # the session created it
            assert "customresourcedefinition.apiextensions.k8s.io/workerpools.memkube.dev" in out
            async with running_operator(api, operator_config(lambda *_: scheduler.url)):
                out = await kubectl(api, "apply", "-f", str(EXAMPLE))
                assert "workerpool.memkube.dev/etl created" in out
                await until(api, lambda: len(live(api)) == 4)
                api.mark_pods_ready(api.ns)
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
                # The garbage collector removes the children through their ownerReferences.
                await until(
                    api,
                    lambda: (
                        api.objects("", "v1", "pods", api.ns) == []
                        and api.get_object("", "v1", "secrets", api.ns, "etl-token") is None
                    ),
                    timeout=60,
                )
        finally:
            await scheduler.stop()
