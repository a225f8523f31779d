"""Headless Chromium driven over the DevTools protocol, with aiohttp's websocket client.

Just what the dashboard tests need: open a page, run JavaScript, wait for a DOM condition
(a MutationObserver inside the page resolves a promise, so no sleep-polling), click, take a
screenshot, and record console errors and every URL the page requested.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
    "--disable-extensions", "--disable-sync", "--metrics-recording-only",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--hide-scrollbars",
]


class PageTimeout(AssertionError):
    """A ``wait_for`` condition stayed false until its timeout."""


class Page:
    """One browser tab."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self.console_errors: list[str] = []
        self.requested: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"])
                if future.done():  # the caller gave up waiting
                    continue
                if "error" in data:
                    future.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Runtime.exceptionThrown":
                self.console_errors.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                self.console_errors.append(params["entry"]["text"])
            elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
                self.console_errors.append(json.dumps(params["args"])[:500])
            elif method == "Network.requestWillBeSent":
                self.requested.append(params["request"]["url"])
            for name, waiter in list(self._listeners):
                if name == method and not waiter.done():
                    waiter.set_result(params)
                    self._listeners.remove((name, waiter))

    async def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        return await asyncio.wait_for(future, timeout)

    def expect(self, method: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the next event named ``method`` (register before causing it)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._listeners.append((method, future))
        return future

    async def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        result = await self.send("Runtime.evaluate", timeout=timeout, expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        loaded = self.expect("Page.loadEventFired")
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded, 15)

    async def wait_for(self, condition: str, timeout: float = 10.0) -> Any:
        """Resolve when the JS expression ``condition`` is truthy, re-checked on each DOM change."""
        script = f"""new Promise((resolve, reject) => {{
            const check = () => {{ try {{ const v = ({condition}); if (v) {{ resolve(v); return true; }} }}
                                   catch (e) {{}} return false; }};
            if (check()) return;
            const observer = new MutationObserver(() => {{ if (check()) observer.disconnect(); }});
            observer.observe(document, {{subtree: true, childList: true, attributes: true,
                                         characterData: true}});
            setTimeout(() => {{ observer.disconnect(); reject(new Error("timed out: " + {json.dumps(condition)})); }},
                       {int(timeout * 1000)});
        }})"""
        # The page rejects at ``timeout``; the protocol call waits a little longer for that.
        try:
            return await self.evaluate(script, timeout=timeout + 10)
        except RuntimeError as exc:
            if "timed out: " in str(exc):
                raise PageTimeout(f"still false after {timeout}s: {condition}") from None
            raise

    async def screenshot(self, path: Path) -> None:
        size = (await self.send("Page.getLayoutMetrics"))["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = await self.send("Page.captureScreenshot", format="png", clip=clip,
                               captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()


@asynccontextmanager
async def chromium_page(width: int = 1440, height: int = 1000) -> AsyncIterator[Page]:
    """A fresh headless Chromium (own profile directory) and its first tab."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="memkube-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
            "about:blank", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HOME": profile})
        drain: asyncio.Task[None] | None = None
        try:
            port = await asyncio.wait_for(_devtools_port(proc), 30)
            # Keep reading stderr so a chatty browser never blocks on a full pipe.
            assert proc.stderr is not None
            drain = asyncio.create_task(_drain(proc.stderr))
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                    targets = await r.json()
                url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                ws = await http.ws_connect(url, max_msg_size=64 * 1024 * 1024)
                page = Page(ws)
                for domain in ("Page", "Runtime", "Log", "Network"):
                    await page.send(f"{domain}.enable")
                await page.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                                deviceScaleFactor=1, mobile=False)
                try:
                    yield page
                finally:
                    await page.close()
        finally:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()
            if drain is not None:
                await drain


async def _devtools_port(proc: asyncio.subprocess.Process) -> int:
    assert proc.stderr is not None
    while line := await proc.stderr.readline():
        match = re.search(rb"DevTools listening on ws://[^:]+:(\d+)/", line)
        if match:
            return int(match.group(1))
    raise RuntimeError(f"chromium exited ({await proc.wait()}) before opening DevTools")


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass
