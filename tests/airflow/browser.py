"""Debian's headless Chromium, driven over the DevTools protocol: a session cookie, navigation,
the rendered DOM, screenshots. The same protocol Playwright and Puppeteer speak, without either."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, profile: Path) -> None:
        from websockets.sync.client import connect

        self._closing = contextlib.ExitStack()  # the DevTools connection, closed by close()
        profile.mkdir(parents=True, exist_ok=True)
        arguments = [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", "--window-size=1400,1800", "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            arguments,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        self.socket = self._closing.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=20)
        )
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.call("Page.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def set_cookie(self, name: str, value: str, url: str) -> None:
        self.call("Network.setCookie", name=name, value=value, url=url, httpOnly=True, sameSite="Lax")

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str, ready: str = "document.readyState === 'complete'", timeout: float = 60) -> None:
        """Navigate, then wait until the JavaScript condition ``ready`` holds (the UI renders late)."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                if self.evaluate(f"document.readyState === 'complete' && Boolean({ready})"):
                    return
            time.sleep(0.5)
        raise AssertionError(f"{url}: not ready ({ready}) within {timeout}s:\n{self.dom()[-2000:]}")

    def click(self, element: str, timeout: float = 30) -> None:
        """A real mouse click (DevTools input events) at the centre of the element the JavaScript
        expression ``element`` finds, once it is there and has a size: what a user's click does. An
        element inside a same-origin frame (``...contentDocument.querySelector(...)``) is clicked there."""
        where = (
            f"(() => {{ const e = {element}; if (!e) return null; e.scrollIntoView({{block: 'center'}}); "
            "const r = e.getBoundingClientRect(); if (!r.width || !r.height) return null; "
            "let x = r.x + r.width / 2, y = r.y + r.height / 2; "
            "const frame = e.ownerDocument.defaultView.frameElement; "
            "if (frame) { const f = frame.getBoundingClientRect(); x += f.x; y += f.y; } return [x, y]; })()"
        )
        deadline = time.monotonic() + timeout
        while (point := self.evaluate(where)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing to click: {element}")
            time.sleep(0.3)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=point[0], y=point[1], button="left", clickCount=1)

    def type_text(self, text: str) -> None:
        """Text typed into the focused field, as a keyboard would."""
        self.call("Input.insertText", text=text)

    def wait(self, condition: str, timeout: float = 60) -> Any:
        """The value of the JavaScript expression ``condition`` once it is truthy (an element: True)."""
        probe = (
            f"(() => {{ const v = ({condition}); return v && typeof v === 'object' && 'nodeType' in v ? true : v; }})()"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                if value := self.evaluate(probe):
                    return value
            time.sleep(0.3)
        raise AssertionError(f"not true within {timeout}s: {condition}")

    def download_to(self, folder: Path) -> None:
        """Files the page downloads land in ``folder``, as a user's browser saves them."""
        folder.mkdir(parents=True, exist_ok=True)
        self.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(folder))

    def dom(self) -> str:
        return str(self.evaluate("document.documentElement.outerHTML"))

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._closing.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
