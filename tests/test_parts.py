"""scene.parts: objects attached to a larger one rank lower; objects resting on one do not."""
from dataclasses import replace

import numpy as np
import pytest

from scene.map import InstanceMap, MapMetadata, MapObject
from scene.parts import (ATTACHED_SHARE, DETECTION_CONFIDENCE, RETIRED_FIELDS, PartConfig, PartRanker,
                         detection_confidence, coplanar_parts, hanging_parts, inplane_parts, join_objects, overlapping_parts, rank_parts)

UP = np.array([0.0, 0.0, 1.0])
VOXEL = 0.02


def _box_surface(lo, hi, step=VOXEL) -> np.ndarray:
    """Points on the six faces of the axis-aligned box lo..hi (metres), about ``step`` apart."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    axes = [np.arange(lo[k], hi[k] + step / 2, step) for k in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    on_face = np.any(np.isclose(grid, lo, atol=step / 2) | np.isclose(grid, hi, atol=step / 2), axis=1)
    return grid[on_face].astype(np.float32)


def _table_scene(structure_top: bool = False) -> InstanceMap:
    """A table top (id 0), a leg hanging under its corner (1), a box resting on it (2), a free-standing
    bin far away (3) and the floor (4, structure)."""
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    parts = {
        0: _box_surface((0.0, 0.0, 0.70), (1.2, 0.8, 0.74)),
        1: _box_surface((0.02, 0.02, 0.0), (0.08, 0.08, 0.69)),
        2: _box_surface((0.4, 0.3, 0.75), (0.6, 0.5, 0.9)),
        3: _box_surface((2.0, 2.0, 0.0), (2.3, 2.3, 0.4)),
        4: _box_surface((-1.0, -1.0, -0.02), (3.0, 3.0, -0.01)),
    }
    for obj_id, points in parts.items():
        imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.8,
                                       is_structure=obj_id == 4 or (structure_top and obj_id == 0)))
    return imap


def test_a_hanging_piece_drops_and_a_resting_object_keeps_its_confidence():
    imap = _table_scene()
    shares = rank_parts(imap, UP)
    assert 0.03 < shares[1] < 0.2  # the leg touches the top along its upper 4 cm only
    assert imap.get(1).confidence == pytest.approx(0.8 * (1 - 2 * shares[1]))
    assert shares[2] == 0.0 and imap.get(2).confidence == pytest.approx(0.8)  # rests on the top
    assert shares[3] == 0.0 and imap.get(3).confidence == pytest.approx(0.8)  # touches only the floor
    assert shares[0] == 0.0  # the top touches only smaller objects
    assert imap.get(1).attributes[DETECTION_CONFIDENCE] == pytest.approx(0.8)
    assert imap.get(1).attributes[ATTACHED_SHARE] == pytest.approx(shares[1])


def test_structure_neighbours_do_not_count():
    imap = _table_scene(structure_top=True)
    shares = rank_parts(imap, UP)
    assert shares[1] == 0.0 and imap.get(1).confidence == pytest.approx(0.8)


def test_ranking_again_does_not_compound_and_follows_changed_geometry():
    imap = _table_scene()
    ranker = PartRanker()
    first = ranker.rank(imap, UP)
    once = imap.get(1).confidence
    assert ranker.rank(imap, UP) == first
    assert imap.get(1).confidence == pytest.approx(once)
    assert detection_confidence(imap.get(1)) == pytest.approx(0.8)
    # the leg is rebuilt 10 cm lower: it no longer reaches the top
    moved = MapObject.from_points(1, _box_surface((0.02, 0.02, 0.0), (0.08, 0.08, 0.59)), up=UP, confidence=0.7)
    imap.update(moved)
    assert ranker.rank(imap, UP)[1] == 0.0
    assert imap.get(1).confidence == pytest.approx(0.7)


def test_unknown_up_or_penalty_zero_change_nothing():
    for up, config in ((None, PartConfig()), (UP, PartConfig(penalty=0.0))):
        imap = _table_scene()
        assert rank_parts(imap, up, config) == {}
        assert all(obj.confidence == pytest.approx(0.8) and DETECTION_CONFIDENCE not in obj.attributes for obj in imap)


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="PartConfig"):
        PartConfig(max_discount=1.5)
    with pytest.raises(ValueError, match="PartConfig"):
        PartConfig(base_percentile=101.0)
    with pytest.raises(ValueError, match="PartConfig"):
        PartConfig(inside_share=0.0)
    with pytest.raises(ValueError, match="PartConfig"):
        PartConfig(hang_gap=-0.1)


def test_the_mapper_ranks_both_maps(tmp_path):
    from scene.config import MapperConfig
    from scene.datasets.synthetic import make_scene
    from scene.pipeline import Mapper

    scene = make_scene("tabletop", seed=0, num_frames=12, width=160, height=120)
    mapper = Mapper(MapperConfig(), out=tmp_path / "map.sqlite")
    for frame in scene.source():
        mapper.integrate(frame)
    online = mapper.map
    assert all(DETECTION_CONFIDENCE in obj.attributes for obj in online)
    assert all(obj.confidence <= detection_confidence(obj) + 1e-9 for obj in online)
    final = mapper.finalize()
    assert all(DETECTION_CONFIDENCE in obj.attributes for obj in final)
    assert any(obj.attributes[ATTACHED_SHARE] > 0 for obj in final)
    # the file keeps both confidences, and resuming restores the tracker from the detection confidence
    from scene.storage import MapStore

    loaded = MapStore(tmp_path / "map.sqlite", read_only=True).load()
    for obj in final:
        again = loaded.get(obj.id)
        assert again.confidence == pytest.approx(obj.confidence)
        assert detection_confidence(again) == pytest.approx(detection_confidence(obj))
    resumed = Mapper.resume(tmp_path / "map.sqlite")
    table = resumed.tracker.objects
    saturation = resumed.tracker.config.confidence_frames
    discounted = [obj for obj in final if obj.confidence < detection_confidence(obj) - 1e-6]
    assert discounted
    for obj in discounted:
        n = max(obj.num_observations, 1)
        expected = min(detection_confidence(obj) / (1 - np.exp(-n / saturation)), 1.0)
        assert table.score_sum[obj.id] / n == pytest.approx(expected)  # not from the discounted confidence


def _hanging_scene() -> InstanceMap:
    """A table top (0) with a leg under it (1), a lamp shade (2) over a pole 4 cm below it (3), a box
    beside the table (4), a short bin under the table (5) and the floor (6, structure); floor at z = 0."""
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    parts = {
        0: _box_surface((0.0, 0.0, 0.70), (1.2, 0.8, 0.74)),
        1: _box_surface((0.02, 0.02, 0.0), (0.08, 0.08, 0.69)),
        2: _box_surface((2.0, 0.0, 1.2), (2.4, 0.4, 1.45)),
        3: _box_surface((2.18, 0.18, 0.0), (2.22, 0.22, 1.16)),
        4: _box_surface((1.3, 0.0, 0.0), (1.6, 0.3, 0.69)),
        5: _box_surface((0.5, 0.3, 0.0), (0.7, 0.5, 0.4)),
        6: _box_surface((-1.0, -1.0, -0.02), (3.0, 3.0, -0.01)),
    }
    for obj_id, points in parts.items():
        imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.5 + 0.05 * obj_id,
                                       num_observations=3 + obj_id, first_frame=obj_id, last_frame=10 + obj_id,
                                       is_structure=obj_id == 6))
    return imap


def test_hanging_parts_are_the_leg_and_the_pole_only():
    imap = _hanging_scene()
    assert sorted(hanging_parts(imap, UP, floor=0.0)) == [(1, 0), (3, 2)]
    assert hanging_parts(imap, UP, floor=0.0, config=PartConfig(join_hanging=False)) == []
    # with the floor 30 cm lower nothing stands on it: only posts (slim, tall) still hang, and both are
    assert sorted(hanging_parts(imap, UP, floor=-0.3)) == [(1, 0), (3, 2)]
    assert hanging_parts(imap, UP, floor=-0.3, config=PartConfig(post_elongation=0)) == []


def test_a_post_whose_bottom_is_unseen_hangs_and_a_bottle_on_a_shelf_does_not():
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    parts = {
        0: _box_surface((0.0, 0.0, 1.2), (0.4, 0.4, 1.45)),  # a lamp shade
        1: _box_surface((0.18, 0.18, 0.45), (0.21, 0.21, 1.16)),  # its pole, seen from 45 cm up only
        2: _box_surface((1.0, 0.0, 0.88), (2.0, 0.4, 0.9)),  # a shelf board ...
        3: _box_surface((1.0, 0.0, 0.58), (2.0, 0.4, 0.6)),  # ... the board under it
        4: _box_surface((1.3, 0.1, 0.6), (1.34, 0.14, 0.85)),  # a bottle on the lower board, 25 cm tall
    }
    for obj_id, points in parts.items():
        imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.5))
    assert hanging_parts(imap, UP, floor=0.0) == [(1, 0)]
    assert hanging_parts(imap, UP, floor=0.0, config=PartConfig(post_min_height=0.8)) == []
    assert sorted(hanging_parts(imap, UP, floor=0.0, config=PartConfig(post_min_height=0.2))) == [(1, 0), (4, 2)]


def test_join_objects_unions_points_and_records_the_remap():
    imap = _hanging_scene()
    sizes = {obj.id: obj.num_points for obj in imap}
    remap = join_objects(imap, [(1, 0), (3, 2)], UP)
    assert remap == {1: 0, 3: 2}
    assert 1 not in imap and 3 not in imap
    table, lamp = imap.get(0), imap.get(2)
    assert table.num_points == sizes[0] + sizes[1] and lamp.num_points == sizes[2] + sizes[3]
    assert table.aabb_min[2] == pytest.approx(0.0, abs=1e-6)  # the leg's points reach the floor
    assert (table.first_frame, table.last_frame, table.num_observations) == (0, 11, 4)
    assert table.confidence == pytest.approx(0.5)  # the larger member's
    assert imap.id_remap[1] == 0 and imap.resolve_id(3) == 2
    # chains join into one, under the largest member's id (the box beside the table)
    imap = _hanging_scene()
    assert join_objects(imap, [(4, 5), (5, 1)]) == {5: 4, 1: 4}



def test_a_joined_object_drops_the_stray_points_its_own_median_hit_count_shows_up():
    """A door whose voxels were hit 30 times and its upper piece, hit 10 times, each with a stray voxel hit
    twice: built piece by piece (share 0.2 of its own median: 6 and 2) the upper piece kept its stray;
    the joined door, filtered against its joined median (30: 6), drops both strays and keeps the piece.
    A share of 0 keeps every point."""
    door = _box_surface((0.0, 1.75, 0.0), (0.8, 1.8, 1.5))
    upper = _box_surface((0.0, 1.75, 1.52), (0.8, 1.8, 2.0))
    strays = np.array([[0.4, 1.9, 0.3], [0.4, 1.9, 1.9]], np.float32)

    def door_map() -> InstanceMap:
        imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
        for obj_id, (points, hits) in enumerate([(door, 30.0), (upper, 10.0)]):
            points = np.concatenate([points, strays[obj_id:obj_id + 1]])
            weights = np.r_[np.full(len(points) - 1, hits), 2.0].astype(np.float32)
            imap.add(MapObject.from_points(obj_id, points, weights=weights, up=UP))
        return imap

    imap = door_map()
    assert join_objects(imap, [(0, 1)], UP, hit_share=0.2) == {1: 0}
    joined = imap.get(0)
    assert joined.num_points == len(door) + len(upper)  # the two strays are gone
    assert joined.aabb_max[1] == door[:, 1].max() < 1.85
    assert joined.weights.min() == 10.0  # the upper piece stays
    imap = door_map()
    join_objects(imap, [(0, 1)], UP)
    assert imap.get(0).num_points == len(door) + len(upper) + 2
    assert imap.get(0).aabb_max[1] == pytest.approx(1.9, abs=1e-6)

def test_the_online_map_shows_hanging_parts_joined_and_the_tracker_keeps_them(tmp_path):
    from scene.config import MapperConfig
    from scene.datasets.synthetic import make_scene
    from scene.pipeline import Mapper
    from scene.storage import MapStore

    scene = make_scene("room", seed=0, noisy=True, num_frames=24, width=320, height=240)
    mapper = Mapper(MapperConfig(save_every=24), out=tmp_path / "map.sqlite")
    for frame in scene.source():
        mapper.integrate(frame)
    view = mapper.map
    raw = MapStore(tmp_path / "map.sqlite", read_only=True).load()  # saves hold the tracker's objects
    assert raw.num_frames == view.num_frames == 24
    joined = {part: view.resolve_id(part) for part in raw.ids.tolist() if part not in view}
    assert joined, "legs, poles and shelf compartments of the room are shown joined"
    for whole in set(joined.values()):
        members = [whole] + [part for part, shown in joined.items() if shown == whole]
        assert view.get(whole).num_points == sum(raw.get(m).num_points for m in members)
    assert all(mapper.tracker.resolve(np.array([part]))[0] == part for part in joined)  # still tracked apart


def test_coplanar_pieces_join_and_other_surfaces_do_not():
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    parts = {
        0: _box_surface((0.0, 0.0, 0.0), (0.01, 1.0, 2.0)),  # a wall strip in the plane x = 0
        1: _box_surface((0.0, 1.02, 0.0), (0.01, 1.8, 2.0)),  # the next strip, 2 cm further along
        2: _box_surface((0.06, 1.9, 0.5), (0.07, 2.5, 1.5)),  # a panel 6 cm in front of the wall's plane
        3: _box_surface((0.0, 1.82, 0.0), (0.8, 1.83, 2.0)),  # a perpendicular wall at the corner
        4: _box_surface((0.02, 0.2, 0.0), (0.5, 0.6, 0.4)),  # a box against the wall
    }
    for obj_id, points in parts.items():
        imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.5))
    assert coplanar_parts(imap, UP) == [(0, 1)]
    assert coplanar_parts(imap, UP, PartConfig(join_coplanar=False)) == []
    assert coplanar_parts(imap, UP, PartConfig(contact_voxels=5.0)) == [(0, 1)]  # 10 cm: the panel does not touch


def test_coplanar_structure_pieces_join_each_other_but_not_an_object_flush_with_them():
    """A floor the masks cut into two pieces (both structure) is one floor; a door flush with its wall
    (an object in the wall's plane, touching it) stays an object."""
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    parts = {
        0: (_box_surface((0.0, 0.0, 0.0), (2.0, 3.0, 0.01)), True),  # floor, first piece
        1: (_box_surface((2.02, 0.0, 0.0), (4.0, 3.0, 0.01)), True),  # floor, the piece beyond a seam
        2: (_box_surface((0.0, 3.0, 0.02), (1.0, 3.01, 2.4)), True),  # wall in the plane y = 3
        3: (_box_surface((1.02, 3.0, 0.02), (1.9, 3.01, 2.1)), False),  # a door in that wall's plane
    }
    for obj_id, (points, structure) in parts.items():
        imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.5, is_structure=structure))
    assert coplanar_parts(imap, UP) == [(0, 1)]
    imap.update(imap.get(3).with_statistics(is_structure=True))  # a door the map took for wall: wall here too
    assert sorted(coplanar_parts(imap, UP)) == [(0, 1), (2, 3)]


def test_the_plane_offset_allowed_grows_with_the_maps_voxel_size():
    """The distance a surface may lie off its expected place is the contact distance (contact_voxels
    voxels): two strips of a door meeting at a seam, one 6 cm proud of the other's plane, are two surfaces
    in a 2 cm map (4 cm reach) and one surface measured with 4 cm voxels (8 cm reach)."""
    strips = (_box_surface((0.0, 0.0, 0.0), (0.01, 0.5, 2.0)), _box_surface((0.06, 0.52, 0.0), (0.07, 0.9, 2.0)))
    joined = {}
    for voxel in (0.02, 0.04):
        imap = InstanceMap(MapMetadata(voxel_size=voxel, up=UP))
        for obj_id, points in enumerate(strips):
            imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.5))
        joined[voxel] = coplanar_parts(imap, UP)
    assert joined == {0.02: [], 0.04: [(0, 1)]}


def _wall_with_hole(hole_y, hole_top) -> np.ndarray:
    """A wall in the plane x = 0 (4 m x 2.4 m) without the part that furniture in front of it hid:
    y in ``hole_y`` below ``hole_top`` (metres)."""
    wall = _box_surface((0.0, 0.0, 0.0), (0.01, 4.0, 2.4))
    hidden = (wall[:, 1] > hole_y[0]) & (wall[:, 1] < hole_y[1]) & (wall[:, 2] < hole_top)
    return wall[~hidden]


