"""The viser viewer driven from Python: incremental updates, selection, toggles, boxes, crops, map files."""
from __future__ import annotations

import socket

import numpy as np
import pytest

from scene.datasets.synthetic import make_scene, write_scene
from scene.map import InstanceMap, MapMetadata, MapObject
from scene.storage import MapStore
from viz.crops import BestViewCrops, crop_box
from viz.overlay import id_color
from viz.samples import synthetic_map
from viz.viewer import LiveViewer, ViewerConfig, box_segments, object_details, serve_map

pytest.importorskip("viser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def scene():
    return make_scene("room", seed=0, num_frames=6, width=160, height=120)


@pytest.fixture(scope="module")
def room(scene) -> InstanceMap:
    return synthetic_map(scene, max_points_per_object=1500)


def test_live_viewer_resends_only_changed_objects(room):
    viewer = LiveViewer(port=free_port())
    try:
        live = InstanceMap(room.metadata)
        first = list(room)[:5]
        for obj in first:
            live.add(obj)
        assert viewer.update(live) == 5
        assert viewer.update(live) == 0
        moved = first[2].with_points(first[2].points + 0.1)
        live.update(moved)
        live.add(list(room)[7])
        assert viewer.update(live) == 2
        assert np.allclose(viewer._clouds[moved.id].points, moved.points, atol=1e-2)  # float16 on the wire
        live.remove(first[0].id)
        assert viewer.update(live) == 0 and first[0].id not in viewer._clouds
        assert "5 objects" in viewer._summary.content  # 5 + 1 added - 1 removed
        assert len(viewer._dropdown.options) == 1 + 5
    finally:
        viewer.stop()


def test_selection_dims_the_others_and_draws_the_box(room):
    viewer = serve_map(room, port=free_port(), config=ViewerConfig(dim=0.2))
    try:
        sofa = max((o for o in room if o.attributes["kind"] == "sofa"), key=lambda o: o.num_points)
        other = next(o for o in room if not o.is_structure and o.id != sofa.id)
        assert np.all(viewer._clouds[other.id].colors == id_color(other.id))
        viewer.select(sofa.id)
        assert viewer.selected == sofa.id and viewer._dropdown.value.startswith(f"{sofa.id}:")
        assert np.all(viewer._clouds[sofa.id].colors == id_color(sofa.id))
        assert not np.any(np.all(viewer._clouds[other.id].colors == id_color(other.id), axis=-1))
        assert np.allclose(viewer._box.points, box_segments(sofa), atol=1e-2)
        assert f"| id | {sofa.id} |" in viewer._details.content
        viewer.select(None)
        assert viewer._box is None and np.all(viewer._clouds[other.id].colors == id_color(other.id))
        with pytest.raises(KeyError, match="999"):
            viewer.select(999)
    finally:
        viewer.stop()


def test_updates_while_an_object_is_selected(room):
    viewer = LiveViewer(port=free_port())
    try:
        live = InstanceMap(room.metadata)
        objects = [o for o in room if not o.is_structure][:3]
        for obj in objects:
            live.add(obj)
        viewer.update(live)
        viewer.select(objects[0].id)
        moved = objects[1].with_points(objects[1].points + 0.2)
        live.update(moved)
        assert viewer.update(live) == 1
        assert not np.any(np.all(viewer._clouds[moved.id].colors == id_color(moved.id), axis=-1))  # arrives dimmed
        grown = objects[0].with_points(objects[0].points * 1.5)
        live.update(grown)
        viewer.update(live)
        assert np.allclose(viewer._box.points, box_segments(grown), atol=2e-2)  # the box follows the object
        live.remove(objects[0].id)
        viewer.update(live)
        assert viewer.selected is None and viewer._box is None
        assert np.all(viewer._clouds[moved.id].colors == id_color(moved.id))  # undimmed again
    finally:
        viewer.stop()


def test_structure_ceiling_and_trajectory_toggles(room):
    viewer = serve_map(room, port=free_port())
    try:
        kinds = {o.id: o.attributes["kind"] for o in room}
        visible = {i: h.visible for i, h in viewer._clouds.items()}
        assert all(visible[i] for i, k in kinds.items() if k in ("floor", "wall", "sofa"))
        assert not any(visible[i] for i, k in kinds.items() if k == "ceiling")  # hidden to see in from above
        viewer._structure_toggle.value = False
        viewer._apply_structure()
        assert not any(viewer._clouds[i].visible for i, k in kinds.items() if k in ("floor", "wall"))
        assert all(viewer._clouds[i].visible for i, k in kinds.items() if k == "sofa")
        assert len(viewer._trajectory_nodes) == 1 + len(room.trajectory[0])  # path + one frustum a frame
        viewer._trajectory_toggle.value = False
        viewer._apply_trajectory()
        assert not any(node.visible for node in viewer._trajectory_nodes)
    finally:
        viewer.stop()


def test_serve_a_map_file(room, tmp_path):
    path = tmp_path / "room.map"
    with MapStore(path) as store:
        store.save(room)
    viewer = serve_map(path, port=free_port())
    try:
        assert sorted(viewer._clouds) == room.ids.tolist()
        assert viewer.url.startswith("http://127.0.0.1:")
    finally:
        viewer.stop()
    with pytest.raises(FileNotFoundError, match="no map file"):
        serve_map(tmp_path / "absent.map", port=free_port())


def test_box_segments_are_the_twelve_edges():
    obj = MapObject(3, np.random.default_rng(0).uniform([0, 0, 0], [2, 1, 0.5], (300, 3)))
    for oriented in (True, False):
        edges = box_segments(obj, oriented=oriented)
        lengths = np.sort(np.linalg.norm(edges[:, 1] - edges[:, 0], axis=1))
        extents = np.sort(obj.obb_extents if oriented else obj.aabb_max - obj.aabb_min)
        assert edges.shape == (12, 2, 3)
        assert np.allclose(lengths, np.repeat(extents, 4), atol=1e-5)
    assert "| points | 300 |" in object_details(obj)


def test_best_view_crop_from_the_written_dataset(scene, tmp_path):
    root = write_scene(scene, tmp_path / "room")
    m = synthetic_map(scene, max_points_per_object=800, source_path=root)
    sofa = max((o for o in m if o.attributes["kind"] == "sofa"), key=lambda o: o.num_points)
    crops = BestViewCrops(max_side=1000, margin=0.0)
    crop = crops.crop(m.metadata, sofa)
    x0, y0, x1, y1 = sofa.best_view_box
    assert crop is not None
    assert crop.shape[:2] == pytest.approx((y1 - y0, x1 - x0), abs=2)
    image = scene.frame(sofa.best_view_frame).color
    assert np.array_equal(crop, image[int(np.floor(y0)):int(np.ceil(y1)), int(np.floor(x0)):int(np.ceil(x1))])
    assert crops.crop(MapMetadata(), sofa) is None
    assert crops.crop(MapMetadata(source_path=str(tmp_path / "nothing")), sofa) is None


def test_crop_box_margin_shrink_and_empty():
    image = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    assert crop_box(image, [50, 20, 150, 60], margin=0.1, max_side=1000).shape == (48, 120, 3)
    assert max(crop_box(image, [0, 0, 0, 0], max_side=50).shape[:2]) == 50
    assert crop_box(image, [300, 300, 400, 400]) is None


def test_growing_trajectory_keeps_existing_frustums(room):
    viewer = LiveViewer(port=free_port(), config=ViewerConfig(max_frustums=4))
    try:
        frames, poses = room.trajectory
        live = InstanceMap(room.metadata)
        live.add(next(iter(room)))
        for k in range(3):
            live.add_frame(int(frames[k]), poses[k])
        viewer.update(live)
        kept = dict(viewer._frustums)
        assert sorted(kept) == [int(f) for f in frames[:3]]
        for k in range(3, 6):
            live.add_frame(int(frames[k]), poses[k])
        viewer.update(live)
        assert sorted(viewer._frustums) == [int(f) for f in frames[0:6:2]]  # 6 frames, at most 4: every 2nd
        assert viewer._frustums[int(frames[0])] is kept[int(frames[0])]  # not re-sent
        assert np.allclose(viewer._path.points[-1, 1], poses[5, :3, 3], atol=1e-2)
    finally:
        viewer.stop()
