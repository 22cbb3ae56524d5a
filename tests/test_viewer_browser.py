"""The web viewer in a real headless Chromium: the map's points are drawn in their instance colours,
and a selection made from Python reaches the open page (others dimmed).

Chromium is driven over the DevTools protocol (``--remote-debugging-port``), screenshots taken in real
time until the scene shows or a deadline passes. ``--screenshot`` with ``--virtual-time-budget`` was
tried first: fast-forwarded timers make viser's client drop and re-open its websocket, so the page is
often captured faded and half-loaded, whatever the budget. WebGL runs on SwiftShader (software).
Skips when Chromium or viser is absent.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("viser")
from websockets.sync.client import connect  # noqa: E402  (viser's own dependency)

from scene.datasets.synthetic import make_scene  # noqa: E402
from viz.overlay import id_color  # noqa: E402
from viz.samples import synthetic_map  # noqa: E402
from viz.viewer import serve_map  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-unsafe-swiftshader", "--window-size=800,600", "--remote-debugging-port=0"]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Browser:
    """One headless Chromium showing ``url``, spoken to over the DevTools websocket (opened on the URL
    from the start: navigating an about:blank page swaps its process and detaches the connection)."""

    def __init__(self, profile: Path, url: str, start_timeout: float = 30.0) -> None:
        self.process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", url],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + start_timeout
        while not port_file.is_file() or len(port_file.read_text().split()) < 2:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                pytest.fail(f"chromium did not open its DevTools port within {start_timeout} s")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            page = next(t for t in json.load(answer) if t["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self._id = 0
        self.call("Emulation.setDeviceMetricsOverride", width=800, height=600, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.socket.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # skip events until our answer comes
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method}: {message['error']}")
                return message["result"]

    def screenshot(self) -> np.ndarray:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # chromium's helper processes share the group
        self.process.wait(timeout=10)


def found_ids(image: np.ndarray, ids: list[int], tolerance: int = 20, min_pixels: int = 40) -> set[int]:
    """Ids whose instance colour covers at least ``min_pixels`` pixels (each channel within ``tolerance``)."""
    pixels = image.reshape(-1, 1, 3).astype(np.int16)
    colours = id_color(np.array(ids)).astype(np.int16)[None]
    close = np.all(np.abs(pixels - colours) <= tolerance, axis=-1)
    return {i for i, n in zip(ids, close.sum(axis=0)) if n >= min_pixels}


def wait_for(browser: Browser, accept, timeout: float) -> np.ndarray:
    """Screenshots every 0.5 s until ``accept(image)`` holds; returns the last one either way."""
    deadline = time.monotonic() + timeout
    while True:
        image = browser.screenshot()
        if accept(image) or time.monotonic() > deadline:
            return image
        time.sleep(0.5)


@pytest.fixture(scope="module")
def room():
    return synthetic_map(make_scene("room", seed=0, num_frames=12, width=160, height=120), max_points_per_object=3000)


def test_points_are_drawn_in_instance_colours_and_selection_reaches_the_page(room, tmp_path):
    viewer = serve_map(room, port=free_port())
    browser = Browser(Path(tempfile.mkdtemp(dir=tmp_path)), viewer.url)
    try:
        ids = [o.id for o in room if not o.is_structure]  # structure is drawn faded
        shown = wait_for(browser, lambda image: len(found_ids(image, ids)) >= 8, timeout=40)
        cv2.imwrite(str(tmp_path / "viewer.png"), cv2.cvtColor(shown, cv2.COLOR_RGB2BGR))
        found = found_ids(shown, ids)
        assert len(found) >= 8, f"only ids {sorted(found)} of {ids} found in {tmp_path / 'viewer.png'}"

        sofa = max((o for o in room if o.attributes["kind"] == "sofa" and o.id in found), key=lambda o: o.num_points)
        viewer.select(sofa.id)
        others = [i for i in ids if i != sofa.id]
        selected = wait_for(browser, lambda image: len(found_ids(image, others)) <= 2, timeout=20)
        cv2.imwrite(str(tmp_path / "selected.png"), cv2.cvtColor(selected, cv2.COLOR_RGB2BGR))
        assert sofa.id in found_ids(selected, [sofa.id])
        assert len(found_ids(selected, others)) <= 2  # the rest dimmed (a stray GUI colour may match)
    finally:
        browser.close()
        viewer.stop()
