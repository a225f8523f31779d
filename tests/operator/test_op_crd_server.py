"""The WorkerPool CRD as the real API server sees it: accepted (structural, CEL rules within
the cost budget), defaults applied, unknown fields pruned, invalid pools refused with the
field named, descriptions served to `kubectl explain`, the status and scale subresources.

No operator runs here: these are the server's own answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml
from localkube import KubeError, ensure
from memkube_operator.crd import CRD_PATH
from opharness import GROUP, PLURAL, VERSION, ClusterApi

CRD = yaml.safe_load(CRD_PATH.read_text())


def pool(name: str = "p", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": spec,
    }


def refusal(api: ClusterApi, body: dict[str, Any]) -> KubeError:
    with pytest.raises(KubeError) as info:
        api.create_object(body)
    assert info.value.status == 422, info.value
    return info.value


async def kubectl(api: ClusterApi, *args: str) -> str:
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


def test_the_server_accepts_the_crd_as_structural(api: ClusterApi) -> None:
    got = api.get_object(
        "apiextensions.k8s.io", "v1", "customresourcedefinitions", None, CRD["metadata"]["name"]
    )
    assert got is not None
    conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert "NonStructuralSchema" not in conditions  # the server would flag a non-structural one
    # What we wrote is what is served: the rules (CEL, within the cost budget, or the create
    # would have been refused) and the subresources.
    served = got["spec"]["versions"][0]
    assert served["subresources"] == CRD["spec"]["versions"][0]["subresources"]
    assert served["schema"] == CRD["spec"]["versions"][0]["schema"]


def test_defaults_are_applied_by_the_server(api: ClusterApi) -> None:
    created = api.create_object(pool())
    spec = created["spec"]
    assert spec["replicas"] == 2
    worker = spec["worker"]
    assert worker["memoryLimit"] == "2Gi"
    assert worker["cpu"] == "1" and worker["cpuLimit"] is True
    assert worker["thresholds"] == {"target": 0.6, "spill": 0.7, "pause": 0.8, "terminate": 0.95}
    assert worker["spill"]["medium"] == "Disk" and worker["spill"]["size"] == "10Gi"
    assert worker["spill"]["compression"] == "auto"
    assert spec["replication"]["factor"] == 1
    assert spec["scheduler"]["memory"] == "1Gi" and spec["scheduler"]["serviceType"] == "ClusterIP"


def test_unknown_fields_are_pruned(api: ClusterApi) -> None:
    body = pool(replicas=1, bogus=True, worker={"memoryLimit": "1Gi", "typo": 3})
    api.create_object(body)
    stored = api.get_object(GROUP, VERSION, PLURAL, api.ns, "p")
    assert stored is not None
    assert "bogus" not in stored["spec"] and "typo" not in stored["spec"]["worker"]
    assert stored["spec"]["worker"]["memoryLimit"] == "1Gi"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"replicas": -1}, "spec.replicas"),
        ({"replicas": 1001}, "spec.replicas"),
        ({"worker": {"memoryLimit": "lots"}}, "spec.worker.memoryLimit"),
        ({"worker": {"spill": {"medium": "Tape"}}}, "spec.worker.spill.medium"),
        ({"worker": {"thresholds": {"target": 1.5}}}, "spec.worker.thresholds.target"),
        ({"worker": {"thresholds": {"spill": 0.9, "pause": 0.5}}}, "spec.worker.thresholds"),
        ({"replicas": 1, "replication": {"factor": 3}}, "spec.replication.factor"),
    ],
)
def test_invalid_pools_are_refused_with_the_field_named(
    api: ClusterApi, spec: dict[str, Any], field: str
) -> None:
    error = refusal(api, pool(**spec))
    fields = [c.get("field", "") for c in error.causes]
    assert any(f == field or f.startswith(field + "[") for f in fields), (fields, error)
    assert api.get_object(GROUP, VERSION, PLURAL, api.ns, "p") is None


def test_status_is_a_subresource(api: ClusterApi) -> None:
    api.create_object(pool(replicas=1))
    # Through the main resource, status is ignored; through /status, it is kept.
    api.patch_object(GROUP, VERSION, PLURAL, api.ns, "p", {"status": {"phase": "Running"}})
    stored = api.get_object(GROUP, VERSION, PLURAL, api.ns, "p") or {}
    assert "status" not in stored or stored["status"].get("phase") != "Running"
    api.patch_object(
        GROUP, VERSION, PLURAL, api.ns, "p", {"status": {"phase": "Running"}}, subresource="status"
    )
    stored = api.get_object(GROUP, VERSION, PLURAL, api.ns, "p") or {}
    assert stored["status"]["phase"] == "Running"
    assert stored["metadata"]["generation"] == 1  # status writes do not bump the generation


def test_scale_subresource_reads_spec_and_status(api: ClusterApi) -> None:
    api.create_object(pool(replicas=3))
    api.patch_object(
        GROUP,
        VERSION,
        PLURAL,
        api.ns,
        "p",
        {"status": {"replicas": 2, "selector": "memkube.dev/pool=p"}},
        subresource="status",
    )
    scale = api.request("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{api.ns}/{PLURAL}/p/scale")
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 3
    assert scale["status"] == {"replicas": 2, "selector": "memkube.dev/pool=p"}
    api.scale("p", 5)
    assert (api.get_object(GROUP, VERSION, PLURAL, api.ns, "p") or {})["spec"]["replicas"] == 5


async def test_kubectl_explain_shows_the_descriptions(api: ClusterApi) -> None:
    out = await kubectl(api, "explain", "wp.spec.worker")
    worker = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["worker"]
    assert " ".join(worker["description"].split()) in " ".join(out.split())
    for name, prop in worker["properties"].items():
        assert name in out
        # kubectl wraps the text; compare the first words of each description.
        first = " ".join(prop["description"].split()[:4])
        assert first in " ".join(out.split()), (name, first)


async def test_kubectl_get_shows_the_printer_columns(api: ClusterApi) -> None:
    api.create_object(pool(replicas=3, worker={"memoryLimit": "4Gi", "spill": {"size": "8Gi"}}))
    api.patch_object(
        GROUP,
        VERSION,
        PLURAL,
        api.ns,
        "p",
        {"status": {"replicas": 3, "readyReplicas": 1, "phase": "Scaling"}},
        subresource="status",
    )
    header, row = (await kubectl(api, "get", "wp", "p")).splitlines()
    columns = [c["name"].upper() for c in CRD["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert header.split() == ["NAME", *columns]
    assert row.split()[:7] == ["p", "3", "1", "4Gi", "Disk", "8Gi", "Scaling"]
    out = await kubectl(api, "scale", "wp/p", "--replicas=1")
    assert "scaled" in out
    out = await kubectl(api, "delete", "wp", "p")
    assert "deleted" in out
    assert api.get_object(GROUP, VERSION, PLURAL, api.ns, "p") is None
