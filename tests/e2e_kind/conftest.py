"""Fixtures for the kind end-to-end tier: a real cluster, the real image, the real chart.

`make e2e` runs it on this kind of machine: it builds everything the cluster needs here
(hack/e2e.sh), creates the cluster and passes it in. Where Docker, kind, helm and kubectl
exist already (a laptop, the GitHub workflow with upstream kind images)::

    pytest tests/e2e_kind --kind

creates the cluster from hack/kind/cluster.yaml itself. Without `--kind` (or
MEMKUBE_E2E_KIND=1) every test here is skipped and says so; with it, a missing tool or
Docker engine is an error, never a skip.

Environment knobs: MEMKUBE_E2E_CLUSTER (reuse an existing kind cluster of that name and keep
it afterwards), MEMKUBE_E2E_KEEP=1 (keep the cluster this run creates, to inspect a failure),
MEMKUBE_E2E_IMAGE (an image already built; skips `docker build`), MEMKUBE_E2E_ARTIFACTS (where
the pods' logs go when a test fails; default .e2e-artifacts/ in the checkout).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib: this tier's helper modules sit beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kubetools import Kube, dump_cluster_state, missing_tools, restricted_namespace, run

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "memkube-e2e"
RELEASE, OPERATOR_NS = "memkube", "memkube-system"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kind",
        action="store_true",
        default=False,
        help="run the kind end-to-end tests (needs docker, kind, helm, kubectl)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kind: needs a kind cluster (run with --kind)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests that need a cluster unless asked for and possible, saying why."""
    mine = [item for item in items if item.get_closest_marker("kind")]
    if not mine:
        return
    wanted = _option(config) or os.environ.get("MEMKUBE_E2E_KIND") == "1"
    reason = None
    if not wanted:
        reason = "kind e2e not requested: `make e2e`, or `pytest tests/e2e_kind --kind`"
    else:
        missing = missing_tools()
        if missing:
            raise pytest.UsageError("kind e2e requested but this machine lacks " + ", ".join(missing))
    if reason:
        for item in mine:
            item.add_marker(pytest.mark.skip(reason=reason))


def _option(config: pytest.Config) -> bool:
    try:
        return bool(config.getoption("--kind"))
    except ValueError:  # the option is registered only when this folder is on the command line
        return False


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """A kind cluster (created here unless MEMKUBE_E2E_CLUSTER names one) and its kubeconfig."""
    name = os.environ.get("MEMKUBE_E2E_CLUSTER", CLUSTER)
    reuse = "MEMKUBE_E2E_CLUSTER" in os.environ
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    if not reuse:
        run(
            [
                "kind",
                "create",
                "cluster",
                "--name",
                name,
                "--config",
                str(ROOT / "hack" / "kind" / "cluster.yaml"),
                "--wait",
                "300s",
                "--kubeconfig",
                str(kubeconfig),
            ],
            timeout=600,
        )
    else:
        kubeconfig.write_text(run(["kind", "get", "kubeconfig", "--name", name]))
    try:
        yield Kube(kubeconfig)
    finally:
        if not reuse and os.environ.get("MEMKUBE_E2E_KEEP") != "1":
            subprocess.run(["kind", "delete", "cluster", "--name", name], timeout=300, check=False)


@pytest.fixture(scope="session")
def image(kube: Kube) -> str:
    """The memkube image, built from this checkout and loaded into the kind node."""
    tag = os.environ.get("MEMKUBE_E2E_IMAGE")
    if not tag:
        tag = "memkube:e2e"
        run(["docker", "build", "-t", tag, str(ROOT)], timeout=1200)
    name = os.environ.get("MEMKUBE_E2E_CLUSTER", CLUSTER)
    run(["kind", "load", "docker-image", tag, "--name", name], timeout=600)
    return tag


@pytest.fixture(scope="session")
def operator(kube: Kube, image: str) -> str:
    """`helm upgrade --install` of charts/memkube with the freshly built image; its namespace."""
    repository, _, tag = image.rpartition(":")
    kube.apply(restricted_namespace(OPERATOR_NS))
    kube.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(ROOT / "charts" / "memkube"),
        "--namespace",
        OPERATOR_NS,
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Never",
        "--wait",
        "--timeout",
        "5m",
    )
    return OPERATOR_NS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """When a test fails with a cluster at hand, keep every pod's logs and the cluster's state."""
    outcome = yield
    report = outcome.get_result()
    kube = getattr(item, "funcargs", {}).get("kube")
    if report.failed and isinstance(kube, Kube):
        base = Path(os.environ.get("MEMKUBE_E2E_ARTIFACTS", ROOT / ".e2e-artifacts"))
        dest = base / item.name
        dump_cluster_state(kube, dest)
        report.sections.append(("kind artifacts", f"pod logs and cluster state in {dest}"))
