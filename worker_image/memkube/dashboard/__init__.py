"""The scheduler's dashboard and the Prometheus metrics of scheduler and workers.

- ``setup_dashboard(app, snapshot, auth)`` adds ``/dashboard/`` (a self-contained page:
  per-worker memory bars, pool totals, task progress, spill rates, a timeline of memory
  events), its login flow and its live JSON feed to an aiohttp app (``routes``).
- ``metrics.render_scheduler_metrics`` / ``metrics.render_worker_metrics`` produce the
  Prometheus text of ``GET /metrics``.

Everything here is fed by the pool snapshot and the memory figures of ``docs/internals.md``;
nothing here talks to workers or holds pool state beyond rates and a short memory history.
"""

from .routes import setup_dashboard

__all__ = ["setup_dashboard"]