def _wall_scene() -> InstanceMap:
    """A wall (id 0) with a hole low down where furniture hid it; patches of it seen inside the hole
    (1: under a table, 2: beside a shelf), a poster 6 cm in front of it (3), a box against it (4), a
    patch beyond the wall's end (5) and a perpendicular structure wall (6)."""
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    parts = {
        0: _wall_with_hole((0.3, 2.9), 0.7),
        1: _box_surface((0.0, 0.5, 0.0), (0.01, 1.3, 0.4)),
        2: _box_surface((0.0, 2.5, 0.0), (0.01, 2.7, 0.5)),
        3: _box_surface((0.06, 1.0, 1.0), (0.07, 1.6, 1.8)),
        4: _box_surface((0.02, 3.0, 0.0), (0.4, 3.4, 0.3)),
        5: _box_surface((0.0, 4.2, 0.0), (0.01, 4.5, 0.5)),
        6: _box_surface((0.0, -0.02, 0.0), (3.0, -0.01, 2.4)),
    }
    for obj_id, points in parts.items():
        imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.5, is_structure=obj_id == 6))
    return imap


def test_inplane_pieces_join_their_wall_without_touching_it():
    imap = _wall_scene()
    assert sorted(inplane_parts(imap, UP)) == [(1, 0), (2, 0)]  # not the poster, the box or the far patch
    assert inplane_parts(imap, UP, PartConfig(join_inplane=False)) == []
    assert sorted(inplane_parts(imap, UP, PartConfig(contact_voxels=5.0))) == [(1, 0), (2, 0), (3, 0)]  # the poster
    # half a metre: also the patch beyond the wall's end lies "inside" the grown box
    assert sorted(inplane_parts(imap, UP, PartConfig(contact_voxels=25.0))) == [(1, 0), (2, 0), (3, 0), (5, 0)]
    # A patch of the structure wall joins it as well.
    imap.add(MapObject.from_points(7, _box_surface((0.5, 0.0, 0.0), (1.0, 0.01, 0.4)), up=UP, confidence=0.5))
    assert (7, 6) in inplane_parts(imap, UP)
    joined = imap.copy()
    remap = join_objects(joined, PartRanker().joins(joined, UP, 0.0), UP)
    assert remap == {1: 0, 2: 0, 7: 6}
    assert joined.get(0).num_points == sum(imap.get(i).num_points for i in (0, 1, 2))


