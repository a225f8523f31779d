"""memkube: memory-limited Python worker pools that spill to disk instead of dying.

Start here: ``memkube.Client()`` (a local pool), ``memkube.Client("tcp://host:8786")``,
``memkube.LocalCluster``. The parts and their contracts: ``docs/internals.md``.
"""

from .client import Client, Future, as_completed, wait
from .errors import (
    CancelledError,
    CommError,
    ConfigError,
    DataLostError,
    KilledWorkerError,
    MemkubeError,
    RetireError,
    TaskError,
    TaskMemoryError,
)
from .local import LocalCluster

__version__ = "0.1.0"


def progress(*args, **kwargs):  # type: ignore[no-untyped-def]
    """A progress bar over futures; see :func:`memkube.diagnostics.progress`."""
    from .diagnostics import progress as _progress

    return _progress(*args, **kwargs)


__all__ = [
    "CancelledError", "Client", "CommError", "ConfigError", "DataLostError", "Future",
    "KilledWorkerError", "LocalCluster", "MemkubeError", "RetireError", "TaskError",
    "TaskMemoryError",
    "as_completed", "progress", "wait",
]
