"""A stand-in for the kubelet: what tests need pods to report, since nothing runs them.

``finish_pod_terminations`` ends the graceful termination of pods being deleted (with
``graceful_pods=True``). ``mark_pods_ready`` binds pods to a node and reports them Running and Ready with container
statuses; ``set_oom_killed`` records a container's last state as OOMKilled (exit 137) and
counts a restart, as the kubelet reports a container the kernel killed. Pod IPs are loopback
addresses (127.0.1.x) so that anything dialling one stays on this machine. Writes go through
the status subresource, so watchers see ordinary MODIFIED events.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from . import lifecycle
from .registry import Registry
from .selectors import label_matcher
from .timestamps import now

NODE_NAME = "apidouble-node"
_ips = itertools.count(1)


def _ready_status(pod: dict[str, Any], pod_ip: str, stamp: str) -> dict[str, Any]:
    status = copy.deepcopy(pod.get("status") or {})
    previous = {c["name"]: c for c in status.get("containerStatuses") or []}
    containers = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        old = previous.get(c["name"], {})
        entry = {"name": c["name"], "image": c.get("image", ""),
                 "imageID": f"docker-pullable://{c.get('image', '')}",
                 "containerID": f"containerd://{pod['metadata']['uid'][:8]}-{c['name']}",
                 "ready": True, "started": True,
                 "restartCount": int(old.get("restartCount", 0)),
                 "state": {"running": {"startedAt": stamp}}}
        if old.get("lastState"):
            entry["lastState"] = old["lastState"]
        containers.append(entry)
    conditions = [{"type": t, "status": "True", "lastProbeTime": None,
                   "lastTransitionTime": stamp}
                  for t in ("PodReadyToStartContainers", "Initialized", "Ready",
                            "ContainersReady", "PodScheduled")]
    status.update(phase="Running", conditions=conditions, containerStatuses=containers,
                  podIP=pod_ip, podIPs=[{"ip": pod_ip}], hostIP="127.0.0.1",
                  hostIPs=[{"ip": "127.0.0.1"}], startTime=status.get("startTime", stamp))
    return status


def mark_pods_ready(reg: Registry, namespace: str, selector: str = "",
                    node: str = NODE_NAME) -> list[dict[str, Any]]:
    """Report every matching pod Running and Ready; returns the updated pods."""
    pods_type = reg.resolve("", "v1", "pods")
    matches = label_matcher(selector)
    updated = []
    with reg.store.lock:
        for pod in reg.store.items(pods_type.key, namespace):
            meta = pod["metadata"]
            if not matches(meta.get("labels") or {}) or meta.get("deletionTimestamp"):
                continue
            if not (pod.get("spec") or {}).get("nodeName"):
                pod = reg.write(pods_type, reg.stored(pods_type, namespace, meta["name"]),
                                {**pod, "spec": {**pod["spec"], "nodeName": node}})
            ip = (pod.get("status") or {}).get("podIP") or f"127.0.1.{next(_ips) % 250 + 1}"
            pod["status"] = _ready_status(pod, ip, now())
            updated.append(reg.write(pods_type, reg.stored(pods_type, namespace, meta["name"]),
                                     pod, subresource="status"))
    return updated


def set_oom_killed(reg: Registry, namespace: str, name: str,
                   container: str | None = None) -> dict[str, Any]:
    """Record that a container was OOM-killed and restarted (first container by default)."""
    pods_type = reg.resolve("", "v1", "pods")
    with reg.store.lock:
        pod = reg.stored(pods_type, namespace, name)
        if not (pod.get("status") or {}).get("containerStatuses"):
            ip = f"127.0.1.{next(_ips) % 250 + 1}"
            pod["status"] = _ready_status(pod, ip, now())
        stamp = now()
        statuses = pod["status"]["containerStatuses"]
        target = next((c for c in statuses if container in (None, c["name"])), None)
        if target is None:
            raise KeyError(f"pod {namespace}/{name} has no container {container!r}")
        target["lastState"] = {"terminated": {
            "exitCode": 137, "reason": "OOMKilled", "startedAt": stamp, "finishedAt": stamp,
            "containerID": target["containerID"]}}
        target["restartCount"] = int(target.get("restartCount", 0)) + 1
        target["state"] = {"running": {"startedAt": stamp}}
        return reg.write(pods_type, reg.stored(pods_type, namespace, name), pod,
                         subresource="status")


def finish_pod_terminations(reg: Registry, namespace: str, selector: str = "") -> list[str]:
    """Report the containers of terminating pods stopped; returns the pods' names."""
    pods_type = reg.resolve("", "v1", "pods")
    matches = label_matcher(selector)
    done = []
    with reg.store.lock:
        for pod in reg.store.items(pods_type.key, namespace):
            meta = pod["metadata"]
            if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") and \
                    matches(meta.get("labels") or {}):
                lifecycle.finish_termination(reg, pod)
                done.append(meta["name"])
    return done