def test_an_upright_walls_inplane_box_follows_up_not_the_holes_in_its_points():
    """A wall whose points miss its upper right end (a window) and its lower left corner (hidden by a
    table: the patch seen under it) has principal axes turned by 12 degrees; a box along them leaves a
    third of the patch outside. Boxed along the horizontal and up, the patch lies inside and joins."""
    wall = _box_surface((0.0, 0.0, 0.0), (0.01, 6.0, 2.4))
    hidden = ((wall[:, 1] > 4.0) & (wall[:, 2] > 1.0)) | ((wall[:, 1] < 1.6) & (wall[:, 2] < 0.5))
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    imap.add(MapObject.from_points(0, wall[~hidden], up=UP, confidence=0.5, is_structure=True))
    imap.add(MapObject.from_points(1, _box_surface((0.0, 0.0, 0.0), (0.01, 1.5, 0.45)), up=UP, confidence=0.5))
    _, (plane, _) = PartRanker()._shapes(imap, UP, structure=True)
    turned = np.degrees(np.arcsin(abs(plane.principal_axes[0] @ UP)))
    assert 10.0 < turned < 14.0
    assert np.allclose(np.abs(plane.plane_axes), [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], atol=1e-6)
    assert inplane_parts(imap, UP) == [(1, 0)]


