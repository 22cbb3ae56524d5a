"""Offscreen renders of instance maps: colours, geometry, structure handling, labels, trajectory, errors."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from scene.datasets.synthetic import make_scene
from scene.map import InstanceMap, MapMetadata, MapObject
from viz.camera import look_at, overview_camera, pinhole
from viz.overlay import id_color
from viz.render import RenderConfig, render_perspective, render_top_down, save_png
from viz.samples import scannet_points_map, synthetic_map

PLAIN = dict(labels=False, legend=False, trajectory=False, outlines=False, title=None)


@pytest.fixture(scope="module")
def scene():
    return make_scene("room", seed=0, num_frames=12, width=320, height=240)


@pytest.fixture(scope="module")
def room(scene) -> InstanceMap:
    return synthetic_map(scene, max_points_per_object=6000)


def colour_mask(image: np.ndarray, object_id: int) -> np.ndarray:
    return np.all(image == id_color(object_id)[0], axis=-1)


def test_top_down_places_objects_where_they_are(room):
    image = render_top_down(room, RenderConfig(width=640, height=480, **PLAIN))
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    xs, ys, cols, rows = [], [], [], []
    for obj in room:
        hit = colour_mask(image, obj.id)
        if obj.is_structure or hit.sum() < 20:
            continue
        r, c = np.nonzero(hit)
        xs.append(obj.centroid[0]), ys.append(obj.centroid[1]), cols.append(c.mean()), rows.append(r.mean())
    assert len(xs) >= 12  # nearly every piece of furniture is seen from above
    assert np.corrcoef(xs, cols)[0, 1] > 0.98  # world x to the right
    assert np.corrcoef(ys, rows)[0, 1] < -0.98  # world y up the image


def test_perspective_from_a_frame_matches_the_ground_truth_instances(scene, room):
    frame = scene.frame(5)
    config = RenderConfig(width=frame.width, height=frame.height, structure="show", cut_height=None,
                          cutaway_walls=False, **PLAIN)
    image = render_perspective(room, pose=frame.pose, K=frame.K, config=config)
    rendered = np.full(image.shape[:2], -1, np.int64)
    for obj in room:
        rendered[colour_mask(image, obj.id)] = obj.id
    both = (rendered >= 0) & (frame.instance_ids > 0)
    assert both.mean() > 0.8  # the splats cover the view
    assert (rendered[both] == frame.instance_ids[both]).mean() > 0.9


def test_structure_is_dimmed_or_hidden_and_the_ceiling_cut(room):
    floor = next(o.id for o in room if o.is_structure and o.attributes["kind"] == "floor")
    ceiling = next(o.id for o in room if o.attributes["kind"] == "ceiling")
    shown = render_top_down(room, RenderConfig(width=320, height=240, structure="show", **PLAIN))
    uncut = render_top_down(room, RenderConfig(width=320, height=240, structure="show", cut_height=None, **PLAIN))
    dimmed = render_top_down(room, RenderConfig(width=320, height=240, structure="dim", **PLAIN))
    hidden = render_top_down(room, RenderConfig(width=320, height=240, structure="hide", **PLAIN))
    assert colour_mask(shown, floor).sum() > 1000 and colour_mask(shown, ceiling).sum() == 0
    assert colour_mask(uncut, ceiling).sum() > 0.5 * colour_mask(shown, floor).sum()  # the ceiling covers the plan
    assert colour_mask(dimmed, floor).sum() == 0
    white = np.all(hidden == 255, axis=-1).sum()
    assert white > np.all(dimmed == 255, axis=-1).sum() + 1000  # floor gone: background shows
    furniture = [o.id for o in room if not o.is_structure]
    assert sum(colour_mask(hidden, i).sum() > 0 for i in furniture) >= 12


def test_automatic_view_shows_the_room_and_cuts_away_near_walls(room):
    image = render_perspective(room, config=RenderConfig(width=400, height=300, **PLAIN))
    furniture = [o.id for o in room if not o.is_structure]
    assert sum(colour_mask(image, i).sum() >= 10 for i in furniture) >= 10
    with_walls = render_perspective(room, config=RenderConfig(width=400, height=300, cutaway_walls=False, **PLAIN))
    assert sum(colour_mask(with_walls, i).sum() >= 10 for i in furniture) < sum(
        colour_mask(image, i).sum() >= 10 for i in furniture)


def test_rgb_mode_uses_the_points_colours(room):
    image = render_top_down(room, RenderConfig(width=320, height=240, color_mode="rgb", structure="show", **PLAIN))
    sofa = max((o for o in room if o.attributes["kind"] == "sofa"), key=lambda o: o.num_points)
    own = {tuple(c) for c in sofa.colors.tolist()}
    pixels = {tuple(c) for c in image.reshape(-1, 3).tolist()}
    assert len(own & pixels) > 10
    assert colour_mask(image, sofa.id).sum() < 5


def test_trajectory_markers_labels_and_legend_are_drawn(room):
    base = RenderConfig(width=480, height=360, **PLAIN)
    plain = render_top_down(room, base)
    start_green = np.all(plain == (30, 170, 60), axis=-1).sum()
    with_path = render_top_down(room, RenderConfig(width=480, height=360, **{**PLAIN, "trajectory": True}))
    assert np.all(with_path == (30, 170, 60), axis=-1).sum() > start_green + 30
    labelled = render_top_down(room, RenderConfig(width=480, height=360, **{**PLAIN, "labels": True}))
    changed = np.any(labelled != plain, axis=-1)
    assert changed.sum() > 200  # text was drawn ...
    r, c = np.nonzero(changed)
    sofa = max((o for o in room if o.attributes["kind"] == "sofa"), key=lambda o: o.num_points)
    inside = colour_mask(plain, sofa.id)
    assert inside[r, c].sum() > 10  # ... on objects, not somewhere else
    legend = render_top_down(room, RenderConfig(width=480, height=360, **{**PLAIN, "legend": True, "legend_rows": 9}))
    swatches = 0
    for obj in room:  # a legend swatch: a 13 x 11 block of the exact id colour inside a dark border
        _, _, stats, _ = cv2.connectedComponentsWithStats(colour_mask(legend, obj.id).astype(np.uint8))
        swatches += int(np.sum((stats[1:, 2] == 13) & (stats[1:, 3] == 11)))
    assert swatches == 9


def test_labels_skip_occluded_objects():
    """A small object hidden behind a big wall gets no label: only the wall's label is drawn."""
    wall = np.stack(np.meshgrid(np.linspace(-1, 1, 120), np.linspace(-1, 1, 120)), -1).reshape(-1, 2)
    wall = np.column_stack([wall, np.full(len(wall), 2.0)])
    hidden = np.random.default_rng(0).normal([0, 0, 3.0], 0.05, (400, 3))
    m = InstanceMap(MapMetadata(voxel_size=0.02))
    m.add(MapObject(1, wall)), m.add(MapObject(7, hidden))
    pose = look_at([0, 0, 0], [0, 0, 1], up=[0, -1, 0])
    config = RenderConfig(width=200, height=200, **{**PLAIN, "labels": True}, cut_height=None, cutaway_walls=False)
    image = render_perspective(m, pose=pose, K=pinhole(200, 200, 60), config=config)
    plain = render_perspective(m, pose=pose, K=pinhole(200, 200, 60),
                               config=RenderConfig(width=200, height=200, **PLAIN, cut_height=None))
    assert colour_mask(plain, 7).sum() == 0
    changed = np.argwhere(np.any(image != plain, axis=-1))
    (w1, h1), _ = cv2.getTextSize("1", cv2.FONT_HERSHEY_SIMPLEX, 0.45, 3)
    assert 0 < len(changed) and np.ptp(changed[:, 1]) <= w1 + 4  # one digit's width: "1", not "1" and "7"


