"""pytest fixtures: one real control plane per test session, a namespace per test.

``control_plane`` builds or restores the pinned binaries (hack/k8s-binaries.sh; free when
the cache is warm) and starts :class:`~localkube.plane.ControlPlane` in a temporary
directory. Where Go or the module proxy is missing it skips with the reason — except under
``CI=true`` (or ``MEMKUBE_REQUIRE_K8S=1``), where that is a failure: on these machines the
tier must run. ``workerpool_crd`` creates the project's CRD once and waits until the server
serves it. ``namespace`` is a fresh namespace labelled PodSecurity ``restricted``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .api import Kube
from .binaries import Binaries, Unavailable, ensure, required
from .crds import WORKERPOOL_CRD, establish_crd
from .plane import ControlPlane


@pytest.fixture(scope="session")
def k8s_binaries() -> Binaries:
    """The pinned binaries, built or restored; a skip where they cannot be (a failure in CI)."""
    try:
        return ensure()
    except Unavailable as exc:
        if required():
            pytest.fail(f"CI=true: the real control plane must run here, but: {exc}")
        pytest.skip(f"no Kubernetes binaries on this machine: {exc}")


@pytest.fixture(scope="session")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory, k8s_binaries: Binaries
) -> Iterator[ControlPlane]:
    plane = ControlPlane(
        tmp_path_factory.mktemp("kube"), k8s_binaries, crds=(WORKERPOOL_CRD,)
    ).start()
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


@pytest.fixture(scope="session")
def workerpool_crd(kube: Kube) -> str:
    return establish_crd(kube)


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = kube.make_namespace()
    yield name
    kube.delete_namespace(name)
