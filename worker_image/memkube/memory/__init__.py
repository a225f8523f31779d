"""Worker memory management: limits, measurement, a spill-to-disk store and the monitor.

Modules, bottom up (each importable and testable alone):

- ``limits``: ``parse_memory_limit`` and byte sizes; ``cgroup``: the process's own cgroup;
  ``child``: ``ChildCgroup``; ``events``: kernel memory notifications;
- ``sizeof``: managed bytes of a value;
- ``codec`` -> ``files`` -> ``disk`` -> ``buffer``: the spill store, zict-style layers;
- ``policy``: readings -> actions, no I/O; ``config``: ``MemoryConfig``;
- ``manager``: ``WorkerMemory``, what the worker uses.

Never imports the worker, scheduler or client (an import-linter contract checks it).
"""

from .child import ChildCgroup
from .config import MemoryConfig
from .limits import parse_memory_limit
from .manager import MemoryFigures, WorkerMemory
from .sizeof import sizeof

__all__ = [
    "ChildCgroup",
    "MemoryConfig",
    "MemoryFigures",
    "WorkerMemory",
    "parse_memory_limit",
    "sizeof",
]