def test_scannet_scan_top_down(shared_set, tmp_path):
    m = scannet_points_map(shared_set("scannet_scene0448_01"), max_points=30000)
    assert len([o for o in m if not o.is_structure]) >= 8
    image = render_top_down(m, RenderConfig(width=400, height=300, **PLAIN))
    seen = [o for o in m if not o.is_structure and colour_mask(image, o.id).sum() >= 10]
    assert len(seen) >= 7
    path = save_png(tmp_path / "scan.png", image)
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), image)


def test_overview_camera_looks_at_the_centre_from_above():
    points = np.random.default_rng(1).uniform([0, 0, 0], [4, 3, 2], (500, 3))
    K, pose = overview_camera(points, 640, 480)
    centre = np.percentile(points, [2, 98], axis=0).mean(axis=0)
    camera = (centre - pose[:3, 3]) @ pose[:3, :3]
    assert camera[2] > 0 and np.allclose(camera[:2], 0, atol=1e-6)
    assert pose[2, 3] > points[:, 2].max()
    assert pose[:3, 1] @ np.array([0, 0, 1.0]) < 0  # image down points down in the world
    cam = (points - pose[:3, 3]) @ pose[:3, :3]
    uv = cam[:, :2] / cam[:, 2:] * K[0, 0] + K[:2, 2]
    assert np.all((uv >= 0) & (uv < [640, 480]))


def test_empty_map_and_bad_input():
    blank = render_top_down(InstanceMap(), RenderConfig(width=64, height=48))
    assert blank.shape == (48, 64, 3)
    with pytest.raises(ValueError, match="color_mode"):
        RenderConfig(color_mode="heat")
    with pytest.raises(ValueError, match="structure"):
        RenderConfig(structure="transparent")
    m = InstanceMap()
    m.add(MapObject(0, np.zeros((3, 3)) + [[0, 0, 0], [1, 0, 0], [0, 1, 0]]))
    with pytest.raises(ValueError, match="pose"):
        render_perspective(m, pose=np.ones((4, 4)))
    with pytest.raises(OSError, match="no_such_folder"):
        save_png("/tmp/no_such_folder/x.png", np.zeros((4, 4, 3), np.uint8))


def test_crowded_labels_are_thinned_in_priority_order():
    from viz.annotate import draw_labels

    image = np.zeros((100, 200, 3), np.uint8)
    drawn = draw_labels(image, np.array([12, 13, 14]), np.array([[50.0, 50.0], [55.0, 52.0], [150.0, 50.0]]))
    assert drawn.tolist() == [12, 14]  # 13 would overlap 12
    assert image[:, :100].any() and image[:, 100:].any()