def test_a_flat_objects_inplane_box_keeps_its_principal_axes():
    """A table top (normal along up) has no upright direction: it is boxed along its principal axes."""
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    top = _box_surface((0.0, 0.0, 0.70), (1.2, 0.8, 0.72))
    turn = np.deg2rad(30.0)
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0.0], [np.sin(turn), np.cos(turn), 0.0], [0.0, 0.0, 1.0]])
    imap.add(MapObject.from_points(0, (top @ rotation.T).astype(np.float32), up=UP, confidence=0.5))
    _, (shape,) = PartRanker()._shapes(imap, UP)
    assert abs(shape.normal @ UP) > 0.99 and np.allclose(shape.plane_axes, shape.principal_axes)
    assert abs(shape.plane_axes[0] @ (rotation @ [1.0, 0.0, 0.0])) > 0.99  # along the top's length


def test_an_inplane_piece_does_not_pull_the_object_it_hangs_under_into_the_wall():
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    parts = {
        0: _wall_with_hole((1.2, 2.4), 1.0),  # the cabinet in front hides the wall behind it
        8: _box_surface((0.02, 1.4, 0.32), (0.5, 2.2, 0.8)),  # a cabinet on a stand
        9: _box_surface((0.0, 1.5, 0.0), (0.01, 1.7, 0.3)),  # the stand's back panel, in the wall's plane
    }
    for obj_id, points in parts.items():
        imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.5))
    ranker = PartRanker()
    assert ranker.inplane(imap, UP) == [(9, 0)]
    assert ranker.hanging(imap, UP, 0.0) == [(9, 8)]
    assert ranker.joins(imap, UP, 0.0) == [(9, 8)]  # joining the wall too would join the cabinet with it


def test_touching_objects_sharing_most_of_their_box_join():
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    back_and_sides = np.concatenate([_box_surface((0.0, 0.38, 0.0), (1.0, 0.4, 1.6)),
                                     _box_surface((0.0, 0.0, 0.0), (0.02, 0.4, 1.6)),
                                     _box_surface((0.98, 0.0, 0.0), (1.0, 0.4, 1.6))])
    boards = np.concatenate([_box_surface((0.02, 0.0, z), (0.98, 0.38, z + 0.02)) for z in (0.1, 0.6, 1.1, 1.58)])
    parts = {
        0: back_and_sides,  # a shelf's frame ...
        1: boards,  # ... and its boards, cut apart at every crease
        2: _box_surface((0.3, 0.05, 0.62), (0.5, 0.3, 0.8)),  # a box on the middle board
        3: _box_surface((1.0, 0.0, 0.0), (1.9, 0.4, 1.6)),  # a cabinet of the same size beside the shelf
        4: _box_surface((0.1, -1.0, 0.0), (0.9, -0.6, 1.6)),  # one the same size in front, not touching
    }
    for obj_id, points in parts.items():
        imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.5))
    assert overlapping_parts(imap, UP) == [(0, 1)]
    assert overlapping_parts(imap, UP, PartConfig(join_overlapping=False)) == []
    assert overlapping_parts(imap, UP, PartConfig(overlap_iou=0.01)) == [(0, 1), (1, 2)]  # the box touches a board


def test_joins_are_looked_for_again_on_the_joined_map():
    wall = _wall_with_hole((1.0, 3.0), 1.0)
    parts = {
        0: wall[wall[:, 1] < 2.0],  # a wall cut in two strips along a colour edge
        1: wall[wall[:, 1] >= 2.02],
        2: _box_surface((0.0, 1.2, 0.0), (0.01, 2.8, 0.8)),  # a patch of it seen under a table
    }
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    for obj_id, points in parts.items():
        imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.5))
    sizes = {i: imap.get(i).num_points for i in parts}
    assert sizes[2] * 5 > max(sizes[0], sizes[1]) and sizes[2] * 5 <= sizes[0] + sizes[1]
    once = imap.copy()
    assert join_objects(once, PartRanker().joins(once, UP, 0.0), UP) == {1: 0}  # one round: the strips only
    twice = imap.copy()
    assert PartRanker().join(twice, UP, 0.0) == {1: 0, 2: 0}  # then the patch joins the whole wall
    assert [obj.id for obj in twice] == [0] and twice.get(0).num_points == sum(sizes.values())
    assert twice.resolve_id(2) == 0


