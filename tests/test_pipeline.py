"""The Mapper on a small synthetic scene: persistent ids, per-mask ids, incremental saves, a process killed
mid-run and resumed, refinement, and the TOML configuration."""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lift3d.lift import LiftConfig
from scene.config import ConfigError, MapperConfig, load_config
from scene.datasets import open_dataset
from scene.datasets.synthetic import make_scene, write_scene
from scene.parts import PartConfig, detection_confidence
from scene.pipeline import STAGES, Mapper, run
from scene.storage import MapStore
from segment2d.geometric import GeometricConfig
from tracking.export import observation_confidence

NUM_FRAMES = 12
SAVE_EVERY = 4
EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "docs" / "config.example.toml"


@pytest.fixture(scope="module")
def scene():
    # 100 frames around the room, the first 12 used: neighbouring views overlap like a real capture.
    return make_scene("room", seed=0, noisy=True, num_frames=100, width=320, height=240)


@pytest.fixture(scope="module")
def frames(scene):
    return list(scene.source(stop=NUM_FRAMES))


@pytest.fixture(scope="module")
def mapped(frames, tmp_path_factory):
    """Integrate the frames once, saving every SAVE_EVERY frames; after each save, read the file back."""
    path = tmp_path_factory.mktemp("mapper") / "map.sqlite"
    mapper = Mapper(MapperConfig(save_every=SAVE_EVERY), path)
    results, saved_frames, snapshots = [], [], []
    for frame in frames:
        before = {o.id: o for o in mapper.map}
        result = mapper.integrate(frame)
        snapshots.append((before, {o.id: o for o in mapper.map}))
        results.append(result)
        if result.saved:
            with MapStore(path, read_only=True) as store:
                saved_frames.append(store.load().num_frames)
    online = mapper.map
    online_ids = set(online.ids.tolist())
    final = mapper.finalize()
    mapper.close()
    return {"mapper": mapper, "results": results, "saved_frames": saved_frames, "snapshots": snapshots,
            "online_ids": online_ids, "final": final, "path": path}


def test_one_id_per_mask_and_timings(mapped):
    for result in mapped["results"]:
        assert result.object_ids.shape == (len(result.masks),) and result.object_ids.dtype == np.int64
        assert np.all(result.object_ids >= -1)
        assert (result.object_ids >= 0).sum() >= len(result.masks) // 3, "most masks should reach the map"
        assert set(result.timings) == set(STAGES) and all(v >= 0 for v in result.timings.values())
        assert result.timings["segment"] > 0 and result.timings["lift_associate"] > 0


def test_ids_of_a_static_object_persist_across_frames(mapped, frames):
    """The mask that best covers a GT instance carries the same (remap-resolved) id in most frames."""
    imap = mapped["mapper"].map
    per_instance: dict[int, list[int]] = {}
    for frame, result in zip(frames, mapped["results"]):
        masks = result.masks.masks
        for gt_id in np.unique(frame.instance_ids[frame.instance_ids > 0]):
            instance = frame.instance_ids == gt_id
            if instance.sum() < 500:
                continue
            iou = (masks & instance).sum((1, 2)) / np.maximum((masks | instance).sum((1, 2)), 1)
            best = int(iou.argmax())
            if iou[best] > 0.5 and result.object_ids[best] >= 0:
                per_instance.setdefault(int(gt_id), []).append(imap.resolve_id(int(result.object_ids[best])))
    tracked = {g: ids for g, ids in per_instance.items() if len(ids) >= 3}
    assert len(tracked) >= 2, per_instance
    for gt_id, ids in tracked.items():
        share = Counter(ids).most_common(1)[0][1] / len(ids)
        assert share >= 0.7, (gt_id, ids)


def test_incremental_saves_every_n_frames(mapped):
    saved = [r.saved for r in mapped["results"]]
    assert saved == [(k + 1) % SAVE_EVERY == 0 for k in range(NUM_FRAMES)]
    assert mapped["saved_frames"] == list(range(SAVE_EVERY, NUM_FRAMES + 1, SAVE_EVERY))


def test_a_frame_rebuilds_only_the_objects_it_touches(mapped):
    """Objects a frame does not observe keep their very MapObject (the update is per touched object)."""
    kept_any = False
    for (before, after), result in zip(mapped["snapshots"][1:], mapped["results"][1:]):
        seen = set(result.object_ids[result.object_ids >= 0].tolist())
        untouched = [i for i in before if i in after and i not in seen]
        kept_any |= any(after[i] is before[i] for i in untouched)
        for i in after:
            if i in before and after[i] is not before[i]:
                assert after[i].last_frame <= result.frame_index
    assert kept_any


@pytest.mark.parametrize("which", ["online", "final"])
def test_map_objects_hold_geometry_and_statistics(mapped, which):
    imap = mapped["mapper"].map if which == "final" else _as_map(mapped["snapshots"][-1][1], mapped["final"])
    frames, poses = imap.trajectory
    assert frames.tolist() == list(range(NUM_FRAMES)) and imap.num_frames == NUM_FRAMES
    assert len(imap) >= 10
    for obj in imap:
        assert obj.num_points >= 1 and obj.colors.shape == (obj.num_points, 3)
        assert 0 <= obj.first_frame <= obj.last_frame < NUM_FRAMES
        assert obj.best_view_frame in range(NUM_FRAMES)
        x0, y0, x1, y1 = obj.best_view_box
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
        assert np.all(obj.aabb_min <= obj.aabb_max)
    assert any(o.is_structure for o in imap) and any(not o.is_structure for o in imap)
    # Colours come from the frames: a textured room is not grey.
    colors = np.concatenate([o.colors for o in imap]).astype(int)
    assert colors.std() > 10


def test_online_confidence_follows_score_consistency_and_observations(mapped):
    mapper = mapped["mapper"]
    table, cfg = mapper.tracker.objects, mapper.tracker.config
    online = mapped["snapshots"][-1][1]  # id -> object after the last frame
    ids = np.array(sorted(online))
    num_obs = table.num_obs[ids]
    expected = observation_confidence(table.mean_score(ids), num_obs, table.consistency(ids),
                                      saturation=cfg.confidence_frames)
    got = np.array([detection_confidence(online[int(i)]) for i in ids])
    np.testing.assert_allclose(got, np.clip(expected, 0, 1), rtol=1e-6)
    # the ranked confidence is that, discounted for objects attached to a larger one (scene.parts)
    ranked = np.array([online[int(i)].confidence for i in ids])
    assert np.all(ranked <= got + 1e-12) and (ranked < got).any()
    assert (table.consistency(ids) < 1).any()  # some object was in view without being detected
    # Seen in more frames -> more confident, all else equal: the saturation is a real discount here.
    assert cfg.confidence_frames > NUM_FRAMES / 2 and got.max() < table.mean_score(ids).max()


def test_rarely_lifted_voxels_stay_out_of_objects(frames):
    def mapped_with(share):
        # the same objects either way: no joins of parts, which the trimmed geometry could change
        parts = PartConfig(join_hanging=False, join_coplanar=False, join_inplane=False, join_overlapping=False,
                           colour_join=0.0)
        mapper = Mapper(MapperConfig(min_hit_share=share, online_only=True, parts=parts))
        for frame in frames:
            mapper.integrate(frame)
        return mapper.finalize()

    everything, trusted = mapped_with(0.0), mapped_with(0.6)
    assert everything.ids.tolist() == trusted.ids.tolist()
    assert trusted.num_points < everything.num_points
    for obj in trusted:
        full = everything.get(obj.id)
        assert obj.weights.min() >= 0.6 * np.median(full.weights)
        assert np.all(obj.aabb_min >= full.aabb_min - 1e-6) and np.all(obj.aabb_max <= full.aabb_max + 1e-6)


def _as_map(objects: dict, like):
    """An InstanceMap holding ``objects`` with the trajectory of ``like``."""
    from scene.map import InstanceMap

    imap = InstanceMap(like.metadata)
    for obj in objects.values():
        imap.add(obj)
    for index, pose in zip(*like.trajectory):
        imap.add_frame(int(index), pose)
    return imap


def test_finalize_refines_keeps_long_lived_ids_and_saves(mapped):
    final = mapped["final"]
    assert final.metadata.extra["refined"] is True
    assert len(final) >= 5
    # The floor is the longest-lived object: the refinement must keep its online id.
    floor = max(final, key=lambda o: o.num_points)
    assert floor.id in mapped["online_ids"]
    for old, new in final.id_remap.items():
        assert old not in final and (new in final or new in final.id_remap)
    with MapStore(mapped["path"], read_only=True) as store:
        loaded = store.load()
    assert loaded.ids.tolist() == final.ids.tolist() and loaded.num_frames == NUM_FRAMES


