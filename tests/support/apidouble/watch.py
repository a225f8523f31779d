"""Watch streams: which changes a watcher sees, from which resourceVersion.

A watch without a resourceVersion (or with "0") starts with synthetic ADDED events for what
exists; a watch from resourceVersion N sends only changes after N (410 Gone if the history
no longer reaches N). With a selector, an object that starts or stops matching appears as
ADDED or DELETED, as the API server's watch cache does. ``sendInitialEvents`` ends the initial
batch with a BOOKMARK annotated ``k8s.io/initial-events-end``.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from .registry import Registry
from .resources import ResourceType
from .selectors import field_matcher, label_matcher
from .store import Change


class WatchEvent(TypedDict):
    type: str
    object: dict[str, Any]


class Watch:
    def __init__(self, reg: Registry, rt: ResourceType, namespace: str | None, *,
                 label_selector: str = "", field_selector: str = "",
                 resource_version: str = "", send_initial_events: bool = False) -> None:
        self._reg, self._rt, self._namespace = reg, rt, namespace if rt.namespaced else None
        self._labels = label_matcher(label_selector)
        self._fields = field_matcher(field_selector, rt.selectable_fields, rt.kind)
        self._rv = resource_version
        self._send_initial = send_initial_events
        self._queue: asyncio.Queue[Change] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self.last_rv = 0

    def _matches(self, stored: dict[str, Any] | None) -> bool:
        if stored is None:
            return False
        obj = self._reg.view(self._rt, stored)  # selectors see this API's field names
        meta = obj["metadata"]
        if self._namespace is not None and meta.get("namespace") != self._namespace:
            return False
        return self._labels(meta.get("labels") or {}) and self._fields(obj)

    def start(self) -> list[WatchEvent]:
        """Subscribe and return the events to send first (atomic with the subscription)."""
        store = self._reg.store
        with store.lock:
            self.last_rv = store.resource_version
            if self._rv in ("", "0") or self._send_initial:
                ns = self._namespace
                initial = [WatchEvent(type="ADDED", object=self._reg.present(self._rt, o))
                           for o in store.items(self._rt.key, ns) if self._matches(o)]
                if self._send_initial:
                    initial.append(self.bookmark(initial_end=True))
            else:
                initial = [e for c in store.changes_since(self._rt.key, int(self._rv))
                           if (e := self.translate(c)) is not None]
            store.subscribe(self._on_change)
        return initial

    def _on_change(self, change: Change) -> None:
        if change.key == self._rt.key:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, change)

    def close(self) -> None:
        self._reg.store.unsubscribe(self._on_change)

    async def next(self) -> WatchEvent:
        """The next change this watcher is to see (changes it must not see are skipped)."""
        while True:
            event = self.translate(await self._queue.get())
            if event is not None:
                return event

    def translate(self, change: Change) -> WatchEvent | None:
        self.last_rv = max(self.last_rv, change.rv)
        now, before = self._matches(change.obj), self._matches(change.old)
        if change.type == "DELETED":
            kind = "DELETED" if before or now else None
        elif change.type == "ADDED":
            kind = "ADDED" if now else None
        elif now:
            kind = "MODIFIED" if before else "ADDED"
        else:
            kind = "DELETED" if before else None
        if kind is None:
            return None
        return WatchEvent(type=kind, object=self._reg.present(self._rt, change.obj))

    def bookmark(self, initial_end: bool = False) -> WatchEvent:
        meta: dict[str, Any] = {"resourceVersion": str(self.last_rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return WatchEvent(type="BOOKMARK", object={
            "kind": self._rt.kind, "apiVersion": self._rt.api_version, "metadata": meta})