def test_a_leg_seen_below_the_tops_front_edge_hangs_and_things_under_the_table_do_not():
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    parts = {
        0: _box_surface((0.0, 0.0, 0.72), (1.2, 0.8, 0.76)),  # a table top
        1: _box_surface((0.02, 0.02, 0.0), (0.08, 0.021, 0.55)),  # the front face of a leg, its top hidden
        2: _box_surface((0.5, 0.3, 0.0), (0.7, 0.5, 0.2)),  # a box under the table
        3: _box_surface((0.3, 0.02, 0.0), (0.36, 0.021, 0.25)),  # a thin board under it, a third of the way up
    }
    for obj_id, points in parts.items():
        imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.5))
    assert hanging_parts(imap, UP, floor=0.0) == [(1, 0)]
    assert hanging_parts(imap, UP, floor=0.0, config=PartConfig(leg_reach=0)) == []
    assert sorted(hanging_parts(imap, UP, floor=0.0, config=PartConfig(leg_reach=0.3))) == [(1, 0), (3, 0)]


def test_a_config_naming_a_retired_setting_is_refused_with_the_reason(tmp_path):
    from scene.config import ConfigError, load_config

    path = tmp_path / "old.toml"
    for key in RETIRED_FIELDS:
        path.write_text(f"[parts]\n{key} = 1\n")
        with pytest.raises(ConfigError, match=rf"old.toml: 'parts.{key}' was removed \(.+\); delete it"):
            load_config(path)
    path.write_text("[parts]\npenalty = 1.5\n")  # the settings that stay still load
    assert load_config(path).parts.penalty == 1.5


def _crowded_scene(seed: int) -> InstanceMap:
    """Boxes of random sizes packed into a 1.5 m cube, many touching each other, a few apart."""
    rng = np.random.default_rng(seed)
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    for obj_id in range(24):
        lo = rng.uniform(0.0, 1.3, 3)
        imap.add(MapObject.from_points(obj_id, _box_surface(lo, lo + rng.uniform(0.06, 0.5, 3)), up=UP,
                                       confidence=0.8))
    return imap


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contacts_found_for_many_pairs_at_once_are_the_ones_found_pair_by_pair(seed):
    imap = _crowded_scene(seed)
    reach = PartConfig().contact_voxels * VOXEL
    batched = PartRanker()
    batched.attached_shares(imap, UP)
    one_by_one = PartRanker()
    touching = 0
    for (a, b), (_, _, _, found) in batched._touches.items():
        first, second = one_by_one._geometry(imap.get(a), UP), one_by_one._geometry(imap.get(b), UP)
        expected = one_by_one._touching(a, b, first.shape, second.shape, reach)
        np.testing.assert_array_equal(found, expected)
        touching += expected.size > 0
    assert len(batched._touches) > 20 and touching > 5  # the scene has pairs of both kinds


def test_reranking_a_grown_map_equals_ranking_it_afresh():
    imap = _crowded_scene(3)
    ranker = PartRanker(PartConfig(refresh_share=0.0))  # every grown object is measured again
    ranker.rank(imap, UP)
    grown = imap.get(5)
    imap.update(grown.with_points(np.concatenate([grown.points, grown.points[:40] + 0.01]), up=UP))
    shares = ranker.rank(imap, UP)
    fresh = imap.copy()
    assert shares == PartRanker(PartConfig(refresh_share=0.0)).rank(fresh, UP)
    assert [o.confidence for o in imap] == [o.confidence for o in fresh]


def test_with_statistics_equals_replace_and_shares_the_geometry():
    from dataclasses import fields, replace

    obj = _table_scene().get(1)
    changed = obj.with_statistics(confidence=0.25, attributes={"a": 1}, is_structure=True)
    expected = replace(obj, confidence=0.25, attributes={"a": 1}, is_structure=True)
    for field in fields(obj):
        np.testing.assert_array_equal(getattr(changed, field.name), getattr(expected, field.name))
    assert changed.points is obj.points and obj.confidence == 0.8 and not obj.is_structure
    with pytest.raises(ValueError, match="confidence"):
        obj.with_statistics(confidence=1.5)
    with pytest.raises(ValueError, match="points"):
        obj.with_statistics(points=obj.points[:3])


def test_a_join_round_reuses_the_shapes_of_untouched_objects_and_joins_as_fresh_rankers_do():
    wall = _wall_with_hole((1.0, 3.0), 1.0)
    parts = {
        0: wall[wall[:, 1] < 2.0],
        1: wall[wall[:, 1] >= 2.02],
        2: _box_surface((0.0, 1.2, 0.0), (0.01, 2.8, 0.8)),
        3: _box_surface((2.0, 2.0, 0.0), (2.3, 2.3, 0.4)),  # a bin far away: no round touches it
    }
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    for obj_id, points in parts.items():
        imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.5))
    fresh = imap.copy()
    while join_objects(fresh, PartRanker().joins(fresh, UP, 0.0), UP):  # every round measured afresh
        pass
    ranker, joined = PartRanker(), imap.copy()
    assert ranker.join(joined, UP, 0.0) == {1: 0, 2: 0}
    assert [(o.id, o.num_points) for o in joined] == [(o.id, o.num_points) for o in fresh]
    for mine, theirs in zip(joined, fresh):
        np.testing.assert_array_equal(mine.points, theirs.points)
        np.testing.assert_array_equal(mine.obb_extents, theirs.obb_extents)
    second = ranker._next
    assert second._solids[3] is ranker._solids[3]  # the bin was measured once
    assert second._solids[0].source is not ranker._solids[0].source  # the joined wall anew


