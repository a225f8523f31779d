"""The ``memkube`` command: ``scheduler``, ``worker``, ``local`` and plugged-in subcommands.

``memkube-worker`` and ``memkube-scheduler`` are aliases, so
``memkube-worker tcp://scheduler:8786 --memory-limit 4GB`` reads like the Dask line it
replaces. Other packages add subcommands through the ``memkube.commands`` entry point group
(the operator adds ``memkube operator``), so this runtime never imports them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from .errors import MemkubeError
from .security import Auth, TLSConfig, auth_from_options, new_token

log = logging.getLogger("memkube")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", help="pool token (default: $MEMKUBE_TOKEN)")
    p.add_argument("--metrics-token", help="read-only token for /metrics scrapers "
                                           "(default: $MEMKUBE_METRICS_TOKEN)")
    p.add_argument("--insecure-no-token", action="store_true",
                   help="run with no token at all, every endpoint open: anyone who can reach "
                        "the port runs code (also $MEMKUBE_INSECURE_NO_TOKEN=1); tests only")
    p.add_argument("--tls-cert", help="TLS certificate (PEM)")
    p.add_argument("--tls-key", help="TLS private key (PEM)")
    p.add_argument("--tls-ca", help="CA bundle that peers' certificates must chain to")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")


def scheduler_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--host", default="0.0.0.0", help="interface to listen on")
    p.add_argument("--port", type=int, default=8786,
                   help="port for websockets, the HTTP API, dashboard and metrics (0: any)")
    p.add_argument("--replication-factor", type=int, default=1,
                   help="copies kept of client-held and scattered data")
    p.add_argument("--worker-timeout", type=float, default=30.0,
                   help="seconds without heartbeat before a worker is declared lost")
    _add_common(p)
    return p


def worker_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("scheduler", help="scheduler address, e.g. tcp://scheduler:8786")
    p.add_argument("--name", help="worker name (default: $POD_NAME or host-pid)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=int, default=0, help="port for peer data and probes")
    p.add_argument("--contact-address", help="address peers use to reach this worker")
    p.add_argument("--nthreads", type=int, default=1, help="task threads")
    p.add_argument("--memory-limit", default=None,
                   help="4GB, 4GiB, 4Gi, 0.5 (of the host), auto, 0/none (default: auto)")
    for name in ("target", "spill", "pause", "terminate"):
        p.add_argument(f"--memory-{name}", default=None,
                       help=f"{name} threshold as a fraction of the limit; 'none' disables")
    p.add_argument("--max-spill", default=None, help="cap on spilled bytes, e.g. 19Gi")
    p.add_argument("--spill-dir", default=None, help="directory for spill files")
    p.add_argument("--spill-compression", default=None, help="auto, lz4, zstd or none")
    p.add_argument("--config", default=None, help="YAML config file (also $MEMKUBE_CONFIG)")
    p.add_argument("--death-timeout", type=float, default=60.0,
                   help="exit if the scheduler cannot be reached for this long (s)")
    p.add_argument("--heartbeat-interval", type=float, default=1.0, help="seconds")
    p.add_argument("--no-guard", dest="guard", action="store_false",
                   help="run the worker in this process, without the supervising memory guard")
    p.add_argument("--guard-poll", type=float, default=0.005,
                   help="seconds between the memory guard's readings (default 0.005)")
    _add_common(p)
    return p


def local_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--threads", type=int, default=1, help="threads per worker")
    p.add_argument("--memory-limit", default="auto", help="per worker (auto: share of host)")
    p.add_argument("--port", type=int, default=8786, help="scheduler port (0: any)")
    p.add_argument("--replication-factor", type=int, default=1)
    p.add_argument("--cgroup", action="store_true",
                   help="enforce each worker's limit + overhead with a memory cgroup (root)")
    p.add_argument("--log-level", default="INFO")
    return p


def _tls(args: argparse.Namespace) -> TLSConfig:
    return TLSConfig(cert=args.tls_cert, key=args.tls_key, ca=args.tls_ca)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def run_scheduler(args: argparse.Namespace) -> int:
    from .scheduler import Scheduler

    auth = auth_from_options(args.token, args.metrics_token, insecure=args.insecure_no_token)
    if auth.token is None and not auth.insecure:
        token = new_token()
        log.warning("no --token or $MEMKUBE_TOKEN: generated one; clients need it:\n%s", token)
        auth = Auth(token, auth.metrics_token)
    scheduler = Scheduler(host=args.host, port=args.port, auth=auth,
                          tls=_tls(args), replication_factor=args.replication_factor,
                          worker_timeout=args.worker_timeout)

    async def main() -> int:
        await scheduler.start()
        print(f"memkube scheduler at {scheduler.address}", flush=True)
        print(f"dashboard at {scheduler.http_address}/dashboard/", flush=True)
        await _wait_for_signal()
        await scheduler.close()
        return 0

    return asyncio.run(main())


def run_worker(args: argparse.Namespace) -> int:
    from .guard.supervisor import guarded_child, mark_as_first_to_kill
    from .local import adopt_local_supervision
    from .memory import MemoryConfig

    adopt_local_supervision()  # first: join the local pool's cgroup before reading limits

    # No token, no worker: refused before anything starts (a supervisor included).
    auth = auth_from_options(args.token, args.metrics_token,
                             insecure=args.insecure_no_token).require("worker")
    memory = MemoryConfig.from_options(
        limit=args.memory_limit, target=args.memory_target, spill=args.memory_spill,
        pause=args.memory_pause, terminate=args.memory_terminate, max_spill=args.max_spill,
        spill_dir=args.spill_dir, compression=args.spill_compression, config_file=args.config)
    if args.guard and memory.thresholds.all_disabled and not guarded_child():
        # Switched off means off: no spilling, no pause, no restart, and no guard either, so
        # the kernel is the one that acts (what a user who opts out gets, and what the
        # side-by-side OOM scenario shows).
        log.warning("memory manager switched off (every threshold disabled): no memory guard")
        args.guard = False
    if args.guard and not guarded_child():
        from .guard.policy import GuardConfig
        from .guard.report import KillReporter
        from .guard.supervisor import Supervisor

        config = GuardConfig(memory.limit, memory.thresholds.terminate)
        argv = list(args.raw_argv)
        name = args.name or os.environ.get("POD_NAME")
        if not name:  # one name across restarts, so the scheduler counts them
            name = f"{socket.gethostname()}-{os.getpid()}"
            argv += ["--name", name]
        reporter = KillReporter(args.scheduler, auth.token, name,
                                tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                                tls_key=args.tls_key)
        return Supervisor(argv, config, poll=args.guard_poll, reporter=reporter).run()
    if guarded_child():
        mark_as_first_to_kill()

    from .worker import Worker

    _preimport("numpy")

    async def main() -> int:
        worker = Worker(args.scheduler, name=args.name, host=args.host, port=args.port,
                        contact_address=args.contact_address, nthreads=args.nthreads,
                        memory=memory, auth=auth, tls=_tls(args),
                        heartbeat_interval=args.heartbeat_interval,
                        death_timeout=args.death_timeout)
        await worker.start()
        print(f"memkube worker {worker.name} at {worker.address}", flush=True)
        stop = asyncio.create_task(_wait_for_signal())
        done = asyncio.create_task(worker.finished.wait())
        await asyncio.wait({stop, done}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        await worker.close()
        return worker.exit_code

    return asyncio.run(main())


def _preimport(module: str) -> None:
    """Import a common library once, up front: unpickling in several threads at once can
    otherwise race on its first import and see it half-initialized."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        importlib.import_module(module)


