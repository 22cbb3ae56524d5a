"""Superpoints (``lift3d.superpoints``) and superpoint view consensus (``tracking.superpoint_consensus``)."""
from __future__ import annotations

import numpy as np
import pytest

from lift3d.superpoints import SuperpointConfig, compute_superpoints, mesh_edges, segment_graph
from tracking.superpoint_consensus import ConsensusConfig, PrimitiveView, cluster_primitives


def test_segment_graph_cuts_the_expensive_edge_and_absorbs_small_segments():
    # Two 30-node chains with near-zero weights, joined by one heavy edge; a 3-node tail with heavy edges.
    chain = lambda start: [(i, i + 1) for i in range(start, start + 29)]  # noqa: E731
    edges = np.array(chain(0) + chain(30) + [(29, 30), (59, 60), (60, 61), (61, 62)])
    weights = np.r_[np.full(58, 0.001), 0.9, 0.5, 0.5, 0.5]
    labels = segment_graph(63, edges, weights, k=0.01, min_size=5)
    assert len(np.unique(labels[:30])) == 1 and len(np.unique(labels[30:60])) == 1
    assert labels[0] != labels[30]
    assert labels[62] == labels[30]  # the 3-node tail is under min_size: joined to its cheapest neighbour


@pytest.fixture(scope="module")
def room_mesh():
    from scene.datasets.synthetic import make_scene
    from scene.datasets.synthetic.scan_mesh import scan_mesh

    scene = make_scene("room", seed=0, noisy=False, num_frames=6, width=160, height=120)
    return scene, scan_mesh(scene.layout, max_edge=0.08)


def test_scan_mesh_is_welded_within_instances(room_mesh):
    _, mesh = room_mesh
    edges = mesh_edges(mesh.triangles)
    assert len(mesh.vertices) > 10000
    assert np.all(mesh.instance_ids[edges[:, 0]] == mesh.instance_ids[edges[:, 1]])
    # Welding made each box face's grid one surface: far fewer vertices than 3 per triangle.
    assert len(mesh.vertices) < 0.7 * len(mesh.triangles)


def test_mesh_superpoints_stay_inside_instances(room_mesh):
    _, mesh = room_mesh
    sp = compute_superpoints(mesh.vertices, mesh.triangles, mesh.colors, SuperpointConfig())
    assert 50 < sp.count < len(mesh.vertices) / 20
    assert sp.sizes.min() >= SuperpointConfig().min_vertices
    # purity: the share of vertices in their superpoint's majority instance
    pairs, counts = np.unique(np.stack([sp.labels, mesh.instance_ids]), axis=1, return_counts=True)
    majority = np.zeros(sp.count)
    np.maximum.at(majority, pairs[0], counts)
    assert majority.sum() / len(mesh.vertices) > 0.97
    assert sp.edges.shape[1] == 2 and np.all(sp.edges[:, 0] < sp.edges[:, 1])


def test_point_cloud_superpoints_split_differently_coloured_regions():
    # A floor and a rug lying flat beside it: one plane, two colours; kNN graph on noisy points.
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(0, 1, 0.02), np.arange(0, 1, 0.02)), -1).reshape(-1, 2)
    floor, rug = np.c_[grid, np.zeros(len(grid))], np.c_[grid + [1.0, 0.0], np.zeros(len(grid))]
    points = np.concatenate([floor, rug]) + rng.normal(0, 0.001, (2 * len(grid), 3))
    colors = np.concatenate([np.full((len(grid), 3), 200), np.full((len(grid), 3), 40)]).astype(np.uint8)
    sp = compute_superpoints(points, None, colors, SuperpointConfig(knn_max_distance=0.05))
    assert not set(sp.labels[len(grid):]) & set(sp.labels[:len(grid)])
    assert sp.count <= 10  # each flat region stays in few pieces


def test_consensus_joins_what_views_agree_on():
    # 4 primitives in a chain 0-1-2-3; each view's masks hold {0, 1} and {2, 3}.
    views = [PrimitiveView(np.arange(4), np.array([5, 5, 7, 7]), np.full(4, 50.0)) for _ in range(4)]
    views.append(PrimitiveView(np.arange(4), np.array([1, 1, 1, 1]), np.full(4, 50.0)))  # one view disagrees
    cluster, confidence = cluster_primitives(4, views, np.array([[0, 1], [1, 2], [2, 3]]), ConsensusConfig())
    assert cluster[0] == cluster[1] and cluster[2] == cluster[3] and cluster[1] != cluster[2]
    assert len(confidence) == 2 and np.all((confidence > 0.4) & (confidence <= 1))


def test_consensus_needs_two_views():
    views = [PrimitiveView(np.arange(2), np.array([3, 3]), np.full(2, 50.0))]
    cluster, _ = cluster_primitives(2, views, np.array([[0, 1]]), ConsensusConfig(min_views=2))
    assert cluster[0] != cluster[1]
