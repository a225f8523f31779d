"""Creating a CustomResourceDefinition and waiting until the server serves it."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from .api import Kube, KubeError
from .binaries import ROOT

WORKERPOOL_CRD = ROOT / "operator" / "memkube_operator" / "crds" / "workerpools.memkube.dev.yaml"


def establish_crd(kube: Kube, crd: Path = WORKERPOOL_CRD, timeout: float = 60.0) -> str:
    """Create the CRD if absent; return its name once ``Established`` and discoverable."""
    body = yaml.safe_load(crd.read_text())
    name: str = body["metadata"]["name"]
    if (
        kube.get_object("apiextensions.k8s.io", "v1", "customresourcedefinitions", None, name)
        is None
    ):
        kube.create_object(body)
    group, version = body["spec"]["group"], body["spec"]["versions"][0]["name"]
    deadline = time.monotonic() + timeout
    while True:
        got = kube.get_object("apiextensions.k8s.io", "v1", "customresourcedefinitions", None, name)
        conds = {
            c["type"]: c["status"]
            for c in ((got or {}).get("status") or {}).get("conditions") or []
        }
        if conds.get("Established") == "True":
            try:
                kube.request("GET", f"/apis/{group}/{version}")
                return name
            except KubeError:  # discovery lags establishment briefly
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRD {name} not established: {conds}")
        time.sleep(0.1)
