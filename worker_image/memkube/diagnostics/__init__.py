"""Client-side views of the pool: a progress bar over futures and a memory report.

- ``progress(futures)``: a text (tqdm) bar advancing as futures finish.
- ``format_memory_report(snapshot)``: the per-worker memory table ``client.memory_report()``
  prints.

Not covered: the browser dashboard and ``/metrics`` (``memkube.dashboard``).
"""

from .memory_report import format_memory_report
from .progress import Progress, progress

__all__ = ["Progress", "format_memory_report", "progress"]
