"""Floor and ceiling pieces in 3D (scene.structure): up from the cameras and flat pieces, levels, flags."""
from __future__ import annotations

import numpy as np
import pytest

from scene.datasets.geometry import look_at
from scene.map import InstanceMap, MapMetadata, MapObject
from scene.structure import (StructureConfig, StructureMemo, camera_up, flat_levels, horizontal_normal, map_up,
                             mark_floor_and_ceiling)


def _plate(obj_id, centre, size, rng, up=np.array([0.0, 0.0, 1.0]), n=800):
    """Points of a box of ``size`` (x, y, z metres) at ``centre``, rotated so its z axis is ``up``."""
    local = (rng.random((n, 3)) - 0.5) * np.asarray(size)
    z = up / np.linalg.norm(up)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    rotation = np.stack([x, np.cross(z, x), z], 1)
    points = local @ rotation.T + np.asarray(centre)
    return MapObject.from_points(obj_id, points.astype(np.float32), np.full((n, 3), 128, np.uint8))


def _room(up, rng, cameras=True):
    imap = InstanceMap(MapMetadata(voxel_size=0.02))
    z = up / np.linalg.norm(up)
    e1 = np.cross([0.0, 1.0, 0.0], z)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(z, e1)
    at = lambda a, b, height: a * e1 + b * e2 + height * z  # noqa: E731 - room coordinates to world
    pieces = [
        _plate(1, at(0.5, 0.5, 0.0), [1.2, 0.9, 0.02], rng, up),  # floor piece
        _plate(2, at(2.0, 1.0, 0.0), [0.8, 0.8, 0.02], rng, up),  # another floor piece
        _plate(3, at(1.0, 1.0, 2.5), [1.0, 1.0, 0.02], rng, up),  # ceiling piece
        _plate(4, at(1.5, 2.0, 0.75), [1.0, 0.6, 0.03], rng, up),  # a table top: flat but mid-height
        _plate(5, at(0.5, 2.5, 0.4), [0.4, 0.4, 0.8], rng, up),  # a box
        _plate(6, at(3.0, 3.0, 0.0), [0.2, 0.2, 0.02], rng, up),  # a small mat: too small
    ]
    for piece in pieces:
        imap.add(piece)
    if cameras:
        for k, angle in enumerate(np.linspace(0, 2 * np.pi, 12, endpoint=False)):
            eye = at(1.5, 1.5, 1.4)
            target = eye + np.cos(angle) * e1 + np.sin(angle) * e2 - z * 0.6
            imap.add_frame(k, look_at(eye, target, up))
    return imap


@pytest.mark.parametrize("up", [np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.2])])
def test_floor_and_ceiling_pieces_are_flagged_and_nothing_else(up):
    rng = np.random.default_rng(0)
    imap = _room(up, rng)
    flagged = mark_floor_and_ceiling(imap)
    assert sorted(flagged) == [1, 2, 3]
    assert [o.id for o in imap if o.is_structure] == [1, 2, 3]
    assert mark_floor_and_ceiling(imap) == []  # already flagged


def test_up_from_pitched_cameras_is_sharpened_by_flat_pieces():
    rng = np.random.default_rng(1)
    up = np.array([0.0, 0.0, 1.0])
    imap = _room(up, rng)
    hint = camera_up(imap.trajectory[1])
    assert hint is not None and np.degrees(np.arccos(hint @ up)) < 30  # pitched cameras: only roughly up
    sharp = horizontal_normal(imap, hint)
    assert np.degrees(np.arccos(np.clip(sharp @ up, -1, 1))) < 1.0


def test_unknown_up_flags_nothing():
    rng = np.random.default_rng(2)
    imap = _room(np.array([0.0, 0.0, 1.0]), rng, cameras=False)
    assert mark_floor_and_ceiling(imap) == []
    imap.metadata.up = np.array([0.0, 0.0, 1.0])
    assert sorted(mark_floor_and_ceiling(imap)) == [1, 2, 3]
    assert camera_up(np.zeros((0, 4, 4))) is None
    # Cameras looking every way (rolled upside down half the time) give no up.
    poses = np.stack([np.eye(4), np.diag([1.0, -1.0, -1.0, 1.0])])
    assert camera_up(poses) is None
    assert mark_floor_and_ceiling(imap, StructureConfig(min_area=5.0)) == []


