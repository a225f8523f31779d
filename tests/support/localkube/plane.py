"""A local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler as child processes on 127.0.0.1, with an admin kubeconfig.

:class:`ControlPlane` is used by ``make cluster`` (through ``python -m localkube``) and by
the pytest fixture alike. Every port is free-picked on 127.0.0.1 (concurrent runs do not
collide); every process is started in its own session and stopped by its pid, so stopping
leaves nothing behind. :meth:`ControlPlane.start` returns once every component reports
healthy, the ``default`` ServiceAccount exists (pods can be created) and the built-in RBAC
policy is in place.

Configuration: TLS with :mod:`pki`'s certificates, ``--authorization-mode=Node,RBAC``, the
PodSecurity admission plugin named explicitly (it is on by default too), service account
tokens signed by a key of our own, the controller manager with its default controllers
(garbage collector, namespace, serviceaccount and token controllers among them) using
per-controller service account credentials. No kubelet: pods stay Pending (unscheduled).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .binaries import Binaries, ensure
from .pki import Pki, make_pki, paths

SERVICE_RANGE = "10.0.0.0/24"
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    """A kubeconfig with one cluster, one client-certificate user and one context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "memkube-local",
                "cluster": {"server": server, "certificate-authority": str(ca)},
            }
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [
            {"name": "memkube-local", "context": {"cluster": "memkube-local", "user": user}}
        ],
        "current-context": "memkube-local",
    }


@dataclass
class Component:
    name: str
    args: list[str]
    health: str  # URL
    pid: int | None = None


