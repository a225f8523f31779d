"""Helpers for tests that speak raw HTTP to the double: a small JSON client.

``Http(session, api.url)`` sends JSON (or a patch type) and returns ``(status, body)``;
``watch`` reads a number of events from a watch stream. ``Kubectl(api, cache_dir)`` runs the
kubectl on the PATH against a (thread-run) double. Not used by the double itself.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from .double import ApiDouble


class Http:
    """A thin JSON client: every call returns (status code, decoded body)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def request(self, method: str, path: str, body: Any = None, *,
                      content_type: str = "application/json",
                      headers: dict[str, str] | None = None,
                      params: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
        hdrs = {"Content-Type": content_type, **(headers or {})}
        async with self.session.request(method, self.url + path, data=data, headers=hdrs,
                                        params=params) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except json.JSONDecodeError:
                return response.status, text

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, body, **kw)

    async def put(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        return await self.request("PUT", path, body, **kw)

    async def patch(self, path: str, body: Any, kind: str = "merge", **kw: Any
                    ) -> tuple[int, Any]:
        return await self.request("PATCH", path, body,
                                  content_type=f"application/{kind}-patch+json", **kw)

    async def delete(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("DELETE", path, body, **kw)

    async def watch(self, path: str, params: dict[str, str], count: int,
                    timeout: float = 5.0) -> list[dict[str, Any]]:
        """Read ``count`` events from a watch stream (then close it)."""
        events: list[dict[str, Any]] = []
        query = {"watch": "true", **params}
        async with self.session.get(self.url + path, params=query,
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            while len(events) < count:
                line = await response.content.readline()
                if not line:
                    break
                events.append(json.loads(line))
        return events


class Kubectl:
    """Runs kubectl with the double's kubeconfig and a private discovery cache."""

    def __init__(self, api: ApiDouble, cache: Path) -> None:
        self.api, self.cache = api, cache

    def __call__(self, *args: str, check: bool = True, stdin: str | None = None,
                 timeout: float = 30) -> subprocess.CompletedProcess[str]:
        cmd = ["kubectl", "--kubeconfig", str(self.api.kubeconfig_path),
               "--cache-dir", str(self.cache), *args]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, input=stdin,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {done.stderr}")
        return done
