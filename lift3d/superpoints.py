"""Superpoints of a scan: Felzenszwalb-Huttenlocher graph segmentation over the mesh adjacency (the
method of ScanNet's segmentator) or, for a point cloud, over a k-nearest-neighbour graph.

Edge weight: ``1 - n_i . n_j`` (squared on convex mesh edges, where a normal change rarely separates
objects) plus ``colour_weight`` times the RGB distance scaled to [0, 1]. The segmentation runs in
Boruvka rounds, all numpy: every segment proposes its cheapest outgoing edge, proposals passing
Felzenszwalb's test ``w <= min(Int(A) + k/|A|, Int(B) + k/|B|)`` are merged at once, rejected ones are
dropped (the sequential algorithm also looks at each edge once). Segments below ``min_vertices`` are
then joined to their cheapest neighbour.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class SuperpointConfig:
    """``k_threshold``: Felzenszwalb's k (larger: bigger segments; ScanNet's segmentator uses 0.01 on
    1 cm meshes); ``min_vertices``: smallest segment; ``colour_weight``: weight of the RGB distance;
    ``knn``: neighbours per point of a point cloud's graph, ``knn_max_distance`` m: longer kNN edges are
    dropped (they jump gaps between objects); ``max_rounds``: cap on Boruvka rounds."""

    k_threshold: float = 0.01
    min_vertices: int = 20
    colour_weight: float = 0.3
    knn: int = 8
    knn_max_distance: float = 0.08
    max_rounds: int = 200


@dataclass
class Superpoints:
    """``labels`` V int64 superpoint per vertex (0..S-1); ``edges`` P x 2 int64 adjacent superpoint pairs
    (i < j); ``sizes`` S vertices per superpoint; ``centroids`` S x 3 m; ``normals`` S x 3 unit (mean)."""

    labels: np.ndarray
    edges: np.ndarray
    sizes: np.ndarray
    centroids: np.ndarray
    normals: np.ndarray

    @property
    def count(self) -> int:
        return int(len(self.sizes))


def compute_superpoints(vertices: np.ndarray, triangles: np.ndarray | None = None, colors: np.ndarray | None = None,
                        config: SuperpointConfig = SuperpointConfig()) -> Superpoints:
    """Superpoints of a mesh (``triangles`` T x 3) or of a point cloud (``triangles`` None)."""
    vertices = np.asarray(vertices, np.float64)
    if triangles is not None and len(triangles):
        edges = mesh_edges(triangles)
        normals = mesh_vertex_normals(vertices, triangles)
        weights = normal_weights(vertices, normals, edges, oriented=True)
    else:
        edges = knn_edges(vertices, config.knn, config.knn_max_distance)
        normals = point_normals(vertices, config.knn)
        weights = normal_weights(vertices, normals, edges, oriented=False)
    if colors is not None and config.colour_weight > 0:
        rgb = np.asarray(colors, np.float64) / 255.0
        weights = weights + config.colour_weight * np.linalg.norm(rgb[edges[:, 0]] - rgb[edges[:, 1]], axis=1) / np.sqrt(3)
    labels = segment_graph(len(vertices), edges, weights, config.k_threshold, config.min_vertices, config.max_rounds)
    return _describe(labels, edges, vertices, normals)


def mesh_edges(triangles: np.ndarray) -> np.ndarray:
    """Distinct undirected edges (E x 2 int64, i < j) of a triangle mesh."""
    t = np.asarray(triangles, np.int64)
    pairs = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    return unique_pairs(pairs)


def knn_edges(points: np.ndarray, k: int, max_distance: float) -> np.ndarray:
    """Undirected edges (E x 2 int64, i < j) to each point's ``k`` nearest neighbours within ``max_distance``."""
    distance, index = cKDTree(points).query(points, k=k + 1, distance_upper_bound=max_distance, workers=-1)
    source = np.repeat(np.arange(len(points)), k)
    target = index[:, 1:].reshape(-1)
    keep = np.isfinite(distance[:, 1:].reshape(-1))
    return unique_pairs(np.stack([source[keep], target[keep]], axis=1))


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """Distinct undirected pairs (P x 2 int64, i < j) without self-pairs."""
    pairs = np.sort(np.asarray(pairs, np.int64).reshape(-1, 2), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if len(pairs) == 0:
        return pairs
    span = int(pairs[:, 1].max()) + 1
    keys = np.sort(pairs[:, 0] * span + pairs[:, 1])
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    return np.stack([keys // span, keys % span], axis=1)


def mesh_vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (V x 3 unit; zero for isolated vertices)."""
    t = np.asarray(triangles, np.int64)
    face = np.cross(vertices[t[:, 1]] - vertices[t[:, 0]], vertices[t[:, 2]] - vertices[t[:, 0]])
    corner = t.reshape(-1)
    repeated = np.repeat(face, 3, axis=0)
    normals = np.stack([np.bincount(corner, weights=repeated[:, k], minlength=len(vertices)) for k in range(3)], 1)
    return _unit_rows(normals)


def point_normals(points: np.ndarray, k: int) -> np.ndarray:
    """Unoriented PCA normals of a point cloud from ``k`` neighbours (Open3D), V x 3 unit."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(max(3, k)))
    return _unit_rows(np.asarray(cloud.normals))


def normal_weights(vertices: np.ndarray, normals: np.ndarray, edges: np.ndarray, oriented: bool) -> np.ndarray:
    """``1 - n_i . n_j`` per edge; with oriented normals squared on convex edges (ScanNet's segmentator)."""
    n1, n2 = normals[edges[:, 0]], normals[edges[:, 1]]
    dot = np.einsum("ij,ij->i", n1, n2)
    if not oriented:
        return 1.0 - np.abs(dot)
    weight = 1.0 - dot
    convex = np.einsum("ij,ij->i", n2, vertices[edges[:, 1]] - vertices[edges[:, 0]]) > 0
    weight[convex] = weight[convex] ** 2
    return weight


def segment_graph(num_nodes: int, edges: np.ndarray, weights: np.ndarray, k: float, min_size: int,
                  max_rounds: int = 200) -> np.ndarray:
    """Felzenszwalb-Huttenlocher segmentation of a weighted graph in Boruvka rounds; labels 0..S-1."""
    comp = np.arange(num_nodes, dtype=np.int64)
    internal = np.zeros(num_nodes)
    size = np.ones(num_nodes)
    order = np.argsort(weights, kind="stable")
    all_edges = edges = np.asarray(edges, np.int64)[order]
    all_weights = weights = np.asarray(weights, np.float64)[order]
    for _ in range(max_rounds):
        ca, cb = comp[edges[:, 0]], comp[edges[:, 1]]
        cross = ca != cb
        edges, weights, ca, cb = edges[cross], weights[cross], ca[cross], cb[cross]
        if len(edges) == 0:
            break
        proposed = _cheapest_edge_per_component(ca, cb, len(size))
        w, a, b = weights[proposed], ca[proposed], cb[proposed]
        accept = w <= np.minimum(internal[a] + k / size[a], internal[b] + k / size[b])
        if not accept.any():
            break
        dropped = np.ones(len(edges), bool)
        dropped[proposed[~accept]] = False
        comp, internal, size = _merge(comp, internal, size, a[accept], b[accept], w[accept])
        edges, weights = edges[dropped], weights[dropped]
    return _absorb_small(comp, all_edges, all_weights, size, min_size)


def _cheapest_edge_per_component(ca: np.ndarray, cb: np.ndarray, num_components: int) -> np.ndarray:
    """Distinct edge indices: each component's lowest-weight edge leaving it (edges sorted by weight)."""
    owner = np.stack([ca, cb], axis=1).reshape(-1)
    first = np.full(num_components, -1, np.int64)
    first[owner[::-1]] = np.arange(len(owner) - 1, -1, -1)  # the last write wins: the earliest edge
    return np.unique(first[first >= 0] // 2)


def _merge(comp, internal, size, a, b, w):
    """Union the components joined by edges (a, b) of weight w; Int grows to the largest joining weight."""
    n = len(size)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    new_internal = np.zeros(group.max() + 1)
    np.maximum.at(new_internal, group, internal)
    np.maximum.at(new_internal, group[a], w)
    new_size = np.bincount(group, weights=size)
    return group[comp], new_internal, new_size


def _absorb_small(comp, edges, weights, size, min_size):
    """Join segments under ``min_size`` nodes to their cheapest neighbour, in rounds; relabel densely."""
    while len(edges):
        ca, cb = comp[edges[:, 0]], comp[edges[:, 1]]
        cross = ca != cb
        edges, weights, ca, cb = edges[cross], weights[cross], ca[cross], cb[cross]
        small = (size[ca] < min_size) | (size[cb] < min_size)
        if not small.any():
            break
        edges, weights, ca, cb = edges[small], weights[small], ca[small], cb[small]
        proposed = _cheapest_edge_per_component(ca, cb, len(size))
        comp, _, size = _merge(comp, np.zeros(len(size)), size, ca[proposed], cb[proposed], weights[proposed])
    return np.unique(comp, return_inverse=True)[1].astype(np.int64)


def _describe(labels: np.ndarray, edges: np.ndarray, vertices: np.ndarray, normals: np.ndarray) -> Superpoints:
    count = int(labels.max()) + 1 if len(labels) else 0
    sizes = np.bincount(labels, minlength=count)
    centroids = np.stack([np.bincount(labels, weights=vertices[:, k], minlength=count) for k in range(3)], 1)
    centroids /= np.maximum(sizes, 1)[:, None]
    mean_normals = _unit_rows(np.stack([np.bincount(labels, weights=normals[:, k], minlength=count) for k in range(3)], 1))
    return Superpoints(labels, unique_pairs(labels[edges]), sizes, centroids, mean_normals)


def _unit_rows(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
