"""Thin wrappers over the kind, docker, helm and kubectl command lines for the kind e2e tier.

Every call names the cluster's own kubeconfig, so nothing here can touch another cluster,
and every call has a timeout. Waiting uses `kubectl wait` (watch-driven) wherever the
condition can be expressed as a condition or a JSONPath value.

Not covered: creating anything by itself; the fixtures in conftest.py decide what to run.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TOOLS = ("kind", "docker", "helm", "kubectl")


def missing_tools() -> list[str]:
    """What this machine lacks for the kind tier, in words a skip message can show."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if "docker" not in missing:
        probe = subprocess.run(
            ["docker", "info"], capture_output=True, text=True, timeout=30, check=False
        )
        if probe.returncode != 0:
            missing.append("a running Docker engine (`docker info` failed)")
    return missing


def restricted_namespace(name: str) -> dict[str, Any]:
    """A namespace enforcing the restricted Pod Security Standard (apply is idempotent)."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def run(
    cmd: Sequence[str], *, input: str | None = None, timeout: float = 300, check: bool = True
) -> str:
    """Run a command; on failure raise with its stderr, which is what a reader needs."""
    proc = subprocess.run(
        list(cmd), input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}\n{proc.stdout}"
        )
    return proc.stdout


@dataclass(frozen=True)
class Kube:
    """kubectl and helm bound to one kind cluster's kubeconfig."""

    kubeconfig: Path

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 300) -> str:
        return run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args], input=input, timeout=timeout
        )

    def helm(self, *args: str, timeout: float = 600) -> str:
        return run(["helm", "--kubeconfig", str(self.kubeconfig), *args], timeout=timeout)

    def apply(
        self, objects: Sequence[dict[str, Any]] | dict[str, Any], namespace: str | None = None
    ) -> None:
        docs = [objects] if isinstance(objects, dict) else list(objects)
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", input=yaml.safe_dump_all(docs))

    def create(self, objects: Sequence[dict[str, Any]]) -> None:
        """`kubectl create`: unlike apply, keeps explicit nulls (apply reads null as "remove
        the field", and the server then fills in the default)."""
        self.kubectl("create", "-f", "-", input=yaml.safe_dump_all(list(objects)))

    def get(
        self, kind: str, name: str = "", namespace: str | None = None, selector: str = ""
    ) -> Any:
        args = ["get", kind] + ([name] if name else []) + ["-o", "json"]
        if namespace:
            args += ["-n", namespace]
        if selector:
            args += ["-l", selector]
        data = json.loads(self.kubectl(*args))
        return data["items"] if not name else data

    def wait(
        self, target: str, condition: str, namespace: str | None = None, timeout: int = 300
    ) -> None:
        """`kubectl wait --for=<condition>`: condition=Ready, delete, jsonpath={...}=value."""
        ns = ["-n", namespace] if namespace else []
        self.kubectl(
            "wait", *ns, target, f"--for={condition}", f"--timeout={timeout}s", timeout=timeout + 30
        )

    def wait_until(
        self, what: str, predicate: Any, timeout: float = 300, period: float = 2.0
    ) -> Any:
        """For conditions kubectl wait cannot express (counts of pods): a bounded re-check."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(period)

    def secret_value(self, name: str, key: str, namespace: str) -> str:
        secret = self.get("secret", name, namespace)
        return base64.b64decode(secret["data"][key]).decode()

    @contextlib.contextmanager
    def port_forward(self, target: str, remote_port: int, namespace: str) -> Iterator[int]:
        """`kubectl port-forward` to a free local port on 127.0.0.1; yields the port."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            local = sock.getsockname()[1]
        proc = subprocess.Popen(
            [
                "kubectl",
                "--kubeconfig",
                str(self.kubeconfig),
                "port-forward",
                "-n",
                namespace,
                "--address",
                "127.0.0.1",
                target,
                f"{local}:{remote_port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 8786" once listening
            if "Forwarding from" not in line:
                raise AssertionError(
                    f"port-forward failed: {line}{proc.stderr.read() if proc.stderr else ''}"
                )
            yield local
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def dump_cluster_state(kube: Kube, dest: Path) -> None:
    """Every pod's logs (current and previous containers), events, pods and WorkerPools.

    Best effort: a broken cluster must not hide the test's own failure."""
    dest.mkdir(parents=True, exist_ok=True)
    base = ["kubectl", "--kubeconfig", str(kube.kubeconfig)]

    def save(name: str, *args: str) -> None:
        proc = subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=120, check=False
        )
        (dest / name).write_text(proc.stdout + proc.stderr)

    save("events.txt", "get", "events", "-A", "--sort-by=.lastTimestamp")
    save("pods.txt", "get", "pods", "-A", "-o", "wide")
    save("describe-pods.txt", "describe", "pods", "-A")
    save("workerpools.yaml", "get", "workerpools", "-A", "-o", "yaml")
    pods = subprocess.run(
        [*base, "get", "pods", "-A", "-o", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if pods.returncode != 0:
        return
    for pod in json.loads(pods.stdout)["items"]:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        save(f"logs-{ns}-{name}.txt", "logs", "-n", ns, name, "--all-containers", "--prefix")
        restarted = any(
            status.get("restartCount", 0) > 0
            for status in pod.get("status", {}).get("containerStatuses", [])
        )
        if restarted:
            save(
                f"logs-{ns}-{name}-previous.txt",
                "logs", "-n", ns, name, "--all-containers", "--prefix", "--previous",
            )
