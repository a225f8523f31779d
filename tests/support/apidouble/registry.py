"""The verbs on stored objects, without HTTP: get, list, create, update and patch.

``Registry`` owns the store and the served resource types (built-ins plus what CRDs add) and
runs every write through one pipeline like the API server's: status-subresource rules,
immutable metadata, built-in defaults or CRD pruning/defaulting/validation, generation
stamping, no-op detection, finalizer completion. Deletion, finalizers and garbage collection
are ``lifecycle.py``; the ``/scale`` subresource is ``scale.py``. Thread-safe through the
store's lock, so tests may call it directly from any thread.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from typing import Any

from . import events, lifecycle, podrules
from .builtin_schema import check as builtin_check
from .builtins import apply_builtin_defaults, name_causes, tracks_generation
from .crds import crd_causes, crd_status, crd_types
from .errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    field_invalid,
    field_required,
    forbidden,
    invalid,
    method_not_allowed,
    not_found,
    unsupported_media_type,
)
from .immutability import update_causes
from .objectmeta import MAX_GENERATED_PREFIX, meta_causes
from .paging import decode_continue, encode_continue
from .patching import json_patch, merge_patch, strategic_merge
from .resources import BUILTIN_TYPES, CRD_GROUP_RESOURCE, NAMESPACES, ResourceType
from .selectors import field_matcher, label_matcher
from .store import Store
from .structural import apply_defaults, normalize
from .timestamps import now
from .validation import validate

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_IMMUTABLE_META = ("uid", "creationTimestamp", "deletionTimestamp",
                   "deletionGracePeriodSeconds", "generation", "namespace", "name")

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class Registry:
    def __init__(self, namespaces: tuple[str, ...] = DEFAULT_NAMESPACES,
                 graceful_pods: bool = False) -> None:
        self.store = Store()
        self.graceful_pods = graceful_pods
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rt in BUILTIN_TYPES:
            self._types[(rt.group, rt.version, rt.plural)] = rt
        ns_type = self.resolve("", "v1", "namespaces")
        for name in namespaces:
            self.create(ns_type, "", {"metadata": {"name": name}})

    # --- resource types -------------------------------------------------------------------

    def types(self) -> list[ResourceType]:
        with self.store.lock:
            return list(self._types.values())

    def resolve(self, group: str, version: str, plural: str) -> ResourceType:
        with self.store.lock:
            rt = self._types.get((group, version, plural))
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return rt

    def any_version(self, group: str, plural: str) -> ResourceType | None:
        with self.store.lock:
            return next((t for t in self._types.values() if t.key == (group, plural)), None)

    def _register_crd(self, crd: dict[str, Any]) -> None:
        self.forget_crd(crd)
        for rt in crd_types(crd):
            existing = self._types.get((rt.group, rt.version, rt.plural))
            if existing is None or existing.custom:  # a CRD never shadows a built-in kind
                self._types[(rt.group, rt.version, rt.plural)] = rt

    def forget_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        key = (spec.get("group"), (spec.get("names") or {}).get("plural"))
        for k, rt in list(self._types.items()):
            if rt.custom and rt.key == key:
                del self._types[k]

    # --- reads ----------------------------------------------------------------------------

    def view(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """A read-only view of a stored object through ``rt`` (shares structure with it):
        for matching selectors without copying every object."""
        shown = obj
        if rt.custom and rt.schema is not None:
            # Defaults apply on read too: a default added to a CRD shows on old objects.
            shown = apply_defaults(shown, rt.schema)
        if rt.group == events.GROUP:
            shown = events.from_core(shown, rt.api_version)
        return shown

    def present(self, rt: ResourceType, obj: dict[str, Any],
                fresh: bool = False) -> dict[str, Any]:
        """An object as seen through ``rt``'s version (versions differ only in apiVersion);
        ``fresh`` says ``obj`` is already a private copy that may be handed out."""
        shown = self.view(rt, obj)
        if not fresh:
            shown = copy.deepcopy(shown)
        shown["apiVersion"], shown["kind"] = rt.api_version, rt.kind
        return shown

    def stored(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return obj

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        return self.present(rt, self.stored(rt, namespace, name))

    def list(self, rt: ResourceType, namespace: str | None, *, label_selector: str = "",
             field_selector: str = "", limit: int = 0, continue_: str = "") -> dict[str, Any]:
        labels = label_matcher(label_selector)
        fields = field_matcher(field_selector, rt.selectable_fields, rt.kind)
        start_after, list_rv = decode_continue(continue_) if continue_ else (None, None)
        chosen: list[dict[str, Any]] = []
        more = ""
        with self.store.lock:
            list_rv = list_rv or self.store.resource_version
            for stored in self.store.live_items(rt.key, namespace if rt.namespaced else None):
                meta = stored["metadata"]
                where = (meta.get("namespace", ""), meta["name"])
                if start_after is not None and where <= start_after:
                    continue
                if not (labels(meta.get("labels") or {}) and fields(self.view(rt, stored))):
                    continue
                if limit and len(chosen) == limit:
                    last = chosen[-1]["metadata"]
                    more = encode_continue((last.get("namespace", ""), last["name"]), list_rv)
                    break
                chosen.append(self.present(rt, stored))
        # Items of built-in lists carry no kind/apiVersion on the wire; custom ones do.
        shown = [o if rt.custom else _bare(o) for o in chosen]
        meta_out: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if more:
            meta_out["continue"] = more
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta_out,
                "items": shown}

    # --- writes ---------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str, body: dict[str, Any], *,
               dry_run: bool = False, strict: bool = False) -> dict[str, Any]:
        _check_kind(rt, body)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            namespace = namespace or meta.get("namespace", "")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        with self.store.lock:
            if rt.namespaced:
                self._check_namespace_open(namespace)
            if rt.custom:
                self._check_crd_open(rt)
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise invalid(rt.kind, rt.group, "", [field_required(
                        "metadata.name", "name or generateName is required")])
                meta["name"] = meta["generateName"][:MAX_GENERATED_PREFIX] + "".join(
                    random.choice(_NAME_CHARS) for _ in range(5))
            if self.store.get(rt.key, namespace if rt.namespaced else "", meta["name"]):
                raise already_exists(rt.plural, rt.group, meta["name"])
            causes = name_causes(rt, meta["name"])
            if causes:
                raise invalid(rt.kind, rt.group, meta["name"], causes)
            for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                        "generation"):
                meta.pop(key, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if rt.has_status:
                obj.pop("status", None)
            created = self.write(rt, None, obj, dry_run=dry_run, strict=strict)
            if rt.key == NAMESPACES and not dry_run:
                sa = self.resolve("", "v1", "serviceaccounts")
                self.create(sa, meta["name"], {"metadata": {"name": "default"}})
            return created

    def _check_namespace_open(self, namespace: str) -> None:
        ns = self.store.get(NAMESPACES, "", namespace)
        if ns is None:
            raise not_found("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise forbidden(f"unable to create new content in namespace {namespace} because "
                            f"it is being terminated", name=namespace, kind="namespaces")

    def _check_crd_open(self, rt: ResourceType) -> None:
        crd = self.store.get(CRD_GROUP_RESOURCE, "", rt.group_resource)
        if crd is not None and crd["metadata"].get("deletionTimestamp"):
            raise method_not_allowed("create not allowed while custom resource definition "
                                     "is terminating")

    def update(self, rt: ResourceType, namespace: str, name: str, body: dict[str, Any], *,
               subresource: str = "", dry_run: bool = False,
               strict: bool = False) -> dict[str, Any]:
        _check_kind(rt, body)
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the "
                              f"name on the URL ({name})")
        with self.store.lock:
            old = self.stored(rt, namespace, name)
            rv = meta.get("resourceVersion")
            if not rv and rt.custom:
                raise invalid(rt.kind, rt.group, name, [field_invalid(
                    "metadata.resourceVersion", "0x0", "must be specified for an update")])
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)
            new = copy.deepcopy(body)
            new.setdefault("metadata", {})["resourceVersion"] = old["metadata"][
                "resourceVersion"]
            return self.write(rt, old, new, subresource=subresource, dry_run=dry_run,
                              strict=strict)

    def patch(self, rt: ResourceType, namespace: str, name: str, content_type: str,
              patch: Any, *, subresource: str = "", dry_run: bool = False,
              strict: bool = False) -> dict[str, Any]:
        with self.store.lock:
            if content_type == APPLY_PATCH:
                existing = self.store.get(rt.key, namespace if rt.namespaced else "", name)
                if existing is None:
                    body = copy.deepcopy(patch)
                    body.setdefault("metadata", {})["name"] = name
                    return self.create(rt, namespace, body, dry_run=dry_run, strict=strict)
            old = self.stored(rt, namespace, name)
            current = self.present(rt, old)
            if content_type == MERGE_PATCH:
                new = merge_patch(current, patch)
            elif content_type == JSON_PATCH:
                new = json_patch(current, patch)
            elif content_type in (STRATEGIC_PATCH, APPLY_PATCH) and rt.strategic:
                new = strategic_merge(current, patch)
            elif content_type == APPLY_PATCH:
                new = merge_patch(current, patch)
            else:
                raise unsupported_media_type(content_type)
            if not isinstance(new, dict):
                raise bad_request("the patch did not produce an object")
            rv = (new.get("metadata") or {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)
            return self.write(rt, old, new, subresource=subresource, dry_run=dry_run,
                              strict=strict)

    def write(self, rt: ResourceType, old: dict[str, Any] | None, new: dict[str, Any], *,
              subresource: str = "", dry_run: bool = False,
              strict: bool = False) -> dict[str, Any]:
        """The one write pipeline: ``old`` is the stored object (None on create)."""
        with self.store.lock:
            new = self._apply_subresource_rules(rt, old, copy.deepcopy(new), subresource)
            meta = new.setdefault("metadata", {})
            if old is not None:
                _keep_immutable(meta, old["metadata"])
                _check_finalizers(rt, old, meta)
            meta.pop("managedFields", None)
            meta.pop("selfLink", None)
            if rt.group == events.GROUP:
                new = events.to_core(new)
            new["apiVersion"] = rt.storage_api_version
            new["kind"] = rt.kind
            new = self._admit(rt, old, new, strict)
            if tracks_generation(rt):
                if old is None:
                    meta = new["metadata"]
                    meta["generation"] = 1
                elif _spec_changed(rt, old, new):
                    new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
            if old is not None and new == old:
                return self.present(rt, old)
            if dry_run:
                return self.present(rt, new)
            if rt.key == CRD_GROUP_RESOURCE and (old is None or _spec_changed(rt, old, new)):
                new["status"] = crd_status(new, now())
            if old is not None and old["metadata"].get("deletionTimestamp") \
                    and not new["metadata"].get("finalizers") \
                    and not lifecycle.has_system_finalizer(new):
                removed = lifecycle.remove(self, rt, new)
                lifecycle.settle(self)
                return self.present(rt, removed)
            stored = self.store.put(rt.key, new)
            if rt.key == CRD_GROUP_RESOURCE:
                self._register_crd(stored)
            lifecycle.check_owners(self, rt, stored)  # stored is the store's copy for us
            return self.present(rt, stored, fresh=True)

    def _apply_subresource_rules(self, rt: ResourceType, old: dict[str, Any] | None,
                                 new: dict[str, Any], subresource: str) -> dict[str, Any]:
        if subresource == "status":
            if not rt.has_status or old is None:
                raise not_found(f"{rt.plural}/status", rt.group, new["metadata"].get("name", ""))
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            return merged
        if subresource:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if old is not None and rt.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        return new

    def _admit(self, rt: ResourceType, old: dict[str, Any] | None, new: dict[str, Any],
               strict: bool) -> dict[str, Any]:
        """Defaults and validation: the CRD schema for custom kinds, fixed rules otherwise."""
        name = new["metadata"].get("name", "")
        if rt.custom:
            unknown: list[str] = []
            assert rt.schema is not None
            new = normalize(new, rt.schema, unknown)
            if strict and unknown:
                raise bad_request(_strict_message(rt, unknown))
            causes = validate(new, rt.schema, old)
        else:
            apply_builtin_defaults(rt, new, old)
            causes = []
            # A write that changes only metadata or status (a kubelet report) skips the
            # schema pass: the rest was checked when it was written.
            if old is None or _spec_changed(rt, old, new, status_too=True):
                unknown, causes = builtin_check(new)
                if strict and unknown:
                    raise bad_request(_strict_message(rt, unknown))
            try:
                causes += podrules.kind_causes(new)
            except podrules.QuantityError as exc:
                raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as '
                                  f'a {rt.kind}: {exc}') from exc
            if old is not None:
                causes += update_causes(rt, old, new)
            if rt.key == CRD_GROUP_RESOURCE:
                causes += crd_causes(new)
        causes = meta_causes(new["metadata"]) + causes
        if causes:
            raise invalid(rt.kind, rt.group, name, causes)
        return new


def _strict_message(rt: ResourceType, unknown: list[str]) -> str:
    fields = ", ".join(f'unknown field "{u}"' for u in unknown)
    return (f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
            f'strict decoding error: {fields}')


def _check_kind(rt: ResourceType, body: Any) -> None:
    if not isinstance(body, dict):
        raise bad_request("the body of the request must be a JSON object")
    kind = body.get("kind")
    if kind and kind != rt.kind:
        raise bad_request(f"the kind of the provided object ({kind}) does not match the kind "
                          f"of the request ({rt.kind})")


def _keep_immutable(meta: dict[str, Any], old_meta: dict[str, Any]) -> None:
    for key in _IMMUTABLE_META:
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)


def _check_finalizers(rt: ResourceType, old: dict[str, Any], meta: dict[str, Any]) -> None:
    if not old["metadata"].get("deletionTimestamp"):
        return
    added = set(meta.get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
    if added:
        raise invalid(rt.kind, rt.group, meta.get("name", ""), [{
            "reason": "FieldValueForbidden", "field": "metadata.finalizers",
            "message": "Forbidden: no new finalizers can be added if the object is being "
                       "deleted, found new finalizers " + json.dumps(sorted(added))}])


def _spec_changed(rt: ResourceType, old: dict[str, Any], new: dict[str, Any],
                  status_too: bool = False) -> bool:
    """Everything but metadata (and status, where status is a subresource) is 'spec'."""
    skip = {"metadata", "status"} if rt.has_status or status_too else {"metadata"}
    skip |= {"apiVersion", "kind"}
    return ({k: v for k, v in old.items() if k not in skip}
            != {k: v for k, v in new.items() if k not in skip})


def _bare(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
