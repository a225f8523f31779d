"""The translation from a worker spec to pod resources and worker flags (ARCHITECTURE.md).

- pod memory request = limit = memoryLimit + overhead (+ spill size for the Memory medium,
  since tmpfs pages count against the pod's cgroup);
- Disk spill: the container requests and limits ``ephemeral-storage`` = spill size + the
  scratch ``/tmp`` volume, so the node has room and the kubelet never evicts for it;
- ``--max-spill`` = 95% of the volume, rounded down to a MiB: a full spill volume becomes a
  worker pause, never an ENOSPC crash;
- threads default to the CPU count rounded up.

The result is shown in ``status.derived`` so nobody has to guess. Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TypedDict

from memkube.quantity import floor_mebibytes, format_bytes, format_cpu

from .spec import WorkerSpec

MIN_OVERHEAD = 256 * 2**20
OVERHEAD_FRACTION = Fraction(1, 10)
MAX_SPILL_FRACTION = Fraction(95, 100)


class DerivedStatus(TypedDict):
    """``status.derived``: the translation as quantities and flags."""

    memoryLimit: str
    memoryOverhead: str
    podMemory: str
    cpu: str
    threads: int
    maxSpill: str
    ephemeralStorage: str
    spillVolume: str
    qosClass: str


@dataclass(frozen=True)
class WorkerResources:
    """Everything a worker pod's resources and flags are computed from, in bytes and cores."""

    memory_limit: int
    overhead: int
    pod_memory: int
    cpu: Fraction
    cpu_limit: bool
    threads: int
    max_spill: int | None
    ephemeral_storage: int
    spill_volume: str

    @property
    def qos_class(self) -> str:
        """Guaranteed when every resource's request equals its limit, else Burstable."""
        return "Guaranteed" if self.cpu_limit else "Burstable"

    def derived(self) -> DerivedStatus:
        """The ``status.derived`` block."""
        return DerivedStatus(
            memoryLimit=format_bytes(self.memory_limit),
            memoryOverhead=format_bytes(self.overhead),
            podMemory=format_bytes(self.pod_memory),
            cpu=format_cpu(self.cpu),
            threads=self.threads,
            maxSpill="" if self.max_spill is None else format_bytes(self.max_spill),
            ephemeralStorage=format_bytes(self.ephemeral_storage),
            spillVolume=self.spill_volume,
            qosClass=self.qos_class,
        )


def default_overhead(memory_limit: int) -> int:
    """max(256Mi, 10% of the limit), rounded up to a whole MiB."""
    tenth = math.ceil(memory_limit * OVERHEAD_FRACTION)
    return max(MIN_OVERHEAD, math.ceil(tenth / 2**20) * 2**20)


def max_spill(volume_size: int) -> int:
    """The worker's spill cap for a volume of ``volume_size`` bytes: just under it."""
    return floor_mebibytes(math.floor(volume_size * MAX_SPILL_FRACTION))


def translate(worker: WorkerSpec, scratch_size: int) -> WorkerResources:
    """Pod resources and worker flags for ``worker``; ``scratch_size`` is the /tmp volume."""
    overhead = (
        worker.memory_overhead
        if worker.memory_overhead is not None
        else default_overhead(worker.memory_limit)
    )
    spill = worker.spill
    pod_memory = worker.memory_limit + overhead
    ephemeral = scratch_size
    cap: int | None = max_spill(spill.size) if spill.medium != "None" else None
    if spill.medium == "Disk":
        ephemeral += spill.size
        volume = f"emptyDir sizeLimit={format_bytes(spill.size)}"
    elif spill.medium == "Memory":
        pod_memory += spill.size
        volume = f"emptyDir medium=Memory sizeLimit={format_bytes(spill.size)}"
    elif spill.medium == "PersistentVolume":
        storage_class = spill.storage_class or "(cluster default)"
        volume = f"ephemeral PVC {format_bytes(spill.size)} storageClass={storage_class}"
    else:
        volume = "none (spilling disabled)"
    return WorkerResources(
        memory_limit=worker.memory_limit,
        overhead=overhead,
        pod_memory=pod_memory,
        cpu=worker.cpu,
        cpu_limit=worker.cpu_limit,
        threads=worker.threads if worker.threads is not None else max(1, math.ceil(worker.cpu)),
        max_spill=cap,
        ephemeral_storage=ephemeral,
        spill_volume=volume,
    )
