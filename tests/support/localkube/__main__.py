"""``python -m localkube up|down|status [--dir DIR]``: the control plane ``make cluster``
starts (default directory ``.cluster`` in the repository, admin kubeconfig
``DIR/kubeconfig``). ``up`` is a no-op when the one described in ``DIR/state.json`` is healthy;
``down`` stops every process it started, by pid, and waits until they are gone."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .binaries import ROOT, Unavailable
from .crds import WORKERPOOL_CRD
from .plane import ControlPlane


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localkube")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster")
    args = parser.parse_args(argv)
    directory: Path = args.dir.resolve()
    existing = ControlPlane.load(directory) if (directory / "state.json").exists() else None
    if args.command == "status":
        if existing is None:
            print("no control plane")
            return 1
        health = existing.healthy()
        for name, ok in health.items():
            print(f"{name:24} {'healthy' if ok else 'NOT healthy'}")
        print(f"server {existing.server}\nkubeconfig {existing.kubeconfig}")
        return 0 if all(health.values()) else 1
    if args.command == "down":
        if existing is None:
            print("no control plane")
            return 0
        names = [c.name for c in reversed(existing.components)]
        existing.stop()
        shutil.rmtree(directory / "etcd-data", ignore_errors=True)
        print("stopped " + ", ".join(names))
        return 0
    if existing is not None:
        if all(existing.healthy().values()):
            print(f"already running: {existing.server}\nexport KUBECONFIG={existing.kubeconfig}")
            return 0
        existing.stop()  # half dead: start afresh
    shutil.rmtree(directory, ignore_errors=True)
    try:
        plane = ControlPlane(directory, crds=(WORKERPOOL_CRD,)).start()
    except Unavailable as exc:
        print(f"cannot start a control plane: {exc}", file=sys.stderr)
        return 3
    print(f"control plane ready in {plane.started_seconds:.1f} s: {plane.server}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