def _map_until_killed(dataset: str, path: str, save_every: int, queue) -> None:
    """Child process: map the dataset, reporting each integrated frame index (killed by the parent)."""
    mapper = Mapper(MapperConfig(save_every=save_every), path)
    for frame in open_dataset(dataset):
        mapper.integrate(frame)
        queue.put(frame.index)
    queue.put("done")


@pytest.fixture(scope="module")
def dataset_dir(scene, tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    frames = (scene.frame(i) for i in range(NUM_FRAMES))
    small = make_scene("room", seed=0, noisy=True, num_frames=NUM_FRAMES, width=320, height=240)
    return write_scene(small, root / "room", frames=frames, gt=False)


def test_killed_mapper_resumes_with_every_saved_frame(dataset_dir, tmp_path):
    path = tmp_path / "map.sqlite"
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    queue = context.Queue()
    child = context.Process(target=_map_until_killed, args=(str(dataset_dir), str(path), 3, queue))
    child.start()
    try:
        while (reported := queue.get(timeout=120)) != "done" and reported < 7:
            pass
        assert reported != "done", "the child finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL

    mapper = Mapper.resume(path, MapperConfig(save_every=3))
    saved = mapper.map  # the mapper's live map: read what was restored before mapping on
    saved_frames = saved.num_frames
    assert saved_frames % 3 == 0 and 6 <= saved_frames <= NUM_FRAMES - 1
    assert saved.trajectory[0].tolist() == list(range(saved_frames))
    saved_ids = set(saved.ids.tolist())
    assert len(saved_ids) >= 5

    final = run(open_dataset(dataset_dir), mapper=mapper)
    assert final.trajectory[0].tolist() == list(range(NUM_FRAMES))
    assert final.metadata.extra["refined"] is False  # documented: no segment history after a resume
    survivors = sum(final.resolve_id(i) in final for i in saved_ids)
    assert survivors >= 0.8 * len(saved_ids)
    # New frames associate to the restored objects instead of only creating new ones.
    assert sum(o.last_frame >= saved_frames for o in final if o.id in saved_ids) >= 3
    with MapStore(path, read_only=True) as store:
        assert store.load().num_frames == NUM_FRAMES


# ---- configuration ----------------------------------------------------------------------------------


def test_toml_config_nested_values_and_voxel_size(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('save_every = 5\n[lift]\nvoxel_size = 0.03\n[refine]\nsplit_gap = "none"\n'
                    'observer_quantiles = [0.5, 0.0]\n[tracking.association]\nmatch_iou = 0.4\n[geometric]\nwork_width = 160\n')
    config = load_config(path)
    assert config.save_every == 5 and config.refine.split_gap is None
    assert config.refine.observer_quantiles == (0.5, 0.0)
    assert config.tracking.association.match_iou == 0.4
    assert config.voxel_size == config.lift.voxel_size == 0.03
    assert config.geometric.work_width == 160 and config.segmenter_options == {}
    mapper = Mapper(config)  # the one voxel size reaches the tracker, the map and the generator's settings
    assert mapper.tracker.voxel_size == mapper.map.metadata.voxel_size == 0.03
    assert mapper.generator.config.work_width == 160


def test_older_config_keys_are_read_where_they_live_now(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text('voxel_size = 0.03\n[tracking]\nsurface_stride = 3\ndepth_range = [0.2, 5.0]\n'
                    '[segmenter_options]\nwork_width = 160\n')
    config = load_config(path)
    assert (config.lift.voxel_size, config.lift.stride, config.lift.depth_range) == (0.03, 3, (0.2, 5.0))
    assert config.geometric.work_width == 160 and config.segmenter_options == {}
    path.write_text('voxel_size = 0.03\n[lift]\nvoxel_size = 0.04\n')
    with pytest.raises(ConfigError, match="'voxel_size'.*'lift.voxel_size'"):
        load_config(path)
    path.write_text('[refine]\nconfidence_frames = 30.0\ncontained_share = 0.7\n'
                    '[tracking.track_ids]\nmerge_votes = 3\n')
    config = load_config(path)  # settings folded into the one that did the same work
    assert (config.tracking.confidence_frames, config.refine.contain_share) == (30.0, 0.7)
    assert config.tracking.association.merge_frames == 3
    path.write_text('[refine]\ncontained_share = 0.7\ncontain_share = 0.8\n')
    with pytest.raises(ConfigError, match=r"'refine.contained_share' \(an older name of 'refine.contain_share'\)"):
        load_config(path)
    path.write_text('[refine]\nmin_voxels = 60\n')  # a voxel count became an area: no silent conversion
    with pytest.raises(ConfigError, match=r"old.toml: 'refine.min_voxels' was replaced: set 'refine.min_area'"):
        load_config(path)


def test_retired_options_are_refused_or_their_default_keys_dropped(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text('global_fusion = "graph"\n[graph]\ncell_factor = 3\n')
    with pytest.raises(ConfigError, match=r"old.toml: global_fusion = 'graph': the global pass over a graph of map "
                                          r"cells was removed .*delete the key"):
        load_config(path)
    path.write_text('[refine]\nonline_links = true\nlink_share = 0.4\n')
    with pytest.raises(ConfigError, match=r"old.toml: refine.online_links = True: online links .* were removed"):
        load_config(path)
    path.write_text('[tracking.association]\ngrow_by_vote = true\nparts_by_vote = true\n')
    with pytest.raises(ConfigError, match=r"old.toml: tracking.association.parts_by_vote = True: .*was removed"):
        load_config(path)
    # an older copy of the example file held them at their defaults, which had no effect: dropped, with a warning
    path.write_text('global_fusion = "consensus"\nsave_every = 5\n[refine]\nonline_links = false\nlink_share = 0.3\n'
                    'consensus = 0.8\n[graph]\ncell_factor = 3\n[graph.graph]\nprior = 1.0\n'
                    '[tracking.association]\nparts_by_vote = false\nmerge_frames = 3\n')
    with pytest.warns(UserWarning, match=r"old.toml: global_fusion, \[graph\], refine.online_links, refine.link_share, "
                                         r"tracking.association.parts_by_vote no longer exist .*ignored"):
        config = load_config(path)
    assert config.save_every == 5 and config.refine.consensus == 0.8
    assert config.tracking.association.merge_frames == 3
    assert not hasattr(config, "graph") and not hasattr(config.refine, "online_links")
    assert not hasattr(config.tracking.association, "parts_by_vote")


def test_folded_geometric_settings_are_read_as_the_one_that_replaced_them(tmp_path):
    from segment2d.geometric import GeometricMaskGenerator

    path = tmp_path / "old.toml"
    # a file written before the fold loads: its copies of the one bound become the setting itself
    path.write_text('[geometric]\nsibling_extent = 0.5\njoin_max_extent = 0.5\nstructure_min_fraction = 0.1\n'
                    '[segmenter_options]\njoin_max_fraction = 0.1\n')
    config = load_config(path)
    assert (config.geometric.object_extent, config.geometric.object_fraction) == (0.5, 0.1)
    path.write_text('[geometric]\nsibling_extent = 0.4\njoin_max_extent = 0.3\n')  # copies that disagree
    with pytest.raises(ConfigError, match=r"old.toml: 'geometric.(sibling|join_max)_extent' \(an older name of "
                                          r"'geometric.object_extent'\) is 0.\d but .* is 0.\d; keep one"):
        load_config(path)
    with pytest.raises(TypeError, match="'join_max_fraction' was folded into 'object_fraction'"):
        GeometricMaskGenerator(join_max_fraction=0.1)


def test_config_combinations_are_checked_at_construction():
    with pytest.raises(ConfigError, match="MapperConfig.geometric"):
        MapperConfig(segmenter="sam", geometric=GeometricConfig(work_width=160))
    with pytest.raises(ConfigError, match=r"MapperConfig.segmenter_options.*work_width.*MapperConfig.geometric"):
        MapperConfig(segmenter_options={"work_width": 160})
    with pytest.raises(ConfigError, match="MapperConfig.lift must be a lift3d.lift.LiftConfig"):
        MapperConfig(lift={"stride": 1})
    with pytest.raises(ValueError, match="LiftConfig.depth_range"):
        LiftConfig(depth_range=(3.0, 1.0))
    with pytest.raises(ValueError, match="GeometricConfig.level_weights"):
        GeometricConfig(level_weights=(1.0, 0.9))
    for weight in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="GeometricConfig.chroma_weight must be > 0"):
            GeometricConfig(chroma_weight=weight)


@pytest.mark.parametrize("text, key", [
    ("voxelsize = 0.02\n", "voxelsize"),
    ("[tracking.association]\nmatch = 0.3\n", "tracking.association.match"),
    ("[lift.clean]\nerode = 1\n", "lift.clean.erode"),
])
def test_unknown_config_key_names_key_and_file(tmp_path, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"'{key}'" in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("text", ["save_every = 'ten'\n", "voxel_size = -1.0\n", "[refine]\nconsensus = 2.0\n",
                                  "voxel_size = \n", "min_hit_share = 1.5\n", "min_hit_share = nan\n",
                                  "[parts]\ncontact_voxels = nan\n", "[refine]\nobserver_quantiles = [0.9, nan]\n"])
def test_bad_config_values_are_clear_errors(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


@pytest.mark.parametrize("text, read", [
    ("[refine]\nfrom_online = false\n", lambda c: c.refine.from_online is False),  # default "auto": bool | str
    ("[refine]\nfrom_online = true\n", lambda c: c.refine.from_online is True),
    ("[parts]\nobject_extent = 1\n", lambda c: c.parts.object_extent == 1.0 and type(c.parts.object_extent) is float),
    ("[parts]\nobject_extent = \"none\"\n", lambda c: c.parts.object_extent is None),
    ("up = [0.0, 0.0, 1.0]\n", lambda c: c.up == (0.0, 0.0, 1.0)),
])
def test_union_typed_settings_take_every_member_type(tmp_path, text, read):
    path = tmp_path / "union.toml"
    path.write_text(text)
    assert read(load_config(path))


@pytest.mark.parametrize("text, key, allowed", [
    ("[refine]\nfrom_online = 3\n", "refine.from_online", "bool or str"),
    ("[parts]\nobject_extent = true\n", "parts.object_extent", 'float or "none"'),
    ("[parts]\nobject_extent = \"big\"\n", "parts.object_extent", 'float or "none"'),
    ("up = 1.0\n", "up", 'tuple or "none"'),
])
def test_union_typed_settings_refuse_other_types_naming_what_they_take(tmp_path, text, key, allowed):
    path = tmp_path / "union.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=str(path)) as err:
        load_config(path)
    assert f"'{key}' must be {allowed}" in str(err.value)


def test_example_config_documents_every_field_at_its_default():
    import tomllib

    def keys(d: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            out |= keys(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "segmenter_options" else {prefix + k}
        return out

    documented = keys(tomllib.loads(EXAMPLE_CONFIG.read_text()))
    defaults = MapperConfig().to_dict()
    assert keys(defaults) == documented  # every field, and no stale key
    for line in EXAMPLE_CONFIG.read_text().splitlines():  # each setting says what it does
        if "=" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"{EXAMPLE_CONFIG.name}: undocumented setting: {line}"
    assert load_config(EXAMPLE_CONFIG).to_dict() == defaults


def test_voxel_geometry_hands_over_each_objects_rows_and_copies_of_their_sums():
    from scene.pipeline import _VoxelGeometry

    rng = np.random.default_rng(0)
    voxels = _VoxelGeometry()
    keys = rng.integers(0, 5000, 3000)
    points, colors = rng.random((3000, 3)), rng.integers(0, 255, (3000, 3)).astype(np.float64)
    rows = voxels.accumulate(keys, points, colors, np.ones(3000, np.int64))
    owners = rng.integers(0, 7, rows.size)
    voxels.assign(rows, owners)
    members = voxels.rows_of([6, 2, 9])
    for obj in (6, 2):
        np.testing.assert_array_equal(members[obj], np.sort(rows[owners == obj]))
    assert members[9].size == 0
    xyz, rgb, hits = voxels.sums(members[2])
    np.testing.assert_array_equal(xyz, voxels.xyz_sum[members[2]])
    np.testing.assert_array_equal(rgb, voxels.rgb_sum[members[2]])
    xyz += 1.0  # the writer thread owns its copies: the voxels go on accumulating beside it
    assert not np.shares_memory(xyz, voxels.xyz_sum) and np.all(voxels.xyz_sum[members[2]] != xyz)
    assert hits.sum() == np.isin(keys, voxels.index.keys[members[2]]).sum()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_bounds_are_the_row_wise_min_and_max(dtype):
    from scene.objects import column_bounds

    rows = np.random.default_rng(1).normal(size=(5000, 3)).astype(dtype)
    low, high = column_bounds(rows)
    np.testing.assert_array_equal(low, rows.min(axis=0))
    np.testing.assert_array_equal(high, rows.max(axis=0))
    assert low.dtype == high.dtype == dtype
