"""Scan mode end to end (``scene.scan``, ``scene run --scan``): a synthetic scan mesh with per-vertex
ground truth, sensor depth and depth rendered from the mesh, outputs in the scan's vertex order, and
a scan in the wrong frame."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lift3d.scan_io import ScanError, ScanGeometry
from lift3d.scan_projection import MeshDepthRenderer, project_vertices
from scene.scan import ScanConfig, ScanMapper, write_scan_outputs


@pytest.fixture(scope="module")
def tabletop():
    from scene.datasets.synthetic import make_scene
    from scene.datasets.synthetic.scan_mesh import scan_mesh

    scene = make_scene("tabletop", seed=0, noisy=False, num_frames=8, width=160, height=120)
    mesh = scan_mesh(scene.layout, max_edge=0.05)
    return scene, mesh, ScanGeometry(mesh.vertices, mesh.colors, mesh.triangles, "tabletop.ply")


def _vertex_ap50(vertex_ids, confidences, mesh, scene) -> float:
    from scene.datasets.synthetic import GTPoints
    from scene.eval import ScenePredictions, evaluate_scenes

    seen = scene.gt_observed(GTPoints(mesh.vertices, mesh.instance_ids, mesh.colors))
    labels, gt = vertex_ids[seen], mesh.instance_ids[seen].astype(np.int64)
    ids = np.unique(labels[labels >= 0])
    masks = labels[None] == ids[:, None]
    return evaluate_scenes([ScenePredictions(gt, masks, confidences[ids], "t")]).ap50


def test_rendered_depth_matches_the_scene_and_projection_finds_the_right_vertices(tabletop):
    scene, mesh, scan = tabletop
    clean = scene.render_clean(3)
    depth = MeshDepthRenderer(scan.vertices, scan.triangles).render(scene.K, scene.gt_poses[3], scene.width, scene.height)
    both = (depth > 0) & (clean.depth > 0)
    assert both.mean() > 0.9 and np.mean(np.abs(depth[both] - clean.depth[both]) < 0.001) > 0.98
    view = project_vertices(scan.vertices, clean.depth, scene.K, scene.gt_poses[3])
    assert len(view.vertices) > 500
    agree = mesh.instance_ids[view.vertices] == clean.instance_ids.reshape(-1)[view.pixels]
    assert agree.mean() > 0.95


@pytest.mark.parametrize("depth", ["sensor", "mesh"])
def test_ground_truth_masks_give_near_perfect_vertex_instances(tabletop, depth):
    from segment2d.factory import make_generator

    scene, mesh, scan = tabletop
    mapper = ScanMapper(scan, ScanConfig(depth=depth, keep_views=True), generator=make_generator("ground-truth"))
    for frame in scene.frames():
        mapper.integrate(frame if depth == "sensor" else replace(frame, depth=np.zeros_like(frame.depth)))
    consensus = mapper.finalize("consensus")
    graph = mapper.finalize("graph")
    mapped = mapper.finalize("map")
    assert mapped.frames == 8 and len(mapped.vertex_ids) == len(mesh.vertices)
    # With exact masks the view consensus on superpoints recovers the instances almost perfectly.
    assert _vertex_ap50(consensus.vertex_ids, consensus.confidences, mesh, scene) > 0.85
    assert _vertex_ap50(graph.vertex_ids, graph.confidences, mesh, scene) > 0.7  # measured 0.75-0.77
    # The map's objects snapped to superpoints do at least as well as the map's own labels on the vertices.
    voxel_map = mapped.voxel_map
    labels = voxel_map.label_points(mesh.vertices.astype(np.float64), 2 * voxel_map.metadata.voxel_size)
    confidences = np.zeros(int(labels.max()) + 1)
    for obj in voxel_map:
        confidences[obj.id] = obj.confidence
    assert (_vertex_ap50(mapped.vertex_ids, mapped.confidences, mesh, scene)
            >= _vertex_ap50(labels, confidences, mesh, scene) - 0.02)
    assert len(mapped.imap) == len(mapped.instance_ids)
    # each instance keeps the flag the map decided for its object (floor, walls): not decided again
    for obj in mapped.imap:
        source = np.bincount(labels[(mapped.vertex_ids == obj.id) & (labels >= 0)]).argmax()
        assert obj.is_structure == voxel_map.get(int(source)).is_structure
    assert any(obj.is_structure for obj in mapped.imap)


def test_map_labels_keep_the_maps_flags_other_labels_find_floor_and_walls(tabletop):
    """Instances labelled from the voxel map keep the flags the map decided on its fused objects; the
    flags are found on the vertices only for labels that come without them (consensus, graph)."""
    from segment2d.factory import make_generator

    scene, mesh, scan = tabletop
    mapper = ScanMapper(scan, ScanConfig(), generator=make_generator("ground-truth"))
    for frame in scene.frames():
        mapper.integrate(frame)
    ids = np.unique(mesh.instance_ids)
    vertex_ids, dense, unflagged = np.searchsorted(ids, mesh.instance_ids), np.arange(len(ids)), np.zeros(len(ids), bool)
    found = mapper._instance_map(vertex_ids, dense, np.ones(len(ids)), unflagged)
    kept = mapper._instance_map(vertex_ids, dense, np.ones(len(ids)), unflagged, flagged=True)
    assert any(obj.is_structure for obj in found)  # the floor, found on the vertices
    assert not any(obj.is_structure for obj in kept)


def test_outputs_are_in_the_scans_vertex_order(tabletop, tmp_path):
    from scene.eval.scannet_format import read_predictions
    from scene.export import read_ply_vertex_properties
    from scene.storage import MapStore
    from segment2d.factory import make_generator

    scene, mesh, scan = tabletop
    mapper = ScanMapper(scan, ScanConfig(), generator=make_generator("ground-truth"))
    for frame in list(scene.frames())[:4]:
        mapper.integrate(frame)
    result = mapper.finalize()
    written = write_scan_outputs(result, tmp_path / "out", "tabletop", map_path=tmp_path / "map.sqlite")
    ply = read_ply_vertex_properties(written["ply"])
    np.testing.assert_array_equal(ply["instance"], result.vertex_ids)
    np.testing.assert_allclose(ply["x"], mesh.vertices[:, 0])
    predictions = read_predictions(written["scannet"], len(mesh.vertices))
    assert len(predictions.masks) == len(result.instance_ids)
    for mask, obj in zip(predictions.masks, result.instance_ids):
        np.testing.assert_array_equal(mask, result.vertex_ids == obj)
    with MapStore(tmp_path / "map.sqlite", read_only=True) as store:
        loaded = store.load()
    assert sorted(loaded.ids.tolist()) == result.instance_ids.tolist()
    assert sum(o.num_points for o in loaded) == int((result.vertex_ids >= 0).sum())


def test_a_scan_in_another_frame_is_named(tabletop):
    scene, mesh, scan = tabletop
    moved = ScanGeometry(scan.vertices + np.float32([0.7, -0.4, 0.3]), scan.colors, None, "moved.ply")
    mapper = ScanMapper(moved, ScanConfig(check_after=3, labels="consensus"))
    with pytest.raises(ScanError, match="moved.ply.*another coordinate frame"):
        for frame in scene.frames():
            mapper.integrate(frame)


def test_frames_without_depth_need_a_mesh(tabletop):
    scene, mesh, scan = tabletop
    cloud = ScanGeometry(scan.vertices, scan.colors, None, "cloud.bin")
    with pytest.raises(ScanError, match="needs faces"):
        ScanMapper(cloud, ScanConfig(depth="mesh"))
    mapper = ScanMapper(cloud, ScanConfig(labels="consensus"))
    frame = scene.frame(0)
    with pytest.raises(ScanError, match="no depth and the scan cloud.bin has no faces"):
        mapper.integrate(replace(frame, depth=np.zeros_like(frame.depth)))


def test_cli_scan_run_writes_all_outputs(tabletop, tmp_path):
    from scene.app.cli import main
    from scene.datasets.synthetic import write_scene
    from scene.export import read_ply_vertex_properties, write_mesh_ply

    scene, mesh, scan = tabletop
    data = tmp_path / "data"
    write_scene(scene, data, frames=(scene.frame(i) for i in range(4)), instances=False, gt=False)
    scan_path = write_mesh_ply(tmp_path / "scan.ply", mesh.vertices, mesh.triangles, mesh.colors)
    out = tmp_path / "map.sqlite"
    assert main(["run", str(data), "--scan", str(scan_path), "--out", str(out), "--quiet", "--max-frames", "4"]) == 0
    ply = read_ply_vertex_properties(tmp_path / "map_scan" / "scan.ply")
    assert len(ply["instance"]) == len(mesh.vertices) and (ply["instance"] >= 0).mean() > 0.15
    assert (tmp_path / "map_scan" / "scannet" / "scan.txt").is_file() and out.is_file()
    assert main(["run", str(data), "--scan", str(tmp_path / "none.ply"), "--out", str(tmp_path / "m2.sqlite")]) == 2


def test_pipelined_frames_give_the_same_labels_and_views_as_one_thread(tabletop):
    """``integrate_frames`` reads, renders depth and segments the next frame on a worker (the weight-free
    generator in its process): the views and vertex labels equal those of one thread, also with depth
    rendered from the mesh (masks must be made on the rendered depth)."""
    from scene.scan import integrate_frames

    scene, mesh, scan = tabletop
    frames = [replace(f, depth=np.zeros_like(f.depth)) for f in scene.frames()]
    results, views = [], []
    for pipelined in (False, True):
        mapper = ScanMapper(scan, ScanConfig(depth="mesh", keep_views=True))
        done = []
        integrate_frames(mapper, frames, len(frames), lambda k, total: done.append((k, total)), pipelined=pipelined)
        assert done == [(k, len(frames)) for k in range(1, len(frames) + 1)]
        views.append(mapper._views)
        results.append(mapper.finalize())
    assert results[0].frames == results[1].frames == len(frames)
    np.testing.assert_array_equal(results[0].vertex_ids, results[1].vertex_ids)
    assert (results[0].vertex_ids >= 0).mean() > 0.3
    for one, two in zip(*views):
        np.testing.assert_array_equal(one.primitives, two.primitives)
        np.testing.assert_array_equal(one.labels, two.labels)


def test_the_map_labelling_keeps_no_per_view_evidence_and_its_voxel_map_is_the_mappers(tabletop):
    """With ``labels="map"`` the voxel mapper builds no online objects and the frames' superpoint evidence
    is not recorded (the superpoints come from a worker thread): the refined voxel map is still exactly
    the one a plain ``Mapper`` makes of the same frames, and asking for the evidence names the setting."""
    from scene.config import MapperConfig
    from scene.map import map_fingerprint
    from scene.pipeline import Mapper
    from segment2d.factory import make_generator

    scene, mesh, scan = tabletop
    generator = make_generator("ground-truth")
    mapper = ScanMapper(scan, ScanConfig(), generator=generator)
    plain = Mapper(MapperConfig(), generator=generator)
    for frame in scene.frames():
        assert mapper.integrate(frame) is None
        plain.integrate(frame)
    assert plain.num_objects > 0 and mapper.voxel_mapper.num_objects == 0  # no online objects in the scan mode
    result = mapper.finalize()
    assert mapper._views == [] and result.superpoints.count > 0
    assert map_fingerprint(result.voxel_map)["digest"] == map_fingerprint(plain.finalize())["digest"]
    assert len(result.voxel_map) > 3
    with pytest.raises(ValueError, match="keep_views=True"):
        mapper.finalize("consensus")


def test_a_point_cloud_labelled_from_the_map_computes_no_superpoints(tabletop):
    """On a point cloud the map labelling does not snap to superpoints (``ScanConfig.snap`` "auto"), so
    they are not computed unless asked for."""
    from segment2d.factory import make_generator

    scene, mesh, scan = tabletop
    cloud = ScanGeometry(scan.vertices, scan.colors, None, "cloud.bin")
    mapper = ScanMapper(cloud, ScanConfig(), generator=make_generator("ground-truth"))
    for frame in list(scene.frames())[:4]:
        mapper.integrate(frame)
    result = mapper.finalize()
    assert result.superpoints is None and (result.vertex_ids >= 0).mean() > 0.5 * result.seen_vertices > 0.1
    assert mapper.superpoints.count > 0  # still there on request


def test_masks_lifted_ahead_give_the_same_map(tabletop):
    """``Mapper.lift_ahead`` (partition and lift, what the scan mode runs on a worker for the next frame)
    handed to ``integrate`` makes the map ``integrate`` alone makes, byte for byte; a frame lifted with
    other settings is refused."""
    from scene.config import MapperConfig
    from scene.map import map_fingerprint
    from scene.pipeline import Mapper

    scene = tabletop[0]
    digests = []
    for ahead in (False, True):
        mapper = Mapper(MapperConfig())
        for frame in scene.frames():
            masks = mapper.generator.generate(frame)
            mapper.integrate(frame, masks, mapper.lift_ahead(frame, masks) if ahead else None)
        digests.append(map_fingerprint(mapper.finalize()))
        mapper.close()
    assert digests[0]["objects"] > 0 and digests[0] == digests[1]
    frame = scene.frame(0)
    masks = mapper.generator.generate(frame)
    other = Mapper(MapperConfig(lift=replace(MapperConfig().lift, voxel_size=0.03)))
    with pytest.raises(ValueError, match="lifted with another lift or partition"):
        Mapper(MapperConfig()).integrate(frame, masks, other.lift_ahead(frame, masks))


def test_rendered_depth_gets_a_sensors_noise_and_loses_its_edges(tabletop):
    """Depth rendered from the mesh is fused with Kinect-like noise and without the pixels at depth
    discontinuities (``RenderedDepthConfig``), the same every run for a frame; the vertices are still
    projected against the exact rendered depth."""
    from lift3d.scan_projection import RenderedDepthConfig, sensor_like_depth

    scene, mesh, scan = tabletop
    frame = scene.frame(3)
    exact = MeshDepthRenderer(mesh.vertices, mesh.triangles).render(frame.K, frame.pose, frame.width, frame.height)
    config = RenderedDepthConfig()
    noisy = sensor_like_depth(exact, config, 3)
    np.testing.assert_array_equal(noisy, sensor_like_depth(exact, config, 3))
    assert not np.array_equal(noisy, sensor_like_depth(exact, config, 4))
    both = (noisy > 0) & (exact > 0)
    expected = config.noise_a + config.noise_b * exact[both] ** 2
    ratio = np.std((noisy[both] - exact[both]) / expected)
    assert 0.9 < ratio < 1.1
    jump = np.zeros_like(exact, bool)  # pixels beside a > 10 % depth jump keep no depth
    jump[:, 1:] |= np.abs(np.diff(exact, axis=1)) > 0.1 * exact[:, 1:]
    assert jump.any() and not np.any(noisy[jump] > 0)
    assert (noisy > 0).mean() > 0.8 * (exact > 0).mean()
    np.testing.assert_array_equal(sensor_like_depth(exact, RenderedDepthConfig(enabled=False), 3), exact)

    without_depth = replace(frame, depth=np.zeros_like(frame.depth))
    views = []
    for enabled in (False, True):
        mapper = ScanMapper(scan, ScanConfig(depth="mesh", rendered=RenderedDepthConfig(enabled=enabled)))
        prepared = mapper.prepare(without_depth)
        views.append(mapper._prepared[int(frame.index)])
        assert np.array_equal(prepared.depth, exact) != enabled
    np.testing.assert_array_equal(views[0].vertices, views[1].vertices)


def test_the_segmenter_process_projects_and_lifts_frames_with_depth_as_this_process_does(tabletop, tmp_path):
    """``ScanLifter`` (the scan mode's ``finish`` in the segmenter process) gives the view and lift
    ``lift_ahead`` gives here, for a frame the process read from a file source; a frame without depth
    gets None there and is prepared and segmented again here (``auto``: depth from the mesh)."""
    from scene.datasets import open_dataset
    from scene.datasets.synthetic import write_scene
    from segment2d.worker import SegmenterProcess

    scene, _, scan = tabletop
    source = open_dataset(write_scene(scene, tmp_path / "data", frames=scene.source(stop=3)))
    mapper = ScanMapper(scan, ScanConfig(depth="auto"))
    worker = SegmenterProcess(mapper.generator, source, mapper.frame_lifter())
    try:
        done = worker.read_and_generate(2, finish=True)
    finally:
        worker.close()
    frame, masks, mine = mapper.lift_ahead(source[2], mapper.generator.generate(source[2]))
    assert (done.masks.masks == masks.masks).all() and done.finished is not None
    np.testing.assert_array_equal(done.finished.view.vertices, mine.view.vertices)
    np.testing.assert_array_equal(done.finished.view.pixels, mine.view.pixels)
    for name in ("surface", "selected", "owner"):
        np.testing.assert_array_equal(getattr(done.finished.lifted, name), getattr(mine.lifted, name))
    assert len(done.finished.lifted.segments) == len(mine.lifted.segments) > 0
    assert mapper.lift_ahead(frame, masks, done.finished)[2] is done.finished

    without_depth = replace(source[1], depth=np.zeros_like(source[1].depth))
    assert mapper.frame_lifter()(without_depth, masks) is None
    frame, masks, lifted = mapper.lift_ahead(without_depth, masks)
    assert frame.depth.any() and lifted.view.vertices.size > 0
    np.testing.assert_array_equal(masks.masks, mapper.generator.generate(frame).masks)


def test_frames_read_and_lifted_in_the_segmenter_process_give_the_same_labels(tabletop, tmp_path, monkeypatch):
    """With the frames' own depth, ``integrate_frames(lift_apart=True)`` lets the segmenter process read,
    project and lift frames: the labels equal one thread's. The process is waited for and given every frame's reading and
    lifting here (its start-up and the balance depend on the machine's load)."""
    import time

    from scene import pipeline
    from scene.datasets import open_dataset
    from scene.datasets.synthetic import write_scene
    from scene.scan import integrate_frames
    from segment2d.worker import SegmenterProcess

    started = SegmenterProcess.started

    def wait_until_started(process):
        while not started(process):
            time.sleep(0.01)
        return True

    if pipeline._usable_cores() < 2:
        pytest.skip("the segmenter process runs only with a second CPU")
    monkeypatch.setattr(SegmenterProcess, "started", wait_until_started)
    monkeypatch.setattr(pipeline._SegmentAhead, "_offloaded", lambda ahead: ahead._offloadable)
    scene, _, scan = tabletop
    source = open_dataset(write_scene(scene, tmp_path / "data"))
    results, apart = [], []
    for pipelined in (False, True):
        mapper = ScanMapper(scan, ScanConfig(depth="sensor"))
        integrate_frames(mapper, source, len(source), pipelined=pipelined, lift_apart=True)
        results.append(mapper.finalize())
        apart.append(mapper.frames_lifted_apart)
    np.testing.assert_array_equal(results[0].vertex_ids, results[1].vertex_ids)
    assert (results[0].vertex_ids >= 0).mean() > 0.3 and results[0].seen_vertices == results[1].seen_vertices
    assert apart == [0, len(source)]


@pytest.mark.parametrize("snap, expected", [
    ("fill", [3, 3, 7, 3, 5, 5, -1, -1, -1, 2]),
    ("superpoint", [3, 3, 3, 3, 5, 5, -1, -1, -1, 2]),
    ("all", [3, 3, 3, 3, 5, 5, -1, -1, -1, -1]),
])
def test_snapping_map_labels_to_superpoints(snap, expected):
    """Superpoint 0 is held by object 3 (3 of 4 vertices: "fill" labels its unlabelled vertex, "superpoint"
    and "all" also relabel the odd vertex); superpoint 1 by 5 (2 of 2); superpoint 2 (4 vertices, one
    labelled 2) has no object holding 40 %: "all" drops its labelled vertex, the others keep it."""
    from lift3d.superpoints import Superpoints
    from scene.scan import snap_to_superpoints

    superpoints = Superpoints(np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2]), np.zeros((0, 2), np.int64),
                              np.array([4, 2, 4]), np.zeros((3, 3)), np.zeros((3, 3)))
    labels = np.array([3, 3, 7, -1, 5, 5, -1, -1, -1, 2])
    np.testing.assert_array_equal(snap_to_superpoints(labels, superpoints, snap, 0.4), expected)
