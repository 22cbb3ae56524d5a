"""Poses, intrinsics and depth units of every real set agree: one frame's depth, warped into a close
neighbour with the readers' K and camera-to-world poses, matches the neighbour's depth."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial import cKDTree

from scene.datasets import Frame, open_dataset

# (set, kept-frame pairs to compare): consecutive kept frames; 3DMatch 0->1 and 1->2 (ids 116, 422 are far).
PAIRS = {
    "scannet_scene0448_01": [(0, 1), (150, 151)],
    "7scenes_redkitchen": [(0, 1), (100, 101)],
    "3dmatch_studyroom": [(0, 1), (1, 2)],
    "replica_office0": [(0, 1), (2, 3)],
    "iclnuim_livingroom": [(0, 1), (3, 4)],
}
MAX_MEDIAN_ERROR_M = 0.05
MIN_OVERLAP = 0.3  # share of the source frame's pixels that must land on valid neighbour depth


def warp_depth_residuals(src: Frame, dst: Frame, src_pose: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Back-project ``src``'s valid depth (metres), move it into ``dst``'s camera and project it.

    Returns (projected z minus ``dst`` depth at the nearest pixel, for points landing in front of the
    camera, inside the image and on valid depth; that count as a share of ``src``'s pixels).
    """
    v, u = np.nonzero(src.depth > 0)
    z = src.depth[v, u].astype(np.float64)
    K = src.K
    points = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z, np.ones_like(z)])
    pose = src.pose if src_pose is None else src_pose
    in_dst = (np.linalg.inv(dst.pose) @ pose @ points)[:3]
    in_dst = in_dst[:, in_dst[2] > 1e-6]
    uu = np.round(dst.K[0, 0] * in_dst[0] / in_dst[2] + dst.K[0, 2]).astype(np.int64)
    vv = np.round(dst.K[1, 1] * in_dst[1] / in_dst[2] + dst.K[1, 2]).astype(np.int64)
    inside = (uu >= 0) & (uu < dst.width) & (vv >= 0) & (vv < dst.height)
    target = dst.depth[vv[inside], uu[inside]]
    valid = target > 0
    residuals = in_dst[2][inside][valid] - target[valid]
    return residuals, float(valid.sum()) / src.depth.size


def open_quietly(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ScanNet's -inf poses: tested in test_readers.py
        return open_dataset(path, **options)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_neighbour_depth_warp_agrees(shared_set, name):
    source = open_quietly(shared_set(name))
    for a, b in PAIRS[name]:
        residuals, overlap = warp_depth_residuals(source[a], source[b])
        assert overlap > MIN_OVERLAP, f"{name} {a}->{b}: only {overlap:.0%} of pixels overlap"
        median = float(np.median(np.abs(residuals)))
        assert median < MAX_MEDIAN_ERROR_M, f"{name} {a}->{b}: median |depth difference| {median:.3f} m"


def test_warp_detects_a_wrong_pose(shared_set):
    """The check above can fail: a 10 cm shift along the viewing axis shows up as ~10 cm of error."""
    source = open_quietly(shared_set("iclnuim_livingroom"))
    src, dst = source[0], source[1]
    shifted = src.pose.copy()
    shifted[:3, 3] += 0.10 * src.pose[:3, 2]
    residuals, _ = warp_depth_residuals(src, dst, src_pose=shifted)
    assert float(np.median(np.abs(residuals))) > MAX_MEDIAN_ERROR_M


def point_to_mesh_error(frame: Frame, tree: cKDTree, vertices: np.ndarray, step: int = 25) -> float:
    """Median point-to-plane distance (metres) of the frame's back-projected depth to the scan vertices;
    planes are fitted to the 12 nearest vertices."""
    v, u = np.nonzero(frame.depth > 0)
    v, u = v[::step], u[::step]
    z = frame.depth[v, u].astype(np.float64)
    K = frame.K
    cam = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=1)
    world = cam @ frame.pose[:3, :3].T + frame.pose[:3, 3]
    dist, idx = tree.query(world, k=12)
    nbrs = vertices[idx]
    centred = nbrs - nbrs.mean(axis=1, keepdims=True)
    _, vecs = np.linalg.eigh(np.einsum("nki,nkj->nij", centred, centred))
    normals = vecs[:, :, 0]
    plane_dist = np.abs(np.einsum("ni,ni->n", world - nbrs.mean(axis=1), normals))
    return float(np.median(plane_dist[dist[:, 0] < 0.05]))


def test_scannet_intrinsics_choice_fits_the_scan(shared_set):
    """Documents ScanNetPosedImagesSource's default: scaled colour intrinsics agree with the mesh (made
    with the same poses) at least as well as the standard depth intrinsics, frame by frame."""
    root = shared_set("scannet_scene0448_01")
    vertices = np.fromfile(root / "points" / "scene0448_01.bin", dtype=np.float32).reshape(-1, 6)[:, :3]
    vertices = vertices.astype(np.float64)
    tree = cKDTree(vertices)
    by_color = open_quietly(root, intrinsics="color")
    by_depth = open_quietly(root, intrinsics="depth")
    for k in (0, 100, 200):
        err_color = point_to_mesh_error(by_color[k], tree, vertices)
        err_depth = point_to_mesh_error(by_depth[k], tree, vertices)
        assert err_color < 0.01
        assert err_color <= err_depth, f"frame {k}: colour K {err_color:.4f} m, depth K {err_depth:.4f} m"
