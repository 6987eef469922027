"""Open an HTML file in headless Chromium (Debian's ``chromium``) over the DevTools protocol, for tests.

`inspect_page` loads the page offline, collects console errors and exceptions, runs a few checks in the page and
keeps a full-page screenshot. Run as a script to screenshot a report:
``python tests/browser.py results/report.html docs/report.png``.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
# Facts read from the loaded page: every image decoded, text, and whether a phone-wide page scrolls sideways.
_PAGE_FACTS = """JSON.stringify({
  images: document.images.length,
  broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
  text: document.body.innerText,
  scripts: document.scripts.length,
  overflow: document.documentElement.scrollWidth - window.innerWidth
})"""


def chromium() -> str | None:
    """The Chromium executable, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageReport:
    images: int
    broken: list[str]
    text: str
    scripts: int
    overflow: int
    errors: list[str] = field(default_factory=list)


class _DevTools:
    def __init__(self, url: str) -> None:
        self.socket = websocket.create_connection(url, timeout=30)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(message.get("method") == event for message in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event} within {timeout} s")
            self.events.append(json.loads(self.socket.recv()))


def _start(executable: str, profile: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"DevTools listening on (ws://\S+)", line)
        if found:
            port = found.group(1).split(":")[2].split("/")[0]
            return process, port
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("chromium did not start its DevTools endpoint")


def inspect_page(path: Path, screenshot: Path, width: int = 1000, height: int = 900) -> PageReport:
    """Load ``path`` with a ``width`` x ``height`` viewport; returns what the page holds and every console error."""
    executable = chromium()
    if executable is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        process, port = _start(executable, profile)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
                targets = json.load(response)
            page = next(target for target in targets if target["type"] == "page")
            tools = _DevTools(page["webSocketDebuggerUrl"])
            for domain in ("Page", "Runtime", "Log"):
                tools.call(f"{domain}.enable")
            tools.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                       mobile=width < 600)  # fmt: skip
            tools.call("Page.navigate", url=path.resolve().as_uri())
            tools.wait_for("Page.loadEventFired")
            tools.call("Runtime.evaluate", expression="document.fonts.ready.then(() => true)", awaitPromise=True)
            facts = json.loads(tools.call("Runtime.evaluate", expression=_PAGE_FACTS)["result"]["value"])
            size = tools.call("Page.getLayoutMetrics")["cssContentSize"]
            shot = tools.call(
                "Page.captureScreenshot",
                format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": width, "height": min(size["height"], 16000), "scale": 1},
            )
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            errors = [
                json.dumps(message["params"], ensure_ascii=False)[:500]
                for message in tools.events
                if message.get("method") == "Runtime.exceptionThrown"
                or (message.get("method") == "Log.entryAdded" and message["params"]["entry"]["level"] == "error")
                or (message.get("method") == "Runtime.consoleAPICalled" and message["params"]["type"] == "error")
            ]
            tools.socket.close()
        finally:
            process.kill()
            process.wait()
    return PageReport(**facts, errors=errors)


if __name__ == "__main__":
    report = inspect_page(Path(sys.argv[1]), Path(sys.argv[2]), height=int(sys.argv[3]) if len(sys.argv) > 3 else 900)
    print(f"{report.images} images, {len(report.broken)} broken, {len(report.errors)} console errors")
