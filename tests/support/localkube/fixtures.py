"""pytest fixtures: one real control plane per test session, a namespace per test.

``control_plane`` builds or restores the pinned binaries (hack/k8s-binaries.sh; free when
the cache is warm) and starts :class:`~localkube.plane.ControlPlane` in a temporary
directory. Where Go or the module proxy is missing it skips with the reason — except under
``CI=true`` (or ``MEMKUBE_REQUIRE_K8S=1``), where that is a failure: on these machines the
tier must run. ``workerpool_crd`` creates the project's CRD once and waits until the server
serves it. ``namespace`` is a fresh namespace labelled PodSecurity ``restricted``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .api import Kube
from .binaries import ROOT, Unavailable, ensure, required
from .plane import ControlPlane

CRD = ROOT / "operator" / "memkube_operator" / "crds" / "workerpools.memkube.dev.yaml"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    try:
        binaries = ensure()
    except Unavailable as exc:
        if required():
            pytest.fail(f"CI=true: the real control plane must run here, but: {exc}")
        pytest.skip(f"no Kubernetes binaries on this machine: {exc}")
    plane = ControlPlane(tmp_path_factory.mktemp("kube"), binaries).start()
    try:
        yield plane
    finally:
        plane.stop()


def admin(plane: ControlPlane) -> Kube:
    pki = plane.pki
    return Kube(plane.server, pki.ca.cert, cert=(pki.admin.cert, pki.admin.key))


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[Kube]:
    client = admin(control_plane)
    yield client
    client.close()


def establish_crd(kube: Kube, crd: Path = CRD, timeout: float = 60.0) -> str:
    """Create the CRD if absent; return its name once ``Established`` and discoverable."""
    import yaml

    body = yaml.safe_load(crd.read_text())
    name: str = body["metadata"]["name"]
    if kube.get_object("apiextensions.k8s.io", "v1", "customresourcedefinitions", None, name) is None:
        kube.create_object(body)
    group, version = body["spec"]["group"], body["spec"]["versions"][0]["name"]
    deadline = time.monotonic() + timeout
    while True:
        got = kube.get_object("apiextensions.k8s.io", "v1", "customresourcedefinitions", None, name)
        conds = {c["type"]: c["status"] for c in ((got or {}).get("status") or {}).get("conditions") or []}
        if conds.get("Established") == "True":
            try:
                kube.request("GET", f"/apis/{group}/{version}")
                return name
            except Exception:  # noqa: BLE001 - discovery lags establishment briefly
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRD {name} not established: {conds}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def workerpool_crd(kube: Kube) -> str:
    return establish_crd(kube)


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = kube.make_namespace()
    yield name
    kube.delete_namespace(name)
