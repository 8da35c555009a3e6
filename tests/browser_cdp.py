"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe).

A pipe needs no port, no websocket library and no polling for a debugger URL: the
browser reads commands from fd 3 and writes replies and events to fd 4, NUL-separated
JSON. Used by the browser tests of `looptool report` and the offline `dvc plots` page.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("chromium-headless-shell", "chromium", "chromium-browser")
APT_PACKAGE = "chromium-headless-shell"


def find_chromium() -> str | None:
    return next((p for b in BINARIES if (p := shutil.which(b))), None)


def ensure_chromium() -> tuple[str | None, str]:
    """(binary, "") or (None, why not): installs the Debian package when root with apt."""
    found = find_chromium()
    if found:
        return found, ""
    if os.environ.get("LOOPTOOL_NO_APT"):
        return None, "no chromium on PATH and LOOPTOOL_NO_APT is set"
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return None, f"no chromium on PATH; install it with: apt-get install {APT_PACKAGE}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", APT_PACKAGE]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, check=False)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    found = find_chromium()
    if found:
        return found, ""
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return None, f"`{' '.join(cmd)}` failed: {tail}"


@dataclass
class PageResult:
    """What the page did while loading: every request, console error and exception."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    evaluated: object = None
    screenshot: bytes = b""
    clips: dict[str, bytes] = field(default_factory=dict)


class Browser:
    """One headless Chromium process; use as a context manager."""

    def __init__(self, binary: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="looptool-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()

        def wire_fds() -> None:  # in the child: fd 3 = commands in, fd 4 = replies out
            os.dup2(cmd_r, 3)
            os.dup2(out_w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--no-first-run", "--disable-background-networking", "--disable-sync",
             "--disable-component-update", "--disable-default-apps", "--disable-extensions",
             # requests cannot reach anything even if attempted; the test still sees attempts
             "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
             f"--user-data-dir={self._profile}", "about:blank"],
            preexec_fn=wire_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(cmd_r)
        os.close(out_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            os.close(self._cmd_w)
        except OSError:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._out_r)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read_message(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium stopped answering on the debugging pipe")
            chunk = os.read(self._out_r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and return its result (events seen meanwhile are kept)."""
        self._next += 1
        msg: dict = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str) -> dict:
        while True:
            for e in self.events:
                if e.get("method") == method and e.get("sessionId") == session:
                    return e
            self.events.append(self._read_message())

    def load(self, url: str, expression: str, clips_of: str = "") -> PageResult:
        """Open ``url``; evaluate ``expression`` (JSON-returning JS) after load; screenshots.

        ``clips_of``: a JS expression giving {name: [x, y, w, h]} page rectangles to
        capture one by one (e.g. each chart).
        """
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=s)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                  session=s)  # fmt: skip
        self.send("Page.navigate", {"url": url}, session=s)
        self.wait_event("Page.loadEventFired", s)
        # vega renders asynchronously after load; give pending tasks a turn
        self.send("Runtime.evaluate", {"expression": "new Promise(r => setTimeout(r, 500))",
                                       "awaitPromise": True}, session=s)  # fmt: skip
        res = PageResult()
        out = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True}, session=s)  # fmt: skip
        res.evaluated = json.loads(out["result"].get("value") or "null")
        size = self.send("Page.getLayoutMetrics", session=s)["cssContentSize"]
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                         "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                                  "scale": 1}}, session=s)  # fmt: skip
        res.screenshot = base64.b64decode(shot["data"])
        if clips_of:
            rects = self.send("Runtime.evaluate", {"expression": clips_of, "returnByValue": True},
                              session=s)["result"].get("value") or "{}"  # fmt: skip
            for name, (x, y, w, h) in json.loads(rects).items():
                clip = {"x": x, "y": y, "width": max(w, 1), "height": max(h, 1), "scale": 1}
                data = self.send("Page.captureScreenshot", {"format": "png", "clip": clip,
                                 "captureBeyondViewport": True}, session=s)["data"]  # fmt: skip
                res.clips[name] = base64.b64decode(data)
        for e in self.events:
            if e.get("sessionId") != s:
                continue
            p = e.get("params", {})
            if e["method"] == "Network.requestWillBeSent":
                res.requests.append(p["request"]["url"])
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                res.console_errors.append(json.dumps(p.get("args"))[:300])
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                res.console_errors.append(p["entry"].get("text", "")[:300])
            elif e["method"] == "Runtime.exceptionThrown":
                res.exceptions.append(json.dumps(p.get("exceptionDetails"))[:300])
        return res


def ink_fraction(png: bytes) -> float:
    """Share of pixels in a PNG that are not (near) white: 0.0 means a blank area."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("L")
    hist = img.histogram()
    return sum(hist[:240]) / max(1, img.width * img.height)


def colour_fraction(png: bytes) -> float:
    """Share of saturated pixels: the data marks (axes, grid and text are grey)."""
    import io

    from PIL import Image

    sat = Image.open(io.BytesIO(png)).convert("RGB").convert("HSV").getchannel("S")
    return sum(sat.histogram()[64:]) / max(1, sat.width * sat.height)


def file_url(path: Path) -> str:
    return Path(path).resolve().as_uri()