def _vertical(obj_id, length, height, thickness_sigma, rng, attached=None, n=6000):
    """A vertical plane (x along the floor, z up) with Gaussian spread across it (y); ``attached``: a
    (width, depth, height, share) box of a neighbour's points stuck to its front."""
    points = np.stack([rng.uniform(0, length, n), rng.normal(0, thickness_sigma, n), rng.uniform(0, height, n)], 1)
    if attached is not None:
        width, depth, tall, share = attached
        m = int(share * n)
        points[:m] = np.stack([rng.uniform(1.0, 1.0 + width, m), rng.uniform(0, depth, m), rng.uniform(0, tall, m)], 1)
    return MapObject.from_points(obj_id, points.astype(np.float32), np.full((n, 3), 128, np.uint8))


def test_walls_are_found_through_noise_and_attached_pieces_and_nothing_else():
    from scene.structure import is_wall, mark_walls

    rng, up = np.random.default_rng(0), np.array([0.0, 0.0, 1.0])
    noisy_wall = _vertical(1, 4.5, 2.3, 0.03, rng, attached=(0.8, 0.45, 0.9, 0.04))  # sensor noise + a shelf
    # the oriented box sees the shelf and the noise: about 0.5 m thick against 2.3 m, as the demo's walls
    assert sorted(noisy_wall.obb_extents)[0] > 0.15 * sorted(noisy_wall.obb_extents)[1]
    assert is_wall(noisy_wall, up, None)
    assert is_wall(_vertical(2, 2.2, 2.4, 0.01, rng), up, None)  # a wall piece between furniture
    assert not is_wall(_vertical(3, 0.9, 2.0, 0.01, rng), up, None)  # a door: too narrow
    assert not is_wall(_vertical(4, 2.0, 0.45, 0.01, rng), up, None)  # a sofa back: too low (area)
    assert not is_wall(_vertical(5, 2.5, 2.0, 0.25, rng), up, None)  # a wardrobe: thick
    floor = _plate(6, [1.0, 1.0, 0.0], [4.0, 3.0, 0.02], rng)
    assert not is_wall(floor, up, None)
    imap = InstanceMap(MapMetadata(voxel_size=0.02, up=(0.0, 0.0, 1.0)))
    for obj in (noisy_wall, _vertical(3, 0.9, 2.0, 0.01, rng), floor):
        imap.add(obj)
    assert mark_walls(imap) == [1] and imap.get(1).is_structure and not imap.get(3).is_structure
    assert mark_walls(imap) == []  # already flagged


def _panel(obj_id, x, y, length, bottom, top, rng, along_y=False, thickness=0.01, n=4000):
    """A vertical panel standing at (x, y): ``length`` m along x (along y with ``along_y``), from height
    ``bottom`` to ``top``, with Gaussian spread ``thickness`` across."""
    a, across, z = rng.uniform(0, length, n), rng.normal(0, thickness, n), rng.uniform(bottom, top, n)
    xyz = np.stack([x + across, y + a, z] if along_y else [x + a, y + across, z], 1)
    return MapObject.from_points(obj_id, xyz.astype(np.float32), np.full((n, 3), 128, np.uint8))


def _bathroom(rng, height, ceiling):
    """A 3.2 x 2.6 m room whose walls reach ``height`` (the top of what the cameras saw, or the
    ceiling's level with ``ceiling``): long walls, a 1.2 m wall between two corners, a door, a mirror,
    a shower curtain and a tall cabinet's front, each a thin vertical plane."""
    imap = InstanceMap(MapMetadata(voxel_size=0.02, up=(0.0, 0.0, 1.0)))
    pieces = [
        _plate(1, [1.6, 1.3, 0.0], [3.2, 2.6, 0.02], rng, n=6000),  # floor
        _panel(2, 0.0, 0.0, 3.2, 0.0, height, rng, n=8000),  # long wall
        _panel(3, 0.0, 0.0, 2.6, 0.05, height, rng, along_y=True, n=7000),  # long wall
        _panel(4, 3.2, 1.4, 1.2, 0.1, height, rng, along_y=True),  # a short wall (behind a toilet)
        _panel(5, 1.0, 2.6, 0.85, 0.0, 2.04, rng),  # a door
        _panel(6, 0.3, 0.02, 0.9, 1.0, 1.9, rng),  # a mirror on the wall
        _panel(7, 2.2, 0.9, 1.0, 0.3, 1.95, rng, along_y=True, thickness=0.02),  # a shower curtain
        _panel(8, 2.3, 2.55, 0.8, 0.0, 2.0, rng),  # a tall cabinet's front
    ]
    if ceiling:
        pieces.append(_plate(9, [1.6, 1.3, height], [3.2, 2.6, 0.02], rng, n=6000))
    for piece in pieces:
        imap.add(piece)
    return imap