def run_local(args: argparse.Namespace) -> int:
    from .local import LocalCluster

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=args.threads,
                           memory_limit=args.memory_limit, scheduler_port=args.port,
                           replication_factor=args.replication_factor, cgroup=args.cgroup,
                           log_level=args.log_level)
    print(f"memkube local pool: scheduler {cluster.scheduler_address}", flush=True)
    print(f"dashboard {cluster.dashboard_link}", flush=True)
    print(f"token (export MEMKUBE_TOKEN=...): {cluster.token}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        cluster.close()
    return 0


async def _wait_for_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group="memkube.commands")}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = _plugins()
    if argv and argv[0] in plugins:
        result = plugins[argv[0]].load()(argv[1:])
        return int(result or 0)
    parser = argparse.ArgumentParser(prog="memkube", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    scheduler_parser(sub.add_parser("scheduler", help="run a scheduler"))
    worker_parser(sub.add_parser("worker", help="run a worker"))
    local_parser(sub.add_parser("local", help="run a scheduler and workers on this machine"))
    for name in plugins:
        sub.add_parser(name, help=f"(plugin) memkube {name} --help", add_help=False)
    args = parser.parse_args(argv)
    args.raw_argv = argv[1:]
    _setup_logging(args.log_level)
    runner = {"scheduler": run_scheduler, "worker": run_worker, "local": run_local}
    try:
        return runner[args.command](args)
    except MemkubeError as exc:
        print(f"memkube {args.command}: error: {exc}", file=sys.stderr)
        return 2


def worker_main() -> int:
    return main(["worker", *sys.argv[1:]])


def scheduler_main() -> int:
    return main(["scheduler", *sys.argv[1:]])
