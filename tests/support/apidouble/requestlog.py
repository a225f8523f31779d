"""The request log: what every served request meant in RBAC terms.

Each record names the RBAC verb (get, list, watch, create, update, patch, delete,
deletecollection), apiGroup, resource, subresource, namespace and name, so a test can compare
what a client actually did with the Role a chart grants it. Non-resource requests (discovery,
/version, /openapi) are logged with an empty resource and their path. A record is logged
when its request arrives; ``code`` is 0 until the answer is known (long for a watch).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TypedDict


class RequestRecord(TypedDict):
    method: str
    path: str
    query: str
    verb: str
    apiGroup: str
    apiVersion: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int


class RequestLog:
    """Append-only, thread-safe list of ``RequestRecord``s."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._lock.notify_all()

    def wait_for(self, predicate: Callable[[RequestRecord], bool],
                 timeout: float = 10.0) -> RequestRecord:
        """Block until a logged request matches (e.g. a client has started watching)."""
        def found() -> RequestRecord | None:
            return next((r for r in self._records if predicate(r)), None)

        with self._lock:
            if not self._lock.wait_for(lambda: found() is not None, timeout):
                raise TimeoutError(f"no matching request within {timeout}s")
            record = found()
            assert record is not None
            return record

    def __iter__(self) -> Iterator[RequestRecord]:
        with self._lock:
            return iter(list(self._records))

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __getitem__(self, index: int) -> RequestRecord:
        with self._lock:
            return self._records[index]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def resource_requests(self) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self._records if r["resource"]]

    def permissions(self) -> set[tuple[str, str, str]]:
        """(apiGroup, resource[/subresource], verb) triples, the shape of RBAC rules."""
        return {(r["apiGroup"],
                 f"{r['resource']}/{r['subresource']}" if r["subresource"] else r["resource"],
                 r["verb"]) for r in self.resource_requests()}