@pytest.mark.parametrize("height, ceiling", [(2.5, True), (2.2, False), (2.12, False)])
def test_walls_reach_the_room_top_whatever_their_length_doors_and_cabinets_do_not(height, ceiling):
    from scene.structure import mark_walls, room_top

    rng = np.random.default_rng(3)
    imap = _bathroom(rng, height, ceiling)
    mark_floor_and_ceiling(imap)
    assert {o.id for o in imap if o.is_structure} == ({1, 9} if ceiling else {1})
    top = room_top(imap, np.array([0.0, 0.0, 1.0]))
    # with a ceiling the walls meet it within the level tolerance; without, the map's top cuts them
    assert top == pytest.approx(height - 0.1, abs=0.02) if ceiling else 2.04 < top < height
    assert sorted(mark_walls(imap)) == [2, 3, 4]  # the 1.2 m wall too; not the door, mirror, curtain, cabinet


def test_a_short_wall_needs_the_room_top_and_a_low_map_has_none():
    from scene.structure import mark_walls, room_top

    rng = np.random.default_rng(4)
    imap = _bathroom(rng, 2.2, False)
    short = imap.get(4)
    imap.update(MapObject.from_points(4, short.points * np.float32([1, 1, 0.85]), short.colors))  # ends at 1.87 m
    assert sorted(mark_walls(imap)) == [2, 3]
    low = InstanceMap(MapMetadata(voxel_size=0.02, up=(0.0, 0.0, 1.0)))  # a table top: 1.2 m, no room top
    for piece in (_plate(1, [0.5, 0.5, 0.0], [1.0, 1.0, 0.02], rng), _panel(2, 0.0, 0.0, 1.0, 0.0, 1.2, rng)):
        low.add(piece)
    assert room_top(low, np.array([0.0, 0.0, 1.0])) is None and mark_walls(low) == []


def test_a_memo_kept_through_a_sequence_of_edits_gives_what_measuring_afresh_gives():
    """Pieces replaced (grown, moved onto the floor), removed and added, and up changed, one edit after
    another: up, the levels and the pieces flagged with a ``StructureMemo`` kept across the edits are
    those measured afresh, and the memo measured only what changed."""
    rng = np.random.default_rng(3)
    up = np.array([0.0, 0.0, 1.0])
    imap, memo, config = _room(up, rng), StructureMemo(), StructureConfig()
    edits = [
        lambda m: m.update(_plate(2, [2.0, 1.0, 0.0], [1.6, 1.2, 0.02], rng)),  # the floor piece grows
        lambda m: m.update(_plate(4, [1.5, 2.0, 0.01], [1.0, 0.6, 0.03], rng)),  # the table top now on the floor
        lambda m: m.remove(1),
        lambda m: m.add(_plate(7, [0.0, 3.0, -0.3], [0.9, 0.9, 0.02], rng)),  # a lower floor piece
        lambda m: None,  # nothing changed: all from the memo
    ]
    flagged = []
    for step, edit in enumerate(edits):
        edit(imap)
        fresh = imap.copy()
        assert np.array_equal(map_up(imap, config, memo), map_up(fresh, config)), step
        tilted = np.array([0.02 * step, 0.0, 1.0]) / np.linalg.norm([0.02 * step, 0.0, 1.0])
        for u in (up, tilted):
            assert flat_levels(imap, u, config, memo) == flat_levels(fresh, u, config), step
        flagged.append(mark_floor_and_ceiling(imap, config, up, memo))
        assert flagged[-1] == mark_floor_and_ceiling(fresh, config, up), step
        assert [o.is_structure for o in imap] == [o.is_structure for o in fresh]
    assert flagged[1] == [4]  # the moved table top is floor now: measured again, not taken from the memo
    assert flat_levels(imap, up, config, memo)[0] < -0.25  # the lower floor piece sets the floor
    kept = dict(memo._heights)
    flat_levels(imap, up, config, memo)
    assert all(memo._heights[i] is entry for i, entry in kept.items())  # nothing changed: nothing measured
