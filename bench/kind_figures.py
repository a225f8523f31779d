"""Figures of memkube on a kind cluster (run by hand against a cluster make e2e kept):

    MEMKUBE_E2E_KEEP=1 make e2e   # or any cluster with the chart installed
    .venv/bin/python bench/kind_figures.py --kubeconfig KUBECONFIG --image memkube:e2e

- time from `kubectl apply` of a 4-worker WorkerPool to its Ready condition;
- time of `kubectl scale --replicas=3` when each worker holds about 1 GiB of unique data
  (4 GiB of incompressible 8 MiB blocks persisted with replication factor 1, mostly spilled):
  from the scale command to the WorkerPool reporting 3 replicas and the pod gone.
Prints one JSON line. Sizes as the e2e pool (256Mi workers, 4Gi spill disks).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import cloudpickle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e_kind"))
from kubetools import Kube, restricted_namespace
from scenario import e2e_pool

cloudpickle.register_pickle_by_value(sys.modules[__name__])
NS, POOL, BLOCK = "bench-kind", "fig", 8 * 2**20


def make_block(i: int) -> bytes:
    return random.Random(i).randbytes(BLOCK)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--image", default="memkube:e2e")
    parser.add_argument("--gib-per-worker", type=float, default=1.0)
    args = parser.parse_args()
    kube = Kube(Path(args.kubeconfig))
    kube.apply(restricted_namespace(NS))
    body = e2e_pool(args.image)
    body["metadata"].update(name=POOL, namespace=NS)
    body["spec"]["replicas"] = 4
    body["spec"]["worker"]["cpu"] = "250m"
    t0 = time.monotonic()
    kube.apply(body)
    kube.wait(f"workerpool/{POOL}", "condition=Ready", NS, timeout=900)
    ready_s = time.monotonic() - t0

    import memkube

    token = kube.secret_value(f"{POOL}-token", "token", NS)
    n = int(4 * args.gib_per_worker * 2**30 / BLOCK)
    with kube.port_forward(f"svc/{POOL}-scheduler", 8786, NS) as port, \
            memkube.Client(f"tcp://127.0.0.1:{port}", token=token) as client:
        blocks = client.map(make_block, range(n))
        client.gather(client.map(len, blocks))
        t1 = time.monotonic()
        kube.kubectl("scale", f"workerpool/{POOL}", "--replicas=3", "-n", NS)
        kube.wait(f"workerpool/{POOL}", "jsonpath={.status.replicas}=3", NS, timeout=1800)
        scale_s = time.monotonic() - t1
        assert sum(client.gather(client.map(len, blocks))) == n * BLOCK
    kube.kubectl("delete", "namespace", NS, "--wait=false")
    print(json.dumps({"apply_to_ready_4_workers_s": round(ready_s, 1),
                      "scale_down_1gib_unique_s": round(scale_s, 1),
                      "blocks": n, "block_bytes": BLOCK}))


if __name__ == "__main__":
    main()
