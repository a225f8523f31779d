"""Suite-wide: worker processes that tests start unpickle test functions by reference, so
they get the same import path as the tests (``tests/support``)."""

import os
from pathlib import Path

_SUPPORT = str(Path(__file__).parent / "support")
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_SUPPORT, os.environ.get("PYTHONPATH", "")) if p)

# The real control plane (tests/support/localkube): one per session, started on first use.
from localkube.fixtures import control_plane, kube, namespace, workerpool_crd  # noqa: E402,F401
