"""Object storage with one resourceVersion counter and an event history for watches.

Thread-safe (one re-entrant lock) because the HTTP server runs on an event loop that may live
in another thread than the test reading or changing objects directly. Every change gets the
next resourceVersion, is kept in a bounded history (for ``watch`` from a resourceVersion) and
is handed to listeners while the lock is held, so that a watcher subscribing under the lock
misses nothing and sees nothing twice. Knows nothing of HTTP, schemas or verbs.
"""

from __future__ import annotations

import collections
import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import gone

Key = tuple[str, str]          # (group, plural)
ObjKey = tuple[str, str]       # (namespace or "", name)


@dataclass(frozen=True)
class Change:
    """One stored change: ``obj`` after it (the last state for DELETED), ``old`` before it."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: Key
    obj: dict[str, Any]
    old: dict[str, Any] | None


Listener = Callable[[Change], None]


class Store:
    def __init__(self, history: int = 100_000) -> None:
        self.lock = threading.RLock()
        self._rv = 0
        self._objects: dict[Key, dict[ObjKey, dict[str, Any]]] = collections.defaultdict(dict)
        self._history: collections.deque[Change] = collections.deque(maxlen=history)
        self._compacted = 0  # changes with rv <= this are no longer in the history
        self._listeners: list[Listener] = []

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    def get(self, key: Key, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self._objects[key].get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def items(self, key: Key, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of one type in key order (namespace, name), like etcd's range reads."""
        with self.lock:
            found = [obj for (ns, _), obj in sorted(self._objects[key].items())
                     if namespace is None or ns == namespace]
            return copy.deepcopy(found)

    def live_items(self, key: Key, namespace: str | None = None) -> list[dict[str, Any]]:
        """The stored objects themselves, in key order, for scans that copy only what they
        keep: call with the lock held and never change what it returns."""
        return [obj for (ns, _), obj in sorted(self._objects[key].items())
                if namespace is None or ns == namespace]

    def keys(self) -> list[Key]:
        with self.lock:
            return [k for k, v in self._objects.items() if v]

    def put(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` under a new resourceVersion; returns the stored copy."""
        with self.lock:
            meta = obj["metadata"]
            where = (meta.get("namespace", ""), meta["name"])
            old = self._objects[key].get(where)
            self._rv += 1
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[key][where] = stored
            self._record(Change(self._rv, "MODIFIED" if old else "ADDED", key, stored, old))
            return copy.deepcopy(stored)

    def remove(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        """Delete an object; the DELETED change carries ``obj`` under the new resourceVersion."""
        with self.lock:
            meta = obj["metadata"]
            where = (meta.get("namespace", ""), meta["name"])
            old = self._objects[key].pop(where)
            self._rv += 1
            last = copy.deepcopy(obj)
            last["metadata"]["resourceVersion"] = str(self._rv)
            self._record(Change(self._rv, "DELETED", key, last, old))
            return copy.deepcopy(last)

    def _record(self, change: Change) -> None:
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        self._history.append(change)
        for listener in list(self._listeners):
            listener(change)

    def changes_since(self, key: Key, rv: int) -> list[Change]:
        """Changes of one type after ``rv``; 410 Gone when the history no longer reaches it."""
        with self.lock:
            if rv < self._compacted:
                raise gone(f"too old resource version: {rv} ({self._compacted + 1})")
            return [c for c in self._history if c.rv > rv and c.key == key]

    def compact(self) -> None:
        """Forget the history (as etcd compaction does): older watches then get 410 Gone."""
        with self.lock:
            self._compacted = self._rv
            self._history.clear()

    def subscribe(self, listener: Listener) -> None:
        with self.lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def all_objects(self, where: Callable[[dict[str, Any]], bool] | None = None,
                    ) -> list[tuple[Key, dict[str, Any]]]:
        """Copies of every object (or of those ``where`` accepts, tested on the stored ones)."""
        with self.lock:
            return [(k, copy.deepcopy(o)) for k, objs in self._objects.items()
                    for o in objs.values() if where is None or where(o)]

    def any_object(self, where: Callable[[dict[str, Any]], bool]) -> bool:
        with self.lock:
            return any(where(o) for objs in self._objects.values() for o in objs.values())
