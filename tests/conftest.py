"""Suite-wide: worker processes that tests start unpickle test functions by reference, so
they get the same import path as the tests (``tests/support``)."""

import os
from pathlib import Path

_SUPPORT = str(Path(__file__).parent / "support")
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_SUPPORT, os.environ.get("PYTHONPATH", "")) if p)


import pytest

# The real control plane (tests/support/localkube): one per session, started on first use.
from localkube.fixtures import (  # noqa: F401
    control_plane,
    k8s_binaries,
    kube,
    namespace,
    workerpool_crd,
)


@pytest.fixture(autouse=True)
def _fresh_log_limits() -> None:
    """Servers rate-limit repeated log records process-wide; each test starts with a fresh
    allowance so a test reading its own log lines does not depend on the tests before it."""
    from memkube.serving import LOG_LIMITS

    LOG_LIMITS.reset()