def test_ranking_through_a_sequence_of_edits_equals_ranking_each_map_afresh():
    """Objects grown, shrunk, removed and added and up tilted, one edit after another: the ranker that
    keeps its caches across the edits (``refresh_share`` 0: every changed object measured again) gives
    each map the shares and confidences a fresh ranker gives it, and measured only what changed."""
    rng = np.random.default_rng(7)
    imap = _crowded_scene(4)
    config = PartConfig(refresh_share=0.0)
    ranker, up = PartRanker(config), UP
    reused = 0
    for step in range(8):
        if step % 3 == 2:  # a new up estimate: heights change, which points touch does not
            up = UP + np.r_[rng.normal(0.0, 0.02, 2), 0.0]
        else:
            for obj_id in rng.choice([o.id for o in imap], 3, replace=False):
                obj = imap.get(int(obj_id))
                shift = rng.normal(0.0, 0.01, 3).astype(np.float32)
                imap.update(obj.with_points(np.concatenate([obj.points[::2], obj.points[1::4] + shift]), up=UP))
            imap.remove(int(rng.choice([o.id for o in imap])))
            lo = rng.uniform(0.0, 1.3, 3)
            imap.add(MapObject.from_points(100 + step, _box_surface(lo, lo + rng.uniform(0.06, 0.4, 3)), up=UP,
                                           confidence=0.8))
        touches_before = dict(ranker._touches)
        shares = ranker.rank(imap, up)
        reused += sum(ranker._touches[key] is value for key, value in touches_before.items() if key in ranker._touches)
        fresh = imap.copy()
        assert shares == PartRanker(config).rank(fresh, up), step
        assert [(o.id, o.confidence, o.attributes) for o in imap] == [(o.id, o.confidence, o.attributes) for o in fresh]
        assert sum(share > 0 for share in shares.values()) >= 3  # the scene has attached pieces
    assert reused > 100  # the touching points of pairs the edits left alone were not searched again


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contacts_measured_for_all_pieces_of_a_neighbour_at_once_are_the_pair_by_pair_ones(seed):
    """Each pair's share as the contact test states it, pair by pair: 0 when no sample point of A lies
    within reach of B or when most of B's touching points lie below A's base (A rests on B), else the
    share of A's sample points within reach."""
    imap, cfg = _crowded_scene(seed), PartConfig()
    reach = cfg.contact_voxels * VOXEL
    ranker = PartRanker(cfg)
    ranker.attached_shares(imap, UP)
    kinds = {"apart": 0, "rests": 0, "attached": 0}
    for (a, b), (first, second, share) in ranker._pairs.items():
        nearest = PartRanker(cfg)._touching(a, b, first.shape, second.shape, reach)  # searched afresh
        if nearest.size == 0:
            expected, kind = 0.0, "apart"
        elif (second.heights[nearest] < first.base + reach).mean() >= cfg.inside_share:
            expected, kind = 0.0, "rests"
        else:
            expected, kind = nearest.size / len(first.sample), "attached"
        assert share == expected and type(share) is float, (a, b)
        kinds[kind] += 1
    assert min(kinds.values()) >= 1, kinds  # the scene has pairs of every kind


def _coloured(obj_id: int, points: np.ndarray, rgb, seed: int = 0) -> MapObject:
    """An object of ``points`` coloured ``rgb`` with +-3 of per-point noise (a lit surface's spread)."""
    noise = np.random.default_rng(seed + obj_id).integers(-3, 4, (len(points), 3))
    colors = np.clip(np.asarray(rgb)[None] + noise, 0, 255).astype(np.uint8)
    return MapObject.from_points(obj_id, points, colors, up=UP, confidence=0.8)


def _colour_scene(*objects) -> InstanceMap:
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    for k, (lo, hi, rgb) in enumerate(objects):
        imap.add(_coloured(k, _box_surface(lo, hi), rgb))
    return imap


def test_pieces_of_one_colour_a_gap_apart_join_and_other_colours_do_not():
    # a seat (0) and its back (1) 6 cm apart, one brown; a blue box (2) touching the seat
    imap = _colour_scene(((0.0, 0.0, 0.40), (0.40, 0.40, 0.45), (120, 80, 40)),
                         ((0.0, 0.46, 0.45), (0.40, 0.50, 0.90), (126, 85, 44)),
                         ((0.41, 0.0, 0.0), (0.70, 0.30, 0.45), (40, 60, 160)))
    assert PartRanker().same_colour(imap, UP) == [(0, 1)]
    assert PartRanker(PartConfig(colour_join=0.0)).same_colour(imap, UP) == []
    assert PartRanker(PartConfig(colour_join=5.0)).same_colour(imap, UP) == []  # the two browns differ by 6
    sizes = {obj.id: obj.num_points for obj in imap}
    remap = PartRanker().join(imap, UP, floor=0.0)
    assert remap == {0: 1} and sorted(obj.id for obj in imap) == [1, 2]  # the back has more points
    assert imap.get(1).num_points == sizes[0] + sizes[1]


