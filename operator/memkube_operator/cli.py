"""``memkube operator``: run the operator, or render what it would create.

::

    memkube operator run [--namespace NS ...] [--liveness URL] [--peering NAME] [--image IMG]
    memkube operator render -f workerpool.yaml     # like `helm template`, same builders
    memkube operator crd                           # the CRD, for `kubectl apply -f -`

Registered through the ``memkube.commands`` entry point, so the runtime never imports it.
Environment: ``MEMKUBE_DEFAULT_IMAGE`` (default image), ``MEMKUBE_LOG_LEVEL``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import yaml

from .builders import build_all
from .builders.worker import worker_resources
from .crd import API_VERSION, CRD_PATH, KIND, apply_defaults
from .settings import DEFAULT_IMAGE, OperatorConfig, PodDefaults, Reconciling, SchedulerAccess
from .spec import SpecError, parse_pool

RENDER_UID = "00000000-0000-0000-0000-000000000000"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memkube operator",
        description="Run the WorkerPool operator or render its objects.",
    )
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="reconcile WorkerPools (the default)")
    run.add_argument("-n", "--namespace", action="append", default=[], help="watch only NS")
    run.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument("--liveness", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--peering", help="kopf peering name (default: standalone)")
    run.add_argument("--image", default=os.environ.get("MEMKUBE_DEFAULT_IMAGE", DEFAULT_IMAGE))
    run.add_argument("--resync", type=float, default=30.0, help="seconds between resyncs")
    run.add_argument(
        "--force-scale-down-after",
        type=float,
        help="default seconds before deleting unretired pods when the scheduler is unreachable",
    )
    run.add_argument(
        "--scheduler-url",
        help="template for reaching schedulers from outside the cluster, e.g. "
        "'http://127.0.0.1:8001/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy' "
        "(default: the Service's cluster DNS name)",
    )
    run.add_argument("--log-level", default=os.environ.get("MEMKUBE_LOG_LEVEL", "INFO"))
    render = commands.add_parser("render", help="print the objects for a WorkerPool file")
    render.add_argument("-f", "--filename", required=True, help="WorkerPool YAML ('-' = stdin)")
    render.add_argument("--namespace", default="default", help="namespace if the file has none")
    render.add_argument("--image", default=os.environ.get("MEMKUBE_DEFAULT_IMAGE", DEFAULT_IMAGE))
    commands.add_parser("crd", help="print the WorkerPool CRD")
    return parser


METRICS_TOKEN_ENV = "MEMKUBE_OPERATOR_METRICS_TOKEN"
"""The token new pools accept on ``GET /metrics`` (the chart sets it from ``tokenSecret``)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``memkube operator``; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0].startswith("-") and args_list[0] not in ("-h", "--help"):
        args_list.insert(0, "run")
    args = _parser().parse_args(args_list)
    if args.command == "render":
        return render_file(args.filename, args.namespace, args.image, sys.stdout, sys.stderr)
    if args.command == "crd":
        sys.stdout.write(CRD_PATH.read_text(encoding="utf-8"))
        return 0
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    import kopf

    from .handlers import build_registry  # kopf is imported only when running

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    access = SchedulerAccess()
    if args.scheduler_url:
        template: str = args.scheduler_url
        access = SchedulerAccess(
            url=lambda namespace, service, port: template.format(
                namespace=namespace, service=service, port=port
            )
        )
    config = OperatorConfig(
        pods=PodDefaults(image=args.image),
        scheduler=access,
        reconciling=Reconciling(
            resync_seconds=args.resync, force_scale_down_after=args.force_scale_down_after
        ),
        namespaces=tuple(args.namespace),
        standalone=args.peering is None,
        liveness_endpoint=args.liveness,
        # From the environment only (a flag would show the token in the process list).
        metrics_token=os.environ.get(METRICS_TOKEN_ENV) or None,
    )
    clusterwide = args.all_namespaces or not config.namespaces
    asyncio.run(
        kopf.operator(
            registry=build_registry(config),
            standalone=config.standalone,
            peering_name=args.peering,
            clusterwide=clusterwide,
            namespaces=() if clusterwide else config.namespaces,
            liveness_endpoint=config.liveness_endpoint,
        )
    )
    return 0


def render_objects(
    documents: Iterable[Any], namespace: str, defaults: PodDefaults
) -> list[dict[str, Any]]:
    """Every object the operator would create for the WorkerPools among ``documents``."""
    objects: list[dict[str, Any]] = []
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") != KIND:
            continue
        if document.get("apiVersion") != API_VERSION:
            raise SpecError("apiVersion", f"expected {API_VERSION}")
        pool_body = apply_defaults(document)
        meta = pool_body.setdefault("metadata", {})
        meta.setdefault("namespace", namespace)
        meta.setdefault("uid", RENDER_UID)
        pool = parse_pool(pool_body)
        objects.extend(dict(o) for o in build_all(pool, defaults, secrets.token_urlsafe(32)))
    return objects


def render_file(path: str, namespace: str, image: str, out: TextIO, err: TextIO) -> int:
    """``render``: YAML stream on ``out``; 2 with the field named on ``err`` if invalid."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    defaults = replace(PodDefaults(), image=image)
    try:
        documents = list(yaml.safe_load_all(text))
        objects = render_objects(documents, namespace, defaults)
    except (SpecError, yaml.YAMLError) as exc:
        err.write(f"memkube operator render: {exc}\n")
        return 2
    if not objects:
        err.write(f"memkube operator render: no {API_VERSION} {KIND} in {path}\n")
        return 2
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == KIND:
            body = apply_defaults(document)
            body.setdefault("metadata", {}).setdefault("namespace", namespace)
            derived = worker_resources(parse_pool(body), defaults).derived()
            summary = ", ".join(f"{key}={value}" for key, value in derived.items())
            out.write(f"# WorkerPool {body['metadata'].get('name')}: {summary}\n")
    out.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
