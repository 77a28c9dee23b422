"""Headless Chromium over the DevTools protocol, for checking what a page really renders.

Starts Debian's ``chromium`` with ``--remote-debugging-port=0``, attaches to one page and
records console messages, uncaught exceptions, log entries and every network request while
the page loads; then evaluates a DOM probe and takes screenshots (PNG bytes).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEM_DEPS = REPO_ROOT / "scripts" / "system-deps.sh"
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    explicit = os.environ.get("DISTILLWATCH_CHROMIUM")
    if explicit:
        return explicit
    return next((p for p in map(shutil.which, NAMES) if p), None)


def require_chromium() -> str:
    """The browser; installed through scripts/system-deps.sh when missing. Skips only when
    there is neither a browser nor the script to install one."""
    found = find_chromium()
    if found:
        return found
    if not SYSTEM_DEPS.exists():
        pytest.skip("headless Chromium not found (apt-get install chromium) and scripts/system-deps.sh is absent")
    done = subprocess.run([str(SYSTEM_DEPS)], capture_output=True, text=True, timeout=900)
    found = find_chromium()
    if not found:
        pytest.fail(f"scripts/system-deps.sh did not install chromium (exit {done.returncode}): "
                    f"{done.stderr.strip()[-500:]}")
    return found


@dataclass
class PageReport:
    console: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    probe: Any = None
    screenshot: bytes = b""
    clips: dict[str, bytes] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries, as text."""
        out = [json.dumps(m.get("args", []))[:300] for m in self.console if m.get("type") in ("error", "assert")]
        out += [json.dumps(e.get("exceptionDetails", {}))[:300] for e in self.exceptions]
        out += [e.get("entry", {}).get("text", "")[:300] for e in self.log
                if e.get("entry", {}).get("level") == "error"]
        return out


class _Session:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.waiters: list[tuple[str, asyncio.Future[Any]]] = []

    async def pump(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                self.events.append(data)
                for method, fut in list(self.waiters):
                    if method == data["method"] and not fut.done():
                        fut.set_result(data)

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        msg_id = next(self.ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = fut
        payload: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            payload["sessionId"] = session
        await self.ws.send_str(json.dumps(payload))
        reply = await asyncio.wait_for(fut, 60)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def waiter(self, method: str) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters.append((method, fut))
        return fut


async def _inspect(ws_url: str, url: str, probe: str, clip_selector: str | None, width: int) -> PageReport:
    import aiohttp

    report = PageReport()
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        s = _Session(ws)
        pump = asyncio.create_task(s.pump())
        target = (await s.call("Target.createTarget", url="about:blank"))["targetId"]
        sid = (await s.call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            await s.call(f"{domain}.enable", sid)
        await s.call("Emulation.setDeviceMetricsOverride", sid, width=width, height=900, deviceScaleFactor=1,
                     mobile=False)
        loaded = s.waiter("Page.loadEventFired")
        await s.call("Page.navigate", sid, url=url)
        await asyncio.wait_for(loaded, 60)
        result = await s.call("Runtime.evaluate", sid, expression=probe, returnByValue=True)
        report.probe = result["result"].get("value")
        metrics = await s.call("Page.getLayoutMetrics", sid)
        size = metrics["cssContentSize"]
        shot = await s.call("Page.captureScreenshot", sid, format="png", captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        report.screenshot = base64.b64decode(shot["data"])
        if clip_selector:
            boxes = await s.call("Runtime.evaluate", sid, returnByValue=True, expression=(
                f"[...document.querySelectorAll({json.dumps(clip_selector)})].map(e => {{"
                "const r = e.getBoundingClientRect(); return [e.id, r.left + scrollX, r.top + scrollY,"
                " r.width, r.height]; })"))
            for name, x, y, w, h in boxes["result"]["value"]:
                part = await s.call("Page.captureScreenshot", sid, format="png", captureBeyondViewport=True,
                                    clip={"x": x, "y": y, "width": max(w, 1), "height": max(h, 1), "scale": 1})
                report.clips[name] = base64.b64decode(part["data"])
        await asyncio.sleep(0.2)  # late console messages
        for e in s.events:
            method, params = e["method"], e.get("params", {})
            if method == "Runtime.consoleAPICalled":
                report.console.append(params)
            elif method == "Runtime.exceptionThrown":
                report.exceptions.append(params)
            elif method == "Log.entryAdded":
                report.log.append(params)
            elif method == "Network.requestWillBeSent":
                report.requests.append(params["request"]["url"])
        await s.call("Target.closeTarget", targetId=target)
        pump.cancel()
    return report


def inspect_page(binary: str, url: str, probe: str, clip_selector: str | None = None,
                 width: int = 1280) -> PageReport:
    """Load ``url`` in a fresh headless Chromium profile and report what happened."""
    # Chromium's helper processes may still write to the profile just after the browser
    # exits (CI once saw "Directory not empty: 'Default'"): remove it with retries, and never
    # fail a page check over a temporary directory.
    with tempfile.TemporaryDirectory(prefix="dw-chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            ws_url = _devtools_url(proc)
            return asyncio.run(_inspect(ws_url, url, probe, clip_selector, width))
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            for _ in range(50):
                shutil.rmtree(profile, ignore_errors=True)
                if not os.path.exists(profile):
                    break
                time.sleep(0.1)


def _devtools_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line.strip())
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:  # keep draining stderr so a chatty browser never blocks on a full pipe
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
            return match[1]
    raise RuntimeError("chromium did not start its DevTools endpoint: " + " | ".join(seen[-5:]))
