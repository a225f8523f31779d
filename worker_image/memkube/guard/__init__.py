"""The memory guard: a small process that supervises the worker from outside its interpreter.

``memkube worker`` runs :func:`~.supervisor.supervise`, which starts the real worker as a
child and watches its memory (:mod:`.policy` decides, :mod:`.supervisor` reads and acts).
A task that holds the GIL while it allocates cannot stall it. Imports neither the worker
nor the scheduler (it must stay small: its memory counts against the pod's).
"""
