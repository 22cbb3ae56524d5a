"""Overlays with persistent ids over a synthetic sequence, written as MP4 and GIF and decoded back."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from scene.datasets.synthetic import make_scene
from viz.overlay import id_color
from viz.video import masks_from_id_image, overlay_sequence, write_video


@pytest.fixture(scope="module")
def frames():
    scene = make_scene("room", seed=1, num_frames=12, width=160, height=120)
    return [scene.frame(i) for i in range(0, 12, 3)]


def test_masks_from_id_image_round_trip():
    ids = np.array([[3, 3, -1], [7, 7, 3]])
    masks, found = masks_from_id_image(ids)
    assert found.tolist() == [3, 7]
    rebuilt = np.full(ids.shape, -1)
    for m, i in zip(masks, found):
        rebuilt[m] = i
    assert np.array_equal(rebuilt, ids)
    with pytest.raises(ValueError, match="integer"):
        masks_from_id_image(np.zeros((2, 2), np.float32))


def test_an_id_keeps_its_colour_in_every_frame():
    grey = np.full((40, 60, 3), 100, np.uint8)
    masks, ids = [], []
    for shift in range(3):  # object 5 moves right, object 9 stays; ids listed in changing order
        a = np.zeros((40, 60), bool)
        a[5:20, 5 + 10 * shift:20 + 10 * shift] = True
        b = np.zeros((40, 60), bool)
        b[25:38, 20:58] = True  # wide enough that its id label stays clear of the sampled pixel
        masks.append(np.stack([a, b] if shift % 2 == 0 else [b, a]))
        ids.append(np.array([5, 9] if shift % 2 == 0 else [9, 5]))
    out = list(overlay_sequence([grey] * 3, masks, ids, alpha=0.5))
    expected = {i: (0.5 * 100 + 0.5 * id_color(i)[0].astype(np.float32)).astype(np.uint8) for i in (5, 9)}
    for t, image in enumerate(out):
        assert np.array_equal(image[7, 8 + 10 * t], expected[5])  # away from the contour and label
        assert np.array_equal(image[27, 55], expected[9])
    assert not np.array_equal(expected[5], expected[9])


def test_mp4_decodes_back_with_every_frame(tmp_path, frames):
    split = [masks_from_id_image(f.instance_ids.astype(np.int64), ignore=0) for f in frames]
    overlays = list(overlay_sequence(
        [f.color for f in frames], [m for m, _ in split], [i for _, i in split],
        captions=[f"frame {f.index}" for f in frames],
    ))
    path = write_video(overlays, tmp_path / "run.mp4", fps=4)
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames)
    decoded = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    capture.release()
    assert len(decoded) == len(frames) and decoded[0].shape == overlays[0].shape
    error = np.abs(decoded[-1].astype(np.int16) - overlays[-1].astype(np.int16)).mean()
    assert error < 12  # lossy, but the same picture
    assert np.abs(decoded[0].astype(np.int16) - overlays[-1].astype(np.int16)).mean() > error


def test_gif_and_odd_sizes(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (31, 45, 3), dtype=np.uint8) for _ in range(3)]
    gif = write_video(images, tmp_path / "run.gif", fps=5)
    with Image.open(gif) as animation:
        assert animation.n_frames == 3 and animation.size == (45, 31)
    mp4 = write_video(images, tmp_path / "odd.mp4", fps=5)
    capture = cv2.VideoCapture(str(mp4))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()


def test_bad_input_names_the_file(tmp_path):
    good = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="frame 1"):
        write_video([good, np.zeros((8, 10, 3), np.uint8)], tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="extension"):
        write_video([good], tmp_path / "a.avi")
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "a.gif")
    with pytest.raises(OSError, match="does not exist"):
        write_video([good], tmp_path / "missing" / "a.mp4")
