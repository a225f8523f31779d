"""The memkube scheduler: state machine (:mod:`.state`) and aiohttp shell (:mod:`.server`)."""

from .server import Scheduler
from .state import SchedulerState

__all__ = ["Scheduler", "SchedulerState"]
