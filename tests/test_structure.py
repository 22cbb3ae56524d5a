"""Floor and ceiling pieces in 3D (scene.structure): up from the cameras and flat pieces, levels, flags."""
from __future__ import annotations

import numpy as np
import pytest

from scene.datasets.geometry import look_at
from scene.map import InstanceMap, MapMetadata, MapObject
from scene.structure import StructureConfig, camera_up, horizontal_normal, mark_floor_and_ceiling


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
    assert is_wall(noisy_wall, up)
    assert is_wall(_vertical(2, 2.2, 2.4, 0.01, rng), up)  # a wall piece between furniture
    assert not is_wall(_vertical(3, 0.9, 2.0, 0.01, rng), up)  # a door: too narrow
    assert not is_wall(_vertical(4, 2.0, 0.45, 0.01, rng), up)  # a sofa back: too low (area)
    assert not is_wall(_vertical(5, 2.5, 2.0, 0.25, rng), up)  # a wardrobe: thick
    floor = _plate(6, [1.0, 1.0, 0.0], [4.0, 3.0, 0.02], rng)
    assert not is_wall(floor, up)
    imap = InstanceMap(MapMetadata(voxel_size=0.02, up=(0.0, 0.0, 1.0)))
    for obj in (noisy_wall, _vertical(3, 0.9, 2.0, 0.01, rng), floor):
        imap.add(obj)
    assert mark_walls(imap) == [1] and imap.get(1).is_structure and not imap.get(3).is_structure
    assert mark_walls(imap) == []  # already flagged
