"""The one exception tree that memkube users catch.

Library errors (aiohttp, OSError, msgpack) are translated at the boundary with
``raise ... from exc``, so callers never need to import aiohttp to handle a failure::

    MemkubeError
    ├── ConfigError (ValueError)        bad memory limit, thresholds, addresses, options
    ├── CommError (ConnectionError)     a scheduler or worker could not be reached
    │   └── AuthenticationError         the token was missing or wrong (HTTP 401)
    ├── ProtocolError                   a malformed, hostile or unknown message
    ├── TaskError                       a task failed remotely and its exception could
    │                                   not be re-raised as its own type
    ├── CancelledError                  the future was cancelled
    ├── DataLostError                   every copy of a key is gone and it cannot be recomputed
    ├── KilledWorkerError               a task took down workers too many times
    ├── TaskMemoryError                 a task needs more memory than any worker has
    ├── TimeoutError (TimeoutError)     an operation did not finish in time
    ├── SpillError                      the spill store could not do its job
    │   ├── SpillCorruptError           a spill file failed its checksum
    │   └── SpillFullError              the disk or the max-spill cap is full
    └── RetireError                     workers cannot be retired without losing data
"""

from __future__ import annotations

import builtins


class MemkubeError(Exception):
    """Base of every error memkube raises on purpose."""


class ConfigError(MemkubeError, ValueError):
    """An option, flag, environment variable or config file value is invalid."""


class CommError(MemkubeError, ConnectionError):
    """A scheduler or worker could not be reached or dropped the connection."""


class AuthenticationError(CommError):
    """The pool's token was missing or wrong."""


class ProtocolError(MemkubeError):
    """A message was malformed, of the wrong type, too large or unknown."""


class TaskError(MemkubeError):
    """A task failed remotely; carries the remote traceback as text."""

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback


class CancelledError(MemkubeError):
    """The future was cancelled before it finished."""


class DataLostError(MemkubeError):
    """Every copy of a key is gone and it has no lineage to recompute it from."""


class KilledWorkerError(MemkubeError):
    """A task was running on workers that died, more times than allowed."""


class TaskMemoryError(MemkubeError):
    """A task needs more memory than any worker of the pool may use: it cannot be run.

    Raised after at most two tries (each stopped by the worker's memory guard before the
    kernel's OOM killer could act); the message names the task, the peak it reached and the
    limit. ``key``, ``peak`` and ``limit`` (bytes) carry the same for programs.
    """

    def __init__(self, message: str, key: str = "", peak: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.key, self.peak, self.limit = key, peak, limit

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.key, self.peak, self.limit))


class TimeoutError(MemkubeError, builtins.TimeoutError):
    """An operation did not finish within its timeout."""


class SpillError(MemkubeError):
    """The spill store failed to write or read a value."""


class SpillCorruptError(SpillError):
    """A spill file failed its checksum: the value must be recomputed, never returned."""


class SpillFullError(SpillError):
    """The disk is full or the max-spill cap is reached: the value stays in memory."""


class RetireError(MemkubeError):
    """Workers cannot be retired: the rest of the pool cannot take their unique data."""