@dataclass
class ControlPlane:
    """The four processes under ``directory`` (certificates, data, logs, kubeconfigs)."""

    directory: Path
    binaries: Binaries | None = None
    components: list[Component] = field(default_factory=list)
    server: str = ""
    started_seconds: float = 0.0
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    crds: tuple[Path, ...] = ()
    """CRDs created before the controller manager starts: its garbage collector reads
    discovery at start and then only every 30 s, so cascades on these work at once."""

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        """Every API request at Metadata level, one JSON event a line (who, what, the code)."""
        return self.directory / "logs" / "audit.log"

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    @property
    def pki(self) -> Pki:
        return paths(self.directory / "pki")

    # ----- start ---------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> ControlPlane:
        t0 = time.monotonic()
        bins = self.binaries = self.binaries or ensure()
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "pki").mkdir(exist_ok=True)
        (self.directory / "logs").mkdir(exist_ok=True)
        pki = make_pki(self.directory / "pki")
        policy = self.directory / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        kcm_port, sched_port = free_port(), free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        self._write_kubeconfigs(pki)
        data = self.directory / "etcd-data"
        etcd = Component(
            "etcd",
            [
                str(bins.path("etcd")),
                "--name=memkube-local",
                f"--data-dir={data}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=memkube-local=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            f"http://127.0.0.1:{etcd_port}/health",
        )
        apiserver = Component(
            "kube-apiserver",
            [
                str(bins.path("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={self.directory / 'pki'}",
                f"--tls-cert-file={pki.apiserver.cert}",
                f"--tls-private-key-file={pki.apiserver.key}",
                f"--client-ca-file={pki.ca.cert}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=PodSecurity,NodeRestriction",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--allow-privileged=false",
                # The kubernetes Service cannot point at a loopback address: no endpoints.
                "--endpoint-reconciler-type=none",
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",  # written before the response: tests read it at once
                "--profiling=false",
                "--v=1",
            ],
            f"{self.server}/readyz",
        )
        kcm_conf = self.directory / "controller-manager.kubeconfig"
        kcm = Component(
            "kube-controller-manager",
            [
                str(bins.path("kube-controller-manager")),
                f"--kubeconfig={kcm_conf}",
                f"--authentication-kubeconfig={kcm_conf}",
                f"--authorization-kubeconfig={kcm_conf}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={self.directory / 'pki' / 'kcm'}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca.cert}",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--controllers=*",
                "--profiling=false",
                "--v=1",
            ],
            f"https://127.0.0.1:{kcm_port}/healthz",
        )
        sched_conf = self.directory / "scheduler.kubeconfig"
        scheduler = Component(
            "kube-scheduler",
            [
                str(bins.path("kube-scheduler")),
                f"--kubeconfig={sched_conf}",
                f"--authentication-kubeconfig={sched_conf}",
                f"--authorization-kubeconfig={sched_conf}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                f"--cert-dir={self.directory / 'pki' / 'scheduler'}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
            f"https://127.0.0.1:{sched_port}/healthz",
        )
        self.components = []
        try:
            for comp in (etcd, apiserver, kcm, scheduler):
                self._spawn(comp)
                self._save()
                if comp is etcd or comp is apiserver:  # the others need them up first
                    self._wait_healthy(comp, t0 + timeout)
                if comp is apiserver:
                    self._create_crds(t0 + timeout)
            for comp in (kcm, scheduler):
                self._wait_healthy(comp, t0 + timeout)
            self._wait_ready(t0 + timeout)
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - t0
        self._save()
        return self

    def _create_crds(self, deadline: float) -> None:
        from .api import Kube
        from .crds import establish_crd

        if not self.crds:
            return
        pki = self.pki
        kube = Kube(self.server, pki.ca.cert, cert=(pki.admin.cert, pki.admin.key))
        try:
            for crd in self.crds:
                establish_crd(kube, crd, timeout=max(1.0, deadline - time.monotonic()))
        finally:
            kube.close()

    def _write_kubeconfigs(self, pki: Pki) -> None:
        for path, pair, user in (
            (self.kubeconfig, pki.admin, "memkube-admin"),
            (self.directory / "controller-manager.kubeconfig", pki.controller_manager, "kcm"),
            (self.directory / "scheduler.kubeconfig", pki.scheduler, "scheduler"),
        ):
            config = kubeconfig(self.server, pki.ca.cert, pair.cert, pair.key, user)
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            path.chmod(0o600)

    def _spawn(self, comp: Component) -> None:
        log = open(self.directory / "logs" / f"{comp.name}.log", "ab")  # noqa: SIM115
        with log:
            proc = subprocess.Popen(
                comp.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stopped as a unit, by pid
                cwd=self.directory,
            )
        comp.pid = proc.pid
        self.components.append(comp)
        self._procs[comp.name] = proc

    def _ssl(self) -> ssl.SSLContext:
        pki = self.pki
        ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
        ctx.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        ctx.check_hostname = False  # the controller manager's and scheduler's self-signed certs
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _get(self, url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=5, context=self._ssl()) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(exc)

    def _check_alive(self, comp: Component) -> None:
        proc = self._procs.get(comp.name)
        if proc is not None and proc.poll() is not None:
            log = (self.directory / "logs" / f"{comp.name}.log").read_text(errors="replace")
            tail = "\n".join(log.splitlines()[-25:])
            raise RuntimeError(f"{comp.name} exited with {proc.returncode}:\n{tail}")

    def _wait_healthy(self, comp: Component, deadline: float) -> None:
        delay = 0.05
        while True:
            self._check_alive(comp)
            status, body = self._get(comp.health)
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{comp.name} not healthy at {comp.health}: {status} {body[:500]}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _wait_ready(self, deadline: float) -> None:
        """Pods can be created (``default`` ServiceAccount) and RBAC's defaults exist."""
        checks = (
            "/api/v1/namespaces/default/serviceaccounts/default",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:kube-controller-manager",
        )
        delay = 0.05
        for path in checks:
            while self._get(self.server + path)[0] != 200:
                for comp in self.components:
                    self._check_alive(comp)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"control plane not ready: {path} missing")
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)

    # ----- state and stop ------------------------------------------------------------------
    def _save(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "started_seconds": round(self.started_seconds, 2),
            "components": [
                {"name": c.name, "pid": c.pid, "health": c.health} for c in self.components
            ],
        }
        self.state_file.write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, directory: Path) -> ControlPlane:
        """The control plane a previous ``start`` left described in ``directory/state.json``."""
        plane = cls(directory)
        state = json.loads(plane.state_file.read_text())
        plane.server = state["server"]
        plane.started_seconds = state.get("started_seconds", 0.0)
        plane.components = [
            Component(c["name"], [], c["health"], c["pid"]) for c in state["components"]
        ]
        return plane

    def healthy(self) -> dict[str, bool]:
        return {c.name: self._get(c.health)[0] == 200 for c in self.components}

    def stop(self, grace: float = 10.0) -> None:
        """Stop every component (newest first) by its pid and process group; wait for each."""
        for comp in reversed(self.components):
            if comp.pid is None:
                continue
            proc = self._procs.get(comp.name)
            if proc is None and not _is_ours(comp.pid, comp.name):
                comp.pid = None  # gone, and the pid now belongs to something else
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(comp.pid, signal.SIGTERM)
            if not _wait_gone(comp.pid, proc, grace):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(comp.pid, signal.SIGKILL)
                _wait_gone(comp.pid, proc, grace)
            comp.pid = None
        self.components = []
        if self.state_file.exists():
            self.state_file.unlink()


def _wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return True
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            if _zombie(pid):
                return True
        time.sleep(0.05)
    return False


def _is_ours(pid: int, name: str) -> bool:
    """The pid still runs the component's binary (a pid from state.json may be reused)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return Path(argv0).name == name


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
