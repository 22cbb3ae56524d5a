"""Scan mode: label the user's own mesh or point cloud by object from a posed image sequence.

    from scene.scan import ScanConfig, ScanMapper, write_scan_outputs
    mapper = ScanMapper("scene0448_01_vh_clean_2.ply", ScanConfig())
    for frame in open_dataset("DATA"):
        mapper.integrate(frame)                    # masks -> the vertices this frame sees
    result = mapper.finalize()                     # superpoint clustering: result.vertex_ids (V, -1 none)
    write_scan_outputs(result, "out/", "scene0448_01", map_path="map.sqlite")

Per frame: the frame's masks (any ``segment2d`` generator) are made exclusive (``tracking.pipeline``'s
partition) and read at the pixel of every scan vertex the frame sees (``lift3d.scan_projection``:
z-buffer against sensor depth, or against depth rendered from the mesh when the frame has none). Each
superpoint (``lift3d.superpoints``) takes the mask holding most of its seen vertices in the view. After
the last frame, superpoints are clustered by view consensus (``tracking.superpoint_consensus``): one
instance id per vertex, in the user's vertex order. Units: metres, the poses' world frame.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lift3d.scan_io import ScanError, ScanGeometry, read_scan
from lift3d.scan_projection import (MeshDepthRenderer, ProjectionConfig, RenderedDepthConfig, VertexProjector,
                                    VertexView, sensor_like_depth)
from lift3d.superpoints import SuperpointConfig, Superpoints, compute_superpoints
from scene.datasets import Frame
from scene.map import NO_OBJECT, InstanceMap, MapMetadata, MapObject
from scene.structure import mark_floor_and_ceiling, mark_walls
from segment2d.types import MaskSet
from tracking.pipeline import PartitionConfig, exclusive_partition, partition_owner
from tracking.superpoint_consensus import ConsensusConfig, PrimitiveView, cluster_primitives

DEPTH_MODES = ("auto", "sensor", "mesh")
LABEL_MODES = ("map", "graph", "consensus")
SNAP_MODES = ("auto", "fill", "superpoint", "all", "none")
SCAN_STAGES = ("superpoints", "segment", "depth", "projection", "graph", "lift", "fusion", "clustering", "objects")


@dataclass
class ScanConfig:
    """Scan mode settings.

    - ``depth``: the depth each frame is projected with: "sensor" (the frame's own), "mesh" (rendered
      from the scan's mesh at the frame's pose; needs faces) or "auto" (sensor depth when the frame has
      any valid pixel, else rendered from the mesh).
    - ``rendered``: the sensor statistics depth rendered from the mesh is given before it is segmented
      and fused (``lift3d.scan_projection.RenderedDepthConfig``; the vertices are projected against the
      exact rendered depth).
    - ``segmenter`` / ``segmenter_options``: the mask generator (``segment2d.factory``).
    - ``min_instance_vertices``: smallest instance kept (ScanNet's evaluation ignores < 100 vertices).
    - ``min_agreement``: the share of the vertices projecting into the frames whose depth must agree
      with the frames' depth; below it the scan is reported as being in another frame than the poses
      (checked after ``check_after`` frames and again at the end).
    - ``dominance``: share of a superpoint's seen vertices one mask must hold to label it in a view.
    - ``labels``: how superpoints get instances. "map": the frames are also fused into the voxel map
      (``scene.pipeline.Mapper`` with ``mapper``, the same masks), and each superpoint takes the refined
      map object labelling its vertices (a vertex takes the map point within two voxels): the map's
      association, parts joins and confidences. ``snap``: "fill" (vertices the map does not reach take
      the object holding ``snap_share`` of their superpoint's vertices), "all" (every vertex takes its
      superpoint's object: boundaries follow the superpoints; a superpoint no object holds loses all its
      labels), "superpoint" (every vertex of a superpoint one object holds ``snap_share`` of takes that
      object, the others keep their own), "none", or "auto": "superpoint" on a mesh, "none" on a point
      cloud (its kNN superpoints bridge touching objects, and a few far vertices stretch an object's box;
      measured on ScanNet). On the synthetic meshes (noisy room, tabletop, cluttered; sensor depth and
      depth from the mesh) "superpoint" scored above the voxel map's own labels on every run measured,
      "fill" (the default before) below it on two tabletop seeds (the numbers: the scan benchmark).
      "graph": superpoints clustered on the multi-view evidence graph (``tracking.graph``: together /
      apart counts per view, reciprocal-best agglomeration, junction convexity on meshes).
      "consensus": superpoints clustered by view-consensus rounds (``tracking.superpoint_consensus``).
    - ``keep_views``: record each frame's superpoint evidence (which mask each seen superpoint falls in),
      what "graph" and "consensus" cluster; None: only for those two (the "map" labelling reads the
      voxel map instead, so its superpoints are computed on a worker thread while the frames come in).
      True lets ``finalize("graph")`` / ``finalize("consensus")`` follow a "map" run on the same frames.
    """

    depth: str = "auto"
    segmenter: str = "geometric"
    segmenter_options: dict = field(default_factory=dict)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    rendered: RenderedDepthConfig = field(default_factory=RenderedDepthConfig)
    superpoints: SuperpointConfig = field(default_factory=SuperpointConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    min_instance_vertices: int = 100
    min_agreement: float = 0.05
    check_after: int = 10
    dominance: float = 0.6
    labels: str = "map"
    snap: str = "auto"
    snap_share: float = 0.4
    mapper: object = None  # scene.config.MapperConfig for labels="map" (None: its defaults)
    graph: object = None  # tracking.graph.GraphConfig for labels="graph" (None: its defaults)
    keep_views: bool | None = None

    def __post_init__(self) -> None:
        if self.snap not in SNAP_MODES:
            raise ValueError(f"ScanConfig.snap must be one of {', '.join(SNAP_MODES)}, got {self.snap!r}")
        if self.labels not in LABEL_MODES:
            raise ValueError(f"ScanConfig.labels must be one of {', '.join(LABEL_MODES)}, got {self.labels!r}")
        if self.graph is None:
            from tracking.graph import GraphConfig

            self.graph = GraphConfig()
        if self.depth not in DEPTH_MODES:
            raise ValueError(f"ScanConfig.depth must be one of {', '.join(DEPTH_MODES)}, got {self.depth!r}")
        if self.keep_views is None:
            self.keep_views = self.labels != "map"


@dataclass
class ScanResult:
    """``vertex_ids`` V int64 instance id per scan vertex (-1: none); ``instance_ids`` / ``confidences``
    the instances (ids 0..); ``imap`` the same instances as an InstanceMap (vertices as points);
    ``timings`` seconds per ``SCAN_STAGES`` stage (summed over frames); ``frames`` integrated;
    ``seen_vertices`` share of the scan's vertices seen by at least one frame; ``superpoints`` None when
    the labelling used none (a point cloud labelled from the voxel map without snapping)."""

    scan: ScanGeometry
    superpoints: Superpoints | None
    vertex_ids: np.ndarray
    instance_ids: np.ndarray
    confidences: np.ndarray
    imap: InstanceMap
    timings: dict
    frames: int
    seen_vertices: float
    voxel_map: InstanceMap | None = None


@dataclass
class _FrameEvidence:
    projected: int = 0
    agreeing: int = 0


@dataclass
class ScanLifted:
    """What a frame gives the scan mode besides its masks, made apart from the mapping thread
    (``ScanMapper.lift_ahead`` on a thread, or ``ScanLifter`` in the segmenter process): ``view`` the scan
    vertices it sees, ``lifted`` the voxel map's partition and lift of its masks (None: no voxel map)."""

    view: VertexView
    lifted: object = None  # tracking.pipeline.LiftedFrame


@dataclass(frozen=True)
class ScanLifter:
    """``(frame, masks) -> ScanLifted`` as a picklable callable for the segmenter process
    (``segment2d.worker.SegmenterProcess``'s ``finish``): the vertices projected against the frame's own
    depth and the voxel map's lift (``tracking.pipeline.FrameLifter``). None for a frame without valid
    depth: its depth is rendered from the mesh on the mapping side (and its masks made again there)."""

    projector: VertexProjector
    lifter: object = None  # tracking.pipeline.FrameLifter, None without a voxel map

    def __call__(self, frame: Frame, masks: MaskSet) -> ScanLifted | None:
        if not _has_depth(frame):
            return None
        view = self.projector.project(frame.depth, frame.K, frame.pose)
        return ScanLifted(view, None if self.lifter is None else self.lifter(frame, masks))


def _has_depth(frame: Frame) -> bool:
    return frame.depth is not None and frame.depth.size > 0 and bool(np.any(frame.depth > 0))


class ScanMapper:
    """Accumulates per-view superpoint labels over frames; ``finalize`` clusters them into instances."""

    def __init__(self, scan: ScanGeometry | str | Path, config: ScanConfig | None = None, generator=None,
                 metadata: MapMetadata | None = None) -> None:
        self.config = config if config is not None else ScanConfig()
        self.scan = scan if isinstance(scan, ScanGeometry) else read_scan(scan)
        if self.config.depth == "mesh" and not self.scan.is_mesh:
            raise ScanError(f"scan {self.scan.path}: depth from the mesh needs faces, and this scan is a point cloud")
        self.generator = generator if generator is not None else _make_generator(self.config)
        self.metadata = metadata if metadata is not None else MapMetadata(source_path=self.scan.path)
        self.timings = dict.fromkeys(SCAN_STAGES, 0.0)
        self._superpoints: Future | None = None  # computed when first needed (``superpoints``)
        if self.config.keep_views:
            self._superpoints = _done(self._compute_superpoints())
        elif self._snap() != "none":  # the map labelling snaps to them at the end: made while the frames come in
            self._superpoints = self._superpoints_ahead()
        self._projector = VertexProjector(self.scan.vertices, self.config.projection)
        self._renderer = MeshDepthRenderer(self.scan.vertices, self.scan.triangles) if self.scan.is_mesh else None
        self._views: list[PrimitiveView] = []
        self._prepared: dict = {}  # frame index -> its projected vertices (``prepare``)
        self._frames: list[tuple[int, np.ndarray]] = []
        self._seen = np.zeros(self.scan.num_vertices, bool)
        self._evidence = _FrameEvidence()
        self._last_frame = -1
        self.frames_lifted_apart = 0  # frames projected and lifted in the segmenter process (``ScanLifter``)
        self.voxel_map: InstanceMap | None = None
        self.voxel_mapper = self._voxel_mapper() if self.config.labels == "map" else None

    def _compute_superpoints(self) -> Superpoints:
        start = time.perf_counter()
        superpoints = compute_superpoints(self.scan.vertices, self.scan.triangles, self.scan.colors,
                                          self.config.superpoints)
        self.timings["superpoints"] = time.perf_counter() - start
        return superpoints

    def _superpoints_ahead(self) -> Future:
        """The superpoints computed on a worker thread (the frames' fusion runs meanwhile)."""
        worker = ThreadPoolExecutor(1, thread_name_prefix="scan-superpoints")
        try:
            return worker.submit(self._compute_superpoints)
        finally:
            worker.shutdown(wait=False)  # the thread ends with the job

    @property
    def superpoints(self) -> Superpoints:
        """The scan's superpoints (waits for the worker computing them and re-raises its error; computed
        here when no labelling needed them)."""
        if self._superpoints is None:
            self._superpoints = _done(self._compute_superpoints())
        return self._superpoints.result()

    def _snap(self) -> str:
        """``ScanConfig.snap`` with "auto" resolved: "superpoint" on a mesh, "none" on a point cloud."""
        return self.config.snap if self.config.snap != "auto" else ("superpoint" if self.scan.is_mesh else "none")

    def _voxel_mapper(self):
        from scene.config import MapperConfig
        from scene.pipeline import Mapper

        config = self.config.mapper if self.config.mapper is not None else MapperConfig()
        if not config.online_only:  # only the refined map is read: no online objects are built or ranked
            config = replace(config, min_object_voxels=NO_ONLINE_OBJECTS)
        return Mapper(config, None, generator=self.generator, metadata=replace(self.metadata, voxel_size=config.voxel_size))

    def integrate(self, frame: Frame, masks: MaskSet | None = None, lifted=None) -> PrimitiveView:
        """Record the vertices the frame sees and which mask each seen superpoint falls in (returned; None
        unless ``config.keep_views``), and with ``labels="map"`` fuse the frame into the voxel map.
        ``masks``: the masks ``self.generator`` made of ``frame``, which is then already the frame
        ``with_depth`` or ``prepare`` returned (``integrate_frames`` prepares and segments the next frame
        while this one is integrated); None: depth and masks are made here. ``lifted``: ``lift_ahead`` of
        that frame and masks (``ScanLifted``, made on a worker while the previous frame was fused; a
        ``LiftedFrame`` is the voxel map's part alone); None: lifted here."""
        if masks is None:
            frame = self.prepare(frame)
            start = time.perf_counter()
            masks = self.generator.generate(frame)
            self.timings["segment"] += time.perf_counter() - start

        view = None
        if isinstance(lifted, ScanLifted):
            view, lifted = lifted.view, lifted.lifted
        start = time.perf_counter()
        if self.voxel_mapper is not None:  # its partition is the one the superpoints read (made once)
            owner = self.voxel_mapper.integrate(frame, masks, lifted).owner
            self.timings["fusion"] += time.perf_counter() - start
        else:
            selected, _, partition = exclusive_partition(masks, self.config.partition)
            owner = partition_owner(selected, partition)
            self.timings["segment"] += time.perf_counter() - start

        prepared = self._prepared.pop(int(frame.index), None)
        view = view if view is not None else prepared if prepared is not None else self._project(frame)
        start = time.perf_counter()
        self._seen[view.vertices] = True
        self._evidence.projected += view.in_frustum
        self._evidence.agreeing += len(view.vertices)
        self.timings["projection"] += time.perf_counter() - start

        start = time.perf_counter()
        primitive_view = None
        if self.config.keep_views:
            primitive_view = superpoint_labels(self.superpoints.labels[view.vertices], owner.reshape(-1)[view.pixels],
                                               self.config.dominance)
            self._views.append(primitive_view)
        self._frames.append((frame.index, frame.pose))
        self._last_frame = int(frame.index)
        self.timings["graph"] += time.perf_counter() - start
        if len(self._frames) == self.config.check_after:
            self.check_alignment()
        return primitive_view

    @property
    def num_frames(self) -> int:
        return len(self._frames)

    @property
    def last_frame(self) -> int:
        """Index of the last integrated frame (-1 before any)."""
        return self._last_frame

    def check_alignment(self) -> None:
        """Raise ``ScanError`` when almost no vertex projects onto the frames' depth: the scan is in
        another frame (or unit) than the poses."""
        e, where = self._evidence, f"scan {self.scan.path or '(in memory)'}"
        if e.projected == 0:
            raise ScanError(f"{where}: no vertex projects into any of the first {self.num_frames} frames; the scan "
                            f"is in another coordinate frame than the poses (or another unit)")
        if e.agreeing < self.config.min_agreement * e.projected:
            raise ScanError(f"{where}: only {100 * e.agreeing / e.projected:.1f}% of the vertices projecting into the "
                            f"first {self.num_frames} frames lie on their depth (expected most); the scan is in "
                            f"another coordinate frame than the poses, or the depth scale is wrong")

    def finalize(self, labels: str | None = None) -> ScanResult:
        """Cluster superpoints into instances; the result holds per-vertex ids and the InstanceMap.
        ``labels``: override ``config.labels`` ("consensus" may run first and "map" after it on the same
        frames, to compare the two)."""
        labels = self.config.labels if labels is None else labels
        if labels not in LABEL_MODES:
            raise ValueError(f"ScanMapper.finalize: labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")
        if not self._frames:
            raise ScanError(f"scan {self.scan.path}: no frame was integrated")
        if labels != "map" and not self.config.keep_views:
            raise ValueError(f"ScanMapper.finalize: labels={labels!r} clusters the frames' superpoint evidence, which "
                             f"was not recorded; make the mapper with ScanConfig(keep_views=True)")
        self.check_alignment()
        start, fusion_before = time.perf_counter(), self.timings["fusion"]
        if labels == "map":
            if self.voxel_mapper is None:
                raise ValueError("ScanMapper.finalize: labels='map' needs a mapper made with ScanConfig(labels='map')")
            vertex_cluster, confidence, structure = self._snapped_map_objects()
        else:
            sp = self.superpoints
            cluster, confidence = (self._graph_clusters() if labels == "graph" else
                                   cluster_primitives(sp.count, self._views, sp.edges, self.config.consensus))
            vertex_cluster, structure = cluster[sp.labels], np.zeros(len(confidence), bool)
        # this call's labelling only; the voxel map's refinement (first "map" call) counts as fusion
        self.timings["clustering"] = time.perf_counter() - start - (self.timings["fusion"] - fusion_before)

        start = time.perf_counter()
        if labels != "map":  # no frame saw these vertices: no evidence (the map's labels reach them)
            vertex_cluster[~self._seen] = NO_OBJECT
        vertex_ids, ids, confidences, kept = _instances(vertex_cluster, confidence, self.config.min_instance_vertices)
        imap = self._instance_map(vertex_ids, ids, confidences, structure[kept], flagged=labels == "map")
        self.timings["objects"] = time.perf_counter() - start
        superpoints = None if self._superpoints is None else self._superpoints.result()
        return ScanResult(self.scan, superpoints, vertex_ids, ids, confidences, imap, dict(self.timings), self.num_frames,
                          float(self._seen.mean()), self.voxel_map)

    def _graph_clusters(self) -> tuple[np.ndarray, np.ndarray]:
        """Superpoint clusters and their confidences from ``tracking.graph``; junction convexity only on
        meshes (their normals are oriented; a point cloud's PCA normals are not)."""
        from tracking.graph import GraphConfig, PairEvidence, PrimitiveGeometry, cluster_graph

        sp = self.superpoints
        evidence = PairEvidence(sp.count, pairs=sp.edges)
        for view in self._views:
            evidence.add_view(view.primitives, view.labels, view.shares)
        geometry = PrimitiveGeometry(sp.centroids, sp.normals) if self.scan.is_mesh else None
        result = cluster_graph(evidence, self.config.graph, geometry)
        return result.label, result.confidence

    def _snapped_map_objects(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Refine the voxel map; per vertex its map object (-1: none; see ``ScanConfig.snap``), and per
        object id its confidence and structure flag."""
        if self.voxel_map is None:
            start = time.perf_counter()
            self.voxel_map = self.voxel_mapper.finalize()
            self.voxel_mapper.close()
            self.timings["fusion"] += time.perf_counter() - start
        voxel_map = self.voxel_map
        labels = voxel_map.label_points(self.scan.vertices.astype(np.float64), 2.0 * voxel_map.metadata.voxel_size)
        snap = self._snap()
        if snap != "none":
            labels = snap_to_superpoints(labels, self.superpoints, snap, self.config.snap_share)
        size = int(max(voxel_map.ids.max(initial=-1), 0)) + 1
        confidence, structure = np.zeros(size), np.zeros(size, bool)
        for obj in voxel_map:
            confidence[obj.id], structure[obj.id] = obj.confidence, obj.is_structure
        return labels.astype(np.int64), confidence, structure

    def lift_ahead(self, frame: Frame, masks: MaskSet, done: ScanLifted | None = None) -> tuple[Frame, MaskSet, ScanLifted]:
        """(frame, masks, ``ScanLifted``) of a segmented frame, for ``integrate``: the vertices it sees (taken
        from ``prepare``, else projected here) and the voxel map's partition and lift of its masks
        (``Mapper.lift_ahead``). No mapper state is read, so ``integrate_frames`` runs it on a worker for
        the next frame while this one is fused. ``done``: what the segmenter process made of it already
        (``ScanLifter``), returned as is. A frame read without its depth prepared (``integrate_frames``
        with frames read in the segmenter process) that needs depth from the mesh is prepared and
        segmented again here, so its masks are those of the depth it is fused with."""
        if done is not None:
            self.frames_lifted_apart += 1
            return frame, masks, done
        if int(frame.index) not in self._prepared:
            prepared = self.prepare(frame)
            if prepared is not frame:  # depth rendered from the mesh: masks of the frame as it is fused
                frame, masks = prepared, self._segment(prepared)
        view = self._prepared.pop(int(frame.index))
        if self.voxel_mapper is None:
            return frame, masks, ScanLifted(view)
        start = time.perf_counter()
        try:
            return frame, masks, ScanLifted(view, self.voxel_mapper.lift_ahead(frame, masks))
        finally:
            self.timings["lift"] += time.perf_counter() - start

    def frame_lifter(self) -> ScanLifter:
        """``lift_ahead``'s work on a frame with its own depth, as a picklable callable for the segmenter
        process (``scene.pipeline``'s ``lift_apart``)."""
        lifter = None if self.voxel_mapper is None else self.voxel_mapper.frame_lifter()
        return ScanLifter(self._projector, lifter)

    def reads_apart(self) -> bool:
        """Whether frames may be read, segmented, projected and lifted in the segmenter process before
        this mapper sees them: only when they are fused with their own depth (``ScanConfig.depth``
        "sensor" or "auto"); a frame without depth is then prepared and segmented again in
        ``lift_ahead``."""
        return self.config.depth in ("sensor", "auto")

    def _segment(self, frame: Frame) -> MaskSet:
        start = time.perf_counter()
        try:
            return self.generator.generate(frame)
        finally:
            self.timings["segment"] += time.perf_counter() - start

    def prepare(self, frame: Frame) -> Frame:
        """``with_depth``, and the vertices the frame sees projected now (``integrate`` takes them): what
        ``integrate_frames`` does for the next frame on its worker thread while this one is fused."""
        frame, exact = self._depths(frame)
        self._prepared[int(frame.index)] = self._project(frame, exact)
        return frame

    def _project(self, frame: Frame, depth: np.ndarray | None = None):
        start = time.perf_counter()
        try:
            return self._projector.project(frame.depth if depth is None else depth, frame.K, frame.pose)
        finally:
            self.timings["projection"] += time.perf_counter() - start

    def with_depth(self, frame: Frame) -> Frame:
        """``frame`` with the depth it is fused with (``ScanConfig.depth``): its own, or rendered from the
        mesh at its pose and given a sensor's statistics (``ScanConfig.rendered``)."""
        return self._depths(frame)[0]

    def _depths(self, frame: Frame) -> tuple[Frame, np.ndarray]:
        """(``with_depth``'s frame, the depth its vertices are projected against: the frame's own, or the
        exact depth rendered from the mesh)."""
        start = time.perf_counter()
        try:
            return self._with_depth(frame)
        finally:
            self.timings["depth"] += time.perf_counter() - start

    def _with_depth(self, frame: Frame) -> tuple[Frame, np.ndarray]:
        has_depth = _has_depth(frame)
        if self.config.depth == "sensor" or (self.config.depth == "auto" and has_depth):
            if not has_depth:
                raise ScanError(f"{frame.source or f'frame {frame.index}'}: no valid depth; use depth from the mesh")
            return frame, frame.depth
        if self._renderer is None:
            raise ScanError(f"{frame.source or f'frame {frame.index}'}: the frame has no depth and the scan "
                            f"{self.scan.path} has no faces to render depth from")
        h, w = frame.color.shape[:2]
        exact = self._renderer.render(frame.K, frame.pose, w, h)
        return replace(frame, depth=sensor_like_depth(exact, self.config.rendered, int(frame.index))), exact

    def _instance_map(self, vertex_ids: np.ndarray, ids: np.ndarray, confidences: np.ndarray,
                      structure: np.ndarray, flagged: bool = False) -> InstanceMap:
        """The instances as a map; ``structure``: per instance its flag. ``flagged``: the flags are the voxel
        map's (its objects, labelled on the vertices), decided once on the fused map; otherwise floor, ceiling
        and walls are found here. Deciding again on the vertices re-estimates up from other objects: on
        scene0448_01 a door whose top lies within millimetres of the room's top turned wall with a 0.5
        degree change of the estimate."""
        imap = InstanceMap(self.metadata)
        for index, pose in self._frames:
            imap.add_frame(index, pose)
        order = np.argsort(vertex_ids, kind="stable")
        bounds = np.searchsorted(vertex_ids[order], ids, side="left"), np.searchsorted(vertex_ids[order], ids, side="right")
        colors = self.scan.colors
        for obj, conf, flat, lo, hi in zip(ids.tolist(), confidences.tolist(), structure.tolist(), *bounds):
            members = order[lo:hi]
            imap.add(MapObject.from_points(
                obj, self.scan.vertices[members], None if colors is None else colors[members],
                up=self.metadata.up, confidence=conf, num_observations=len(self._frames), is_structure=flat,
                attributes={"scan_vertices": int(len(members))}))
        if not flagged:
            mark_floor_and_ceiling(imap)
            mark_walls(imap)
        return imap


NO_ONLINE_OBJECTS = 2 ** 62  # MapperConfig.min_object_voxels no object reaches: the voxel map builds no online objects


def _done(value) -> Future:
    future = Future()
    future.set_result(value)
    return future


def superpoint_labels(superpoint: np.ndarray, mask: np.ndarray, dominance: float) -> PrimitiveView:
    """One view's evidence from its seen vertices' superpoints and mask ids (-1: none): per superpoint
    the mask holding at least ``dominance`` of its seen vertices (else -1) and the seen count."""
    if len(superpoint) == 0:
        return PrimitiveView(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    span = int(mask.max()) + 2
    keys = np.sort(superpoint.astype(np.int64) * span + (mask.astype(np.int64) + 1))
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    counts = np.diff(np.r_[starts, len(keys)])
    pair_superpoint, pair_mask = keys[starts] // span, keys[starts] % span - 1
    new_superpoint = np.r_[True, pair_superpoint[1:] != pair_superpoint[:-1]]
    index = np.cumsum(new_superpoint) - 1
    primitives = pair_superpoint[new_superpoint]
    seen = np.bincount(index, weights=counts, minlength=len(primitives))
    masked = pair_mask >= 0
    order = np.lexsort((-(counts * masked), index))
    first = order[np.r_[True, index[order][1:] != index[order][:-1]]]
    pairs = np.stack([pair_superpoint, pair_mask])
    label = np.where(masked[first] & (counts[first] >= dominance * seen), pairs[1][first], -1)
    return PrimitiveView(primitives.astype(np.int64), label.astype(np.int64), seen, counts[first] / np.maximum(seen, 1))


def snap_to_superpoints(labels: np.ndarray, superpoints: Superpoints, snap: str, share: float) -> np.ndarray:
    """Vertex labels (-1 none) snapped to the superpoints (``ScanConfig.snap``: "fill", "superpoint" or
    "all"): a superpoint's object is the label holding ``share`` of all its vertices (else none)."""
    snapped = superpoint_labels(superpoints.labels, labels, share)
    cluster = np.full(superpoints.count, NO_OBJECT, np.int64)
    cluster[snapped.primitives] = snapped.labels
    by_superpoint = cluster[superpoints.labels]
    if snap == "all":
        return by_superpoint
    if snap == "superpoint":
        return np.where(by_superpoint >= 0, by_superpoint, labels)
    return np.where(labels >= 0, labels, by_superpoint)


def _instances(vertex_cluster: np.ndarray, confidence: np.ndarray, min_vertices: int):
    """Dense instance ids 0.. for clusters with at least ``min_vertices`` seen vertices, by size:
    (vertex ids, ids, confidences, the cluster of each id)."""
    seen = vertex_cluster >= 0
    clusters, counts = np.unique(vertex_cluster[seen], return_counts=True)
    kept = clusters[counts >= min_vertices]
    kept = kept[np.argsort(-counts[counts >= min_vertices], kind="stable")]
    new_id = np.full(int(vertex_cluster.max()) + 2 if len(vertex_cluster) else 1, NO_OBJECT, np.int64)
    new_id[kept] = np.arange(len(kept))
    vertex_ids = np.where(seen, new_id[np.where(seen, vertex_cluster, 0)], NO_OBJECT)
    return (vertex_ids.astype(np.int64), np.arange(len(kept), dtype=np.int64), confidence[kept].astype(np.float64),
            kept)


def _make_generator(config: ScanConfig):
    from segment2d.factory import make_generator

    return make_generator(config.segmenter, **config.segmenter_options)


def map_scan(source, scan: ScanGeometry | str | Path, config: ScanConfig | None = None, progress=None,
             max_frames: int | None = None, generator=None) -> ScanResult:
    """Run the scan mode over every frame of ``source``; ``progress(done, total)`` after each frame."""
    mapper = ScanMapper(scan, config, generator, MapMetadata(source_path=str(getattr(source, "root", "")),
                                                             source_format=str(getattr(source, "format_name", ""))))
    total = len(source) if max_frames is None else min(len(source), int(max_frames))
    integrate_frames(mapper, source, total, progress)
    return mapper.finalize()


def integrate_frames(mapper: ScanMapper, source, total: int, progress=None, pipelined: bool = True,
                     lift_apart: bool = False) -> None:
    """Integrate the first ``total`` frames of ``source`` into ``mapper``; ``progress(done, total)`` after
    each. ``pipelined``: the next frame is read, given its depth, projected and segmented on a worker thread (the
    weight-free generator in a worker process when a second CPU is there; ``scene.pipeline.run``'s
    worker), and its masks partitioned and lifted on a second thread (``ScanMapper.lift_ahead``), while
    this one is associated and fused, in order, so the result is the one of ``pipelined=False``.
    ``lift_apart``: frames fused with their own depth (``ScanMapper.reads_apart``) may instead be read,
    projected and lifted in that worker process too (``ScanLifter``; the process takes as much of it as
    leaves it no busier than this one: ``scene.pipeline``'s ``lift_apart``), off this process's
    interpreter lock. Off: the same labels, no faster on 2 cores (scene0113_00 without masks, load 1.5-3.7,
    wall 15.3 / 22.3 / 15.0 s against 15.3 / 19.8 / 19.0 s on threads; scene0448_01 10.3 against 8.3 s)
    and ~1 CPU-s more (frames pickled back). A
    KeyboardInterrupt stops the workers before it propagates; the frames integrated so far stay in
    ``mapper``."""
    from scene.pipeline import _SegmentAhead, _segment_inline

    if not pipelined:
        frames = _segment_inline(mapper, source, total)
        try:
            for done, frame, masks, _ in frames:
                mapper.integrate(frame, masks)
                if progress is not None:
                    progress(done, total)
        finally:
            frames.close()
        return
    apart = lift_apart and mapper.reads_apart() and _first_frame_has_depth(source, mapper.config.depth)
    frames_in = source if apart else (mapper.prepare(frame) for frame in source)
    frames = _LiftAhead(mapper, _SegmentAhead(mapper, frames_in, total, lift_apart=apart))
    try:
        for done, frame, masks, lifted in frames:
            mapper.integrate(frame, masks, lifted)
            if progress is not None:
                progress(done, total)
    finally:
        frames.close()


def _first_frame_has_depth(source, depth_mode: str) -> bool:
    """Whether the frames come with their own depth: always with ``depth="sensor"`` (a frame without is
    an error), with "auto" when the source's first frame has any (a source that cannot be indexed is
    taken as without: its frames are then prepared before they are segmented, as depth from the mesh needs)."""
    if depth_mode == "sensor":
        return True
    try:
        return len(source) > 0 and _has_depth(source[0])
    except (TypeError, IndexError, KeyError):
        return False


class _LiftAhead:
    """Partitions and lifts each segmented frame (``ScanMapper.lift_ahead``, unless the segmenter process
    did) on a thread, one frame ahead of the consumer, and yields (done, frame, masks, lifted) in order. An error on the thread is raised by
    the consumer; ``close()`` stops the thread (after the frame in hand) and then the frames' worker."""

    _END = object()

    def __init__(self, mapper: ScanMapper, frames) -> None:
        self._mapper, self._frames = mapper, frames
        self._ready: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="scan-lift", daemon=True)
        self._thread.start()

    def __iter__(self):
        while True:
            item = self._ready.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:  # unblock the thread waiting to hand over a frame
                self._ready.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()
        self._frames.close()

    def _work(self) -> None:
        try:
            for done, frame, masks, timings in self._frames:
                if self._stop.is_set():
                    return
                frame, masks, lifted = self._mapper.lift_ahead(frame, masks, timings.get("lifted"))
                if not self._put((done, frame, masks, lifted)):
                    return
            self._put(self._END)
        except BaseException as error:  # raised on the consuming thread
            self._put(error)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False


def write_scan_outputs(result: ScanResult, out_dir: str | Path, scene_name: str,
                       map_path: str | Path | None = None) -> dict:
    """Write the scan mode's outputs, all in the user's vertex order: ``<scene>.ply`` (the user's mesh or
    points coloured by instance, ids in the ``instance`` vertex property), ScanNet predictions under
    ``scannet/`` and, when ``map_path`` is given, the map file for queries and the viewer."""
    from scene.eval.scannet_format import write_predictions
    from scene.export import write_mesh_ply
    from scene.storage import MapStore

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scan = result.scan
    triangles = scan.triangles if scan.triangles is not None else np.zeros((0, 3), np.int32)
    written = {"ply": write_mesh_ply(out_dir / f"{scene_name}.ply", scan.vertices, triangles, None, result.vertex_ids)}
    masks = result.vertex_ids[None, :] == result.instance_ids[:, None]
    written["scannet"] = write_predictions(out_dir / "scannet", scene_name, masks, result.confidences)
    if map_path is not None:
        store = MapStore(map_path)
        try:
            store.save(result.imap)
        finally:
            store.close()
        written["map"] = Path(map_path)
    return written