def test_a_piece_farther_than_the_hang_gap_does_not_join():
    imap = _colour_scene(((0.0, 0.0, 0.40), (0.40, 0.40, 0.45), (120, 80, 40)),
                         ((0.0, 0.55, 0.45), (0.40, 0.59, 0.90), (120, 80, 40)))  # 15 cm apart
    assert PartRanker().same_colour(imap, UP) == []
    assert PartRanker(PartConfig(hang_gap=0.2)).same_colour(imap, UP) == [(0, 1)]


def test_same_coloured_groups_stay_object_sized_as_a_whole_not_pair_by_pair():
    # five white 0.3 m panels in a row, 4 cm apart: each pair fits in an object, the row (1.66 m) does not
    panels = [((0.34 * k, 0.0, 0.0), (0.34 * k + 0.30, 0.02, 0.60), (200, 200, 200)) for k in range(5)]
    imap = _colour_scene(*panels)
    assert len(PartRanker(PartConfig(object_extent=10.0)).same_colour(imap, UP)) == 4  # unbounded: one chain
    assert 0 < len(PartRanker().same_colour(imap, UP)) < 4
    joined = PartRanker().join(imap, UP, floor=0.0)
    assert 1 < len(imap) == 5 - len(joined)
    for obj in imap:
        spread = obj.points - obj.points.mean(0)
        assert np.sqrt(np.linalg.eigvalsh(spread.T @ spread / len(spread))[-1]) <= 0.4


def test_a_solid_takes_in_a_piece_of_its_colour_within_its_own_spread_and_a_plane_does_not():
    """A sofa's seat (a solid longer than an object: principal std 0.52 m over ``object_extent`` 0.4) and
    its back, one colour: their union spreads no further than the seat, so they join. A wall panel of that
    size and a box of its colour against it do not: a plane's spread says nothing of where an object ends."""
    sofa = _colour_scene(((0.0, 0.0, 0.0), (1.6, 0.8, 0.4), (90, 90, 140)),
                         ((0.1, 0.82, 0.0), (1.5, 1.0, 0.8), (92, 91, 141)))
    assert PartRanker().same_colour(sofa, UP) == [(0, 1)]
    assert PartRanker(PartConfig(plane_thickness=0.2)).same_colour(sofa, UP) == []  # the seat counted flat
    panel = _colour_scene(((0.0, 0.0, 0.0), (1.6, 0.02, 1.0), (90, 90, 140)),
                          ((0.1, 0.04, 0.0), (1.5, 0.3, 0.5), (92, 91, 141)))
    assert PartRanker().same_colour(panel, UP) == []
    assert PartRanker(PartConfig(object_extent=0.6)).same_colour(panel, UP) == [(0, 1)]


def test_structure_pieces_flagged_after_the_joins_join_their_wall():
    """The refined map flags walls after the ranking: a wall strip flagged then joins the touching wall
    it lies in (``join_structure``), a structure floor piece joins no wall, and an object flush with the
    wall (a door) stays apart."""
    imap = InstanceMap(MapMetadata(voxel_size=VOXEL, up=UP))
    parts = {
        0: (_box_surface((0.0, 3.0, 0.0), (2.0, 3.01, 2.4)), True),  # wall in the plane y = 3
        1: (_box_surface((2.02, 3.0, 0.0), (4.0, 3.01, 2.4)), True),  # its other end, flagged after the joins
        2: (_box_surface((4.02, 3.0, 0.0), (4.9, 3.01, 2.1)), False),  # a door in that plane beside it
        3: (_box_surface((0.0, 0.0, -0.01), (4.0, 2.98, 0.0)), True),  # the floor, touching the wall's foot
    }
    for obj_id, (points, structure) in parts.items():
        imap.add(MapObject.from_points(obj_id, points, up=UP, confidence=0.5, is_structure=structure))
    sizes = {obj.id: obj.num_points for obj in imap}
    assert PartRanker().join_structure(imap, UP) == {1: 0}
    assert sorted(obj.id for obj in imap) == [0, 2, 3] and imap.get(0).num_points == sizes[0] + sizes[1]
    assert imap.get(0).is_structure and not imap.get(2).is_structure
    assert PartRanker().join_structure(imap, UP) == {}


def test_the_mapper_turns_the_colour_join_off_for_one_level_masks_and_fills_the_object_extent():
    from scene.config import MapperConfig
    from scene.pipeline import Mapper, parts_settings

    parts = MapperConfig().parts
    assert parts.object_extent is None
    assert parts_settings(parts, False, 0.4) == replace(parts, object_extent=0.4)
    assert parts_settings(parts, True, 0.3).colour_join == 0.0
    assert parts_settings(replace(parts, object_extent=0.2), False, 0.4).object_extent == 0.2
    mapper = Mapper(MapperConfig(segmenter="ground-truth"))
    assert mapper._parts.colour_join == 0.0 and mapper._replica.settings.parts.colour_join == 0.0
    mapper = Mapper(MapperConfig())
    assert mapper._parts.colour_join == parts.colour_join > 0
