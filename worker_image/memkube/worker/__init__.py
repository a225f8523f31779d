"""The memkube worker: see :mod:`memkube.worker.worker`."""

from .worker import EXIT_MEMORY_RESTART, Worker

__all__ = ["EXIT_MEMORY_RESTART", "Worker"]
