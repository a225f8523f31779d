"""The HTTP shell: aiohttp routes that turn requests into registry verbs.

Parses Kubernetes API paths (``/api/v1/...``, ``/apis/{group}/{version}/...``, namespaced and
cluster-scoped, subresources), query options (selectors, limit/continue, watch,
resourceVersion, allowWatchBookmarks, timeoutSeconds, dryRun, fieldValidation,
propagationPolicy, includeObject) and content types (JSON, the three patch types, YAML for
apply), and answers JSON, Tables or watch streams. Every request is logged. Holds no state
of its own besides open watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import yaml
from aiohttp import web

from . import discovery, lifecycle, openapi, protobuf, scale
from .errors import ApiError, bad_request, method_not_allowed
from .registry import APPLY_PATCH, Registry
from .requestlog import RequestLog, RequestRecord
from .resources import ResourceType
from .tables import to_table
from .watch import Watch, WatchEvent

logger = logging.getLogger(__name__)
def _no_such_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


class _Target:
    """What a resource path names."""

    def __init__(self, group: str, version: str, plural: str, namespace: str | None,
                 name: str, subresource: str) -> None:
        self.group, self.version, self.plural = group, version, plural
        self.namespace, self.name, self.subresource = namespace, name, subresource


def _parse(path: str) -> _Target | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    return _Target(group, version, rest[0], namespace, rest[1] if len(rest) > 1 else "",
                   rest[2] if len(rest) > 2 else "")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def _error(exc: ApiError) -> web.Response:
    return _json(exc.status(), exc.code)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


class ApiServer:
    """Routes for one registry; ``app`` is the aiohttp application to serve."""

    def __init__(self, registry: Registry, log: RequestLog, *,
                 bookmark_interval: float = 1.0) -> None:
        self.registry = registry
        self.log = log
        self.bookmark_interval = bookmark_interval
        self.closing = asyncio.Event()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        record = RequestRecord(method=request.method, path=request.path,
                               query=request.query_string,
                               verb=request.method.lower(), apiGroup="", apiVersion="",
                               resource="", subresource="", namespace="", name="", code=0)
        # Logged on arrival (so a long watch keeps its place); filled in as it is served.
        self.log.append(record)
        try:
            response = await self._route(request, record)
        except ApiError as exc:
            response = _error(exc)
        except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
            response = _error(bad_request(f"the body of the request could not be decoded: "
                                          f"{exc}"))
        except Exception as exc:  # a bug in the double: answer as a server would, and say so
            logger.exception("apidouble failed to serve %s %s", request.method, request.path)
            response = _error(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))
        record["code"] = response.status
        return response

    async def _route(self, request: web.Request, record: RequestRecord) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        reg = self.registry
        if request.method == "GET":
            simple = self._non_resource(path, request)
            if simple is not None:
                return simple
        target = _parse(path)
        if target is None:
            raise _no_such_path()
        rt = reg.resolve(target.group, target.version, target.plural)
        if target.namespace is not None and not rt.namespaced:
            raise _no_such_path()
        namespace = target.namespace if rt.namespaced else ""
        record["apiGroup"], record["apiVersion"] = rt.group, rt.version
        record["resource"], record["subresource"] = rt.plural, target.subresource
        record["namespace"], record["name"] = target.namespace or "", target.name
        if target.name:
            return await self._on_object(request, record, rt, namespace or "", target)
        return await self._on_collection(request, record, rt, target.namespace)

    def _non_resource(self, path: str, request: web.Request) -> web.Response | None:
        types = self.registry.types()
        if path == "/version":
            return _json(discovery.KUBE_VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/api":
            return _json(discovery.core_versions(request.host))
        if path == "/apis":
            return _json(discovery.group_list(types))
        if path == "/api/v1":
            return self._or_404(discovery.resource_list(types, "", "v1"))
        parts = path.split("/")[1:]
        if parts[0] == "apis" and len(parts) == 2:
            return self._or_404(discovery.group(types, parts[1]))
        if parts[0] == "apis" and len(parts) == 3:
            return self._or_404(discovery.resource_list(types, parts[1], parts[2]))
        if path == "/openapi/v3":
            return _json(openapi.index(types))
        if path.startswith("/openapi/v3/"):
            return self._or_404(openapi.group_version_doc(types, path[len("/openapi/v3/"):]))
        if parts[0] == "openapi":
            raise _no_such_path()
        return None

    @staticmethod
    def _or_404(doc: dict[str, Any] | None) -> web.Response:
        if doc is None:
            raise _no_such_path()
        return _json(doc)

    async def _on_collection(self, request: web.Request, record: RequestRecord,
                             rt: ResourceType, namespace: str | None) -> web.StreamResponse:
        q = request.query
        reg = self.registry
        if request.method == "GET":
            if _truthy(q.get("watch")):
                record["verb"] = "watch"
                return await self._watch(request, rt, namespace)
            record["verb"] = "list"
            listed = reg.list(rt, namespace, label_selector=q.get("labelSelector", ""),
                              field_selector=q.get("fieldSelector", ""),
                              limit=int(q.get("limit") or 0), continue_=q.get("continue", ""))
            if _wants_table(request):
                return _json(to_table(rt, listed["items"], listed["metadata"],
                                      q.get("includeObject", "Metadata")))
            return _json(listed)
        if request.method == "POST":
            record["verb"] = "create"
            body = await _body(request)
            created = reg.create(rt, namespace or "", body, dry_run=_dry(request),
                                 strict=_strict(request))
            record["name"] = created["metadata"]["name"]
            return _json(created, 201)
        if request.method == "DELETE":
            record["verb"] = "deletecollection"
            options = await _delete_options(request)
            return _json(lifecycle.delete_collection(
                reg, rt, namespace, label_selector=q.get("labelSelector", ""),
                field_selector=q.get("fieldSelector", ""),
                propagation=options.get("propagationPolicy"), dry_run=_dry(request, options)))
        raise method_not_allowed(f"{request.method} is not supported on a collection")

    async def _on_object(self, request: web.Request, record: RequestRecord, rt: ResourceType,
                         namespace: str, target: _Target) -> web.StreamResponse:
        reg, name, sub = self.registry, target.name, target.subresource
        if sub not in ("", "status", "scale") or (sub == "status" and not rt.has_status):
            raise _no_such_path()
        method = request.method
        if method == "GET":
            record["verb"] = "get"
            if sub == "scale":
                return _json(scale.get_scale(reg, rt, namespace, name))
            obj = reg.get(rt, namespace, name)
            if _wants_table(request):
                return _json(to_table(rt, [obj], {"resourceVersion": obj["metadata"][
                    "resourceVersion"]}, request.query.get("includeObject", "Metadata")))
            return _json(obj)
        if method == "PUT":
            record["verb"] = "update"
            body = await _body(request)
            if sub == "scale":
                return _json(scale.update_scale(reg, rt, namespace, name, body,
                                                dry_run=_dry(request)))
            return _json(reg.update(rt, namespace, name, body, subresource=sub,
                                    dry_run=_dry(request), strict=_strict(request)))
        if method == "PATCH":
            record["verb"] = "patch"
            content_type = request.content_type
            body = await _body(request, yaml_ok=content_type == APPLY_PATCH)
            if sub == "scale":
                return _json(scale.patch_scale(reg, rt, namespace, name, content_type, body,
                                               dry_run=_dry(request)))
            existed = reg.store.get(rt.key, namespace, name) is not None
            patched = reg.patch(rt, namespace, name, content_type, body, subresource=sub,
                                dry_run=_dry(request), strict=_strict(request))
            return _json(patched, 200 if existed else 201)
        if method == "DELETE" and not sub:
            record["verb"] = "delete"
            options = await _delete_options(request)
            return _json(lifecycle.delete(
                reg, rt, namespace, name, propagation=options.get("propagationPolicy"),
                preconditions=options.get("preconditions"), dry_run=_dry(request, options),
                grace_period=options.get("gracePeriodSeconds")))
        raise method_not_allowed(f"{method} is not supported here")

    async def _watch(self, request: web.Request, rt: ResourceType,
                     namespace: str | None) -> web.StreamResponse:
        q = request.query
        watch = Watch(self.registry, rt, namespace, label_selector=q.get("labelSelector", ""),
                      field_selector=q.get("fieldSelector", ""),
                      resource_version=q.get("resourceVersion", ""),
                      send_initial_events=_truthy(q.get("sendInitialEvents")))
        try:
            initial = watch.start()
        except ApiError as exc:
            if exc.code != 410:
                raise
            initial = [WatchEvent(type="ERROR", object=exc.status())]
        table = _wants_table(request)
        response: web.StreamResponse = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        try:
            for first in initial:
                await self._send(response, rt, first, table)
            if initial and initial[-1]["type"] == "ERROR":
                return response
            while not self.closing.is_set():
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    wait = min(wait, left) if wait is not None else left
                event = await self._next_or_none(watch, wait)
                if event is None:
                    if bookmarks and (deadline is None or deadline > loop.time()):
                        await self._send(response, rt, watch.bookmark(), False)
                    continue
                await self._send(response, rt, event, table)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            watch.close()
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _next_or_none(self, watch: Watch, timeout: float | None) -> WatchEvent | None:
        """The next visible event, or None when ``timeout`` passes or the server closes."""
        closing = asyncio.ensure_future(self.closing.wait())
        nxt = asyncio.ensure_future(watch.next())
        try:
            done, _ = await asyncio.wait({closing, nxt}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if nxt in done:
            return nxt.result()
        nxt.cancel()
        return None

    @staticmethod
    async def _send(response: web.StreamResponse, rt: ResourceType, event: WatchEvent,
                    table: bool) -> None:
        obj = event["object"]
        if table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
            obj = to_table(rt, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]},
                           "Object")
        line = json.dumps({"type": event["type"], "object": obj}) + "\n"
        await response.write(line.encode())


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    first = accept.split(",")[0]
    return "as=Table" in first


def _dry(request: web.Request, options: dict[str, Any] | None = None) -> bool:
    dry = request.query.getall("dryRun", []) + list((options or {}).get("dryRun") or [])
    return "All" in dry


def _strict(request: web.Request) -> bool:
    return request.query.get("fieldValidation", "") == "Strict"


PROTOBUF = "application/vnd.kubernetes.protobuf"
_JSON_TYPES = ("application/json", "application/merge-patch+json",
               "application/json-patch+json", "application/strategic-merge-patch+json",
               "application/apply-patch+yaml", "application/yaml", "")


async def _body(request: web.Request, yaml_ok: bool = False) -> Any:
    if request.content_type == PROTOBUF:
        try:
            return protobuf.decode(await request.read())
        except protobuf.UnsupportedKind as exc:
            raise _unsupported(request.content_type, f"no protobuf support for {exc}") from exc
        except ValueError as exc:
            raise bad_request(f"the body of the request could not be decoded: {exc}") from exc
    # No Content-Type at all means JSON, as on a real server (the kubernetes client omits it).
    if "Content-Type" in request.headers and request.content_type not in _JSON_TYPES:
        raise _unsupported(request.content_type, "")
    text = await request.text()
    if not text.strip():
        raise bad_request("the request body is empty")
    if yaml_ok:
        return yaml.safe_load(text)
    return json.loads(text)


def _unsupported(content_type: str, detail: str) -> ApiError:
    message = (f'the body of the request was in an unknown format - accepted media types '
               f'include: application/json, application/yaml, {PROTOBUF} (got '
               f'"{content_type}")')
    return ApiError(415, "UnsupportedMediaType", f"{message}: {detail}" if detail else message)


async def _delete_options(request: web.Request) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if request.can_read_body:
        text = await request.text()
        if text.strip():
            options = json.loads(text)
    q = request.query
    if q.get("propagationPolicy"):
        options["propagationPolicy"] = q["propagationPolicy"]
    if q.get("gracePeriodSeconds"):
        options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
    if options.get("orphanDependents") is True or _truthy(q.get("orphanDependents")):
        options.setdefault("propagationPolicy", "Orphan")
    return options
