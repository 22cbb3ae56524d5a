"""The videos ``viz.video.write_video`` writes play in a real browser (headless Chromium): the page's
<video> element loads the file, reports its size and duration, and a frame drawn onto a canvas has the
colours that were encoded. (MPEG-4 Part 2, which OpenCV's 'mp4v' writes, does not play in browsers.)"""
from __future__ import annotations

import functools
import json
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from test_viewer_browser import CHROMIUM, Browser
from viz.video import write_video

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

PAGE = """<!doctype html><html><body style="margin:0">
<video id="v" src="{name}" muted playsinline preload="auto"></video>
<canvas id="c"></canvas></body></html>"""

# Resolves once the video has played to its end (its last frame shows the blue square), or failed.
PROBE = """new Promise(resolve => {
  const v = document.getElementById('v');
  const report = extra => resolve(JSON.stringify(Object.assign({
      width: v.videoWidth, height: v.videoHeight, duration: v.duration, readyState: v.readyState,
      error: v.error ? v.error.code : null}, extra)));
  v.onerror = () => report({});
  const draw = () => { try {
    const c = document.getElementById('c');
    c.width = v.videoWidth; c.height = v.videoHeight;
    const g = c.getContext('2d');
    g.drawImage(v, 0, 0);
    const at = (x, y) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3));
    report({centre: at(v.videoWidth / 2, v.videoHeight / 2), corner: at(4, 4)});
  } catch (e) { report({exception: String(e)}); } };
  // played to its end: the last frame (blue square) stays on screen and is drawn
  v.onended = draw;
  v.play().catch(e => report({exception: String(e)}));
  setTimeout(() => report({timeout: true}), 20000);
})"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _wait_for_element(browser: Browser, element: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    check = f"document.getElementById('{element}') !== null"
    while not browser.call("Runtime.evaluate", expression=check, returnByValue=True)["result"].get("value"):
        assert time.monotonic() < deadline, f"the page did not show element {element!r} within {timeout} s"
        time.sleep(0.2)


def _frames(width: int = 160, height: int = 120, fps: int = 10) -> list[np.ndarray]:
    """Two seconds: grey background, a red square in the first second, a blue one in the second."""
    frames = []
    for k in range(2 * fps):
        frame = np.full((height, width, 3), 90, np.uint8)
        frame[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = (220, 30, 30) if k < fps else (30, 30, 220)
        frames.append(frame)
    return frames


@pytest.mark.parametrize("name", ["run.mp4", "run.webm"])
def test_written_video_plays_in_chromium(tmp_path, name):
    site = tmp_path / "site"
    site.mkdir()
    write_video(_frames(), site / name, fps=10)
    (site / "page.html").write_text(PAGE.format(name=name))
    # served over HTTP: a canvas that drew a file:// video is tainted and cannot be read back
    handler = functools.partial(_QuietHandler, directory=str(site))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        browser = Browser(Path(tempfile.mkdtemp(dir=tmp_path)), f"http://127.0.0.1:{server.server_port}/page.html")
        try:
            _wait_for_element(browser, "v")
            answer = browser.call("Runtime.evaluate", expression=PROBE, awaitPromise=True, returnByValue=True)
        finally:
            browser.close()
            server.shutdown()
    assert "exceptionDetails" not in answer, answer
    result = json.loads(answer["result"]["value"])
    assert result["error"] is None and not result.get("timeout"), result
    assert (result["width"], result["height"]) == (160, 120) and abs(result["duration"] - 2.0) < 0.15, result
    assert np.abs(np.array(result["centre"]) - (30, 30, 220)).max() < 40, result  # the blue square decoded
    assert np.abs(np.array(result["corner"]) - 90).max() < 25, result
