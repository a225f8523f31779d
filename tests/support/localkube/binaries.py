"""Where the pinned Kubernetes and etcd binaries are, and getting them built if they are not.

The versions live in ``hack/versions.env`` only; ``hack/k8s-binaries.sh`` builds them from
the Go module proxy into ``${MEMKUBE_CACHE:-~/.cache/memkube}/{k8s,etcd}/v<version>/bin``.
:func:`ensure` runs that script (a no-op when the cache is warm) and returns the two
directories, or raises :class:`Unavailable` with the reason when this machine cannot build
them (no Go, no proxy). Callers turn that into a pytest skip, except under ``CI=true`` or
``MEMKUBE_REQUIRE_K8S=1``, where a missing control plane is a failure, not a skip.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
VERSIONS = ROOT / "hack" / "versions.env"
SCRIPT = ROOT / "hack" / "k8s-binaries.sh"
NOT_AVAILABLE = 3  # the script's exit status when Go or the module proxy is missing


class Unavailable(RuntimeError):
    """The binaries are not cached and cannot be built here (the message says why)."""


def versions() -> dict[str, str]:
    """``KEY=value`` lines of hack/versions.env (comments and blanks ignored)."""
    out: dict[str, str] = {}
    for line in VERSIONS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip("'\"")
    return out


def cache_root() -> Path:
    return Path(os.environ.get("MEMKUBE_CACHE") or Path.home() / ".cache" / "memkube")


@dataclass(frozen=True)
class Binaries:
    """The two bin directories of the pinned versions."""

    kubernetes_version: str
    etcd_version: str
    k8s_bin: Path
    etcd_bin: Path

    def path(self, name: str) -> Path:
        base = self.etcd_bin if name.startswith("etcd") else self.k8s_bin
        return base / name


def expected() -> Binaries:
    """Where the cache keeps the pinned versions (whether or not they are there yet)."""
    v = versions()
    root = cache_root()
    k8s, etcd = v["KUBERNETES_VERSION"], v["ETCD_VERSION"]
    return Binaries(k8s, etcd, root / "k8s" / f"v{k8s}" / "bin", root / "etcd" / f"v{etcd}" / "bin")


def required() -> bool:
    """True where a missing control plane must fail the run instead of skipping (CI, here)."""
    return (
        os.environ.get("CI", "").lower() == "true" or os.environ.get("MEMKUBE_REQUIRE_K8S") == "1"
    )


def ensure(*, build: bool = True) -> Binaries:
    """The binaries, building them first if needed (``build=False``: only look)."""
    wanted = expected()
    args = ["bash", str(SCRIPT)] + ([] if build else ["--check"])
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode == NOT_AVAILABLE:
        raise Unavailable(proc.stderr.strip() or "Kubernetes binaries unavailable")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"{SCRIPT.name} failed ({proc.returncode}):\n{tail}")
    return wanted
