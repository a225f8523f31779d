"""The memkube client: :class:`Client` and :class:`Future`."""

from .client import Client
from .futures import Future
from .waiting import as_completed, wait

__all__ = ["Client", "Future", "as_completed", "wait"]
