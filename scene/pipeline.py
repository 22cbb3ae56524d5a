"""The mapping pipeline: frames -> masks -> 3D segments -> persistent objects -> an ``InstanceMap``.

``Mapper.integrate(frame)`` runs one frame through the mask generator, then through
``tracking.track_frame`` (partition, lift, associate: the one per-frame path, which tests and benchmarks
drive too), then updates the per-voxel state of the voxels in view and marks the objects they belong to; those
objects (only those) are rebuilt when the map is next read or saved, which happens every ``save_every``
frames (an incremental SQLite save of the changed objects). No per-frame cost grows with the number of
frames seen; the per-save rebuild is one pass over the map's voxels plus the touched objects. ``finalize()`` runs the global refinement and writes the final map; ``run`` does it all for a
frame source. Units: metres, world frame; poses camera-to-world, OpenCV camera axes.

Concurrency (``run``, ``pipelined=True``, the default): the next frame is read and segmented while the
current one is fused, in a worker process for ``process_safe`` generators (``segment2d.worker``) when a
second CPU is there (frames are segmented on the thread while that process starts), else on a thread; a
file source's frames are read (and with ``lift_apart`` their masks partitioned and lifted) by whichever
of the two processes spends less CPU per frame (``READ_BALANCE_SMOOTHING``), and a reader thread sends the
next frame's request to that process before its last reply came back (``_SegmentAhead``); the saves run on a writer
thread, or in a writer process (``SAVE_IN_PROCESS``; ``Mapper.save_in_background``, ``scene.map_writer``).
Per frame, the mapping thread only records the map edits (frames, merges, camera, fingerprint, as data)
and, at a save, takes the touched objects' geometry from the voxels; the writer applies the edits in
order, builds and ranks the objects and writes them. The ``InstanceMap`` and the SQLite store are used
by one thread at a time: the writer while a save runs, the mapping thread only after waiting for it
(``map``, ``save``, ``finalize``, ``close``), so each save is still one transaction and the map is the
same as with everything inline. A writer process holds the objects; the mapping process keeps the map's
trajectory, metadata and id remap (the refined map is built on them) and asks the process for the map.

Object geometry: one point per voxel (``voxel_size`` metres), the mean of every lifted point that fell
in that voxel, with its mean colour; each point's weight is the number of segment observations of its
voxel. A voxel belongs to the object holding the most observations of it in the tracker.

Object confidence: the detection confidence (mean mask score x detection consistency, discounted for
objects seen in few frames), then lowered for objects attached to a larger one (``scene.parts``: pieces
of objects rank below whole ones). Both are kept: ``confidence`` and ``attributes["detection_confidence"]``.
Pieces of one object are joined (``scene.parts``): hanging parts (legs under a top, a lamp's pole under
its shade) with the object above them, touching pieces of one plane with each other, touching objects
whose boxes mostly coincide (a shelf's boards and frame), and thin pieces lying in a much larger plane
with it (wall patches seen under a table); then nearby pieces of one colour, in object-sized groups
(not for one-level masks such as ground-truth masks: ``parts_settings``). The refined map is joined;
``Mapper.map`` shows the joins too, while the tracker and the incremental saves keep the pieces apart.

Resuming (``Mapper.resume``) restores the saved map (objects, trajectory, id remap, metadata). A run
that stopped early (``run``: Ctrl-C, a frame that cannot be read, a failing segmenter) also left the
tracker's state beside the map file (``Mapper.save_state``, ``scene.mapper_state``): when it matches the
map (the same frames, the same objects and observations, the same ``TRACKER_SETTINGS``), the
tracker and the voxel sums are taken from it, and the resumed run ends in the global refinement as if it
had never stopped. Otherwise (a killed run, a state the map was saved past) a new tracker is seeded from
the map: each saved voxel is labelled with its object, weighted by its observation count, and the object
statistics (observations, frames, confidence, best view) are restored, so new frames keep associating to
the saved objects and new ids never collide with old ones; the tracker's per-segment history and
per-voxel visibility counts are not in the map file, so such a mapper's ``finalize`` keeps the online map
(``refinable`` False; recorded as ``metadata.extra['refined'] = False``).
"""
from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from lift3d.voxels import VoxelIndex, group_int64, keys_of_points, stable_argsort
from scene.config import MapperConfig
from scene.datasets import DatasetError, Frame
from scene.map import InstanceMap, MapMetadata, MapObject
from scene.mapper_state import MapperStateError, read_header, read_state, state_path, write_state
from scene.map_writer import (FinishSettings, MapReplica, MapWriter, WriterProcess, WriterProcessDied, mean_geometry,
                              write_save)
from scene.objects import well_observed
from scene.parts import PartConfig, PartRanker, detection_confidence
from scene.storage import MapStorageError, MapStore
from scene.structure import flat_levels, map_up, mark_floor_and_ceiling, mark_walls
from scene.trim import owned_voxels, trim_strays
from segment2d.types import MaskCrops, MaskSet, one_level_masks
from segment2d.worker import SegmenterProcess, WaitingWorker
from segment2d.worker import usable_cores as _usable_cores
from tracking.export import ObjectMap, observation_confidence
from tracking.online import FrameVoxels, OnlineTracker
from tracking.overlap import pass_threads, side_by_side
from tracking.pipeline import FrameLifter, LiftedFrame, partition_owner, track_frame
from tracking.refine import refine, unique_counts

STAGES = ("segment", "lift_associate", "map_update", "save")
# the settings that shape the tracker: a saved state continues only a mapper with the same ones
TRACKER_SETTINGS = ("segmenter", "geometric", "segmenter_options", "partition", "lift", "tracking")
FINGERPRINT_FRAMES = 3  # frames whose digests identify a map's sequence


@dataclass
class FrameResult:
    """One integrated frame: ``masks`` (the generator's MaskSet; made when first read where the frame came
    with ``MaskCrops``, see ``Mapper.integrate``), ``object_ids`` (one persistent id per
    mask, int64, -1 where the mask was dropped by partitioning or lifting; an id may name an object still
    below ``min_object_voxels``, hence not yet in the map), ``new_ids`` / ``merged``
    ((kept, retired) pairs) from the tracker, ``num_objects`` in the map afterwards, ``timings`` seconds
    per stage (``STAGES``; "save" is 0 when nothing was saved, and includes rebuilding the objects touched
    since the last save, which are rebuilt lazily), ``saved`` (an incremental save ran) and ``owner`` (H x W
    int32: the mask of ``masks`` holding each pixel after the exclusive partition, -1 none;
    ``tracking.pipeline.TrackedFrame.owner``, made when first read; None: not known)."""

    frame_index: int
    masks: MaskSet
    object_ids: np.ndarray
    new_ids: np.ndarray
    merged: list
    num_objects: int
    timings: dict
    saved: bool = False
    owner: np.ndarray | None = None


def _frame_owner(result: FrameResult) -> np.ndarray | None:
    owner = result.__dict__.get("_owner")
    if isinstance(owner, partial):  # made on first read: only the scan mode reads it
        owner = result.__dict__["_owner"] = owner()
    return owner


def _set_frame_owner(result: FrameResult, owner: np.ndarray | partial | None) -> None:
    result.__dict__["_owner"] = owner


def _frame_masks(result: FrameResult) -> MaskSet:
    masks = result.__dict__["_masks"]
    if isinstance(masks, MaskCrops):  # made on first read: the pipeline itself never needs the stack
        masks = result.__dict__["_masks"] = masks.to_maskset()
    return masks


def _set_frame_masks(result: FrameResult, masks: MaskSet | MaskCrops) -> None:
    result.__dict__["_masks"] = masks


# Set after the class is made (a property in its body would be taken for the field's default): a result
# built from the segmenter process's MaskCrops makes its MaskSet only when ``masks`` is read.
FrameResult.masks = property(_frame_masks, _set_frame_masks, doc="The frame's MaskSet.")
FrameResult.owner = property(_frame_owner, _set_frame_owner, doc="The frame's partition owner image (H x W int32).")


class _VoxelGeometry:
    """Per map voxel: point and colour sums, observation count and owning object; per object id its voxel
    count. Bounded by the map's voxels; a frame's update touches only its voxels (merges and ``rows_of``
    scan the owner array once, vectorised)."""

    def __init__(self) -> None:
        self.index = VoxelIndex()
        self.xyz_sum = np.zeros((0, 3), np.float64)
        self.rgb_sum = np.zeros((0, 3), np.float64)
        self.hits = np.zeros(0, np.int64)
        self.owner = np.zeros(0, np.int64)
        self.count = np.zeros(0, np.int64)  # voxels owned, per object id
        self._linked: VoxelIndex | None = None  # another index (the tracker's) and its row -> row table
        self._link = np.zeros(0, np.int64)

    def accumulate(self, keys: np.ndarray, points: np.ndarray, colors: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Add ``weights`` observations of points (N x 3 metres) and colours (N x 3) to voxels ``keys``;
        returns the distinct rows touched."""
        rows = self.index.insert(keys)
        self._grow(len(self.index))
        distinct, _, at, _ = group_int64(rows)
        self.add_sums(distinct, at, points, colors, weights)
        return distinct

    def add_sums(self, distinct: np.ndarray, at: np.ndarray, points: np.ndarray, colors: np.ndarray,
                 weights: np.ndarray | None = None) -> None:
        """Add the points and colours (N x 3) to the voxel rows ``distinct[at]`` (``weights``: N ints,
        default 1 each)."""
        n = distinct.size
        w = None if weights is None else weights.astype(np.float64)
        for axis in range(3):
            self.xyz_sum[distinct, axis] += np.bincount(at, points[:, axis] if w is None else points[:, axis] * w, minlength=n)
            self.rgb_sum[distinct, axis] += np.bincount(at, colors[:, axis] if w is None else colors[:, axis] * w, minlength=n)
        self.hits[distinct] += np.bincount(at, weights, minlength=n).astype(np.int64)

    def rows_linked(self, other: VoxelIndex, other_rows: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Rows here of the distinct rows ``other_rows`` of another index (the tracker's), via a cached
        row-to-row table; voxels new here are inserted in the order of ``first`` (the position of their
        first key in the frame, which is the order ``accumulate`` inserts them in)."""
        if other is not self._linked:
            self._linked, self._link = other, np.zeros(0, np.int64)
        need = int(other_rows.max(initial=-1)) + 1
        if need > self._link.size:
            self._link = np.concatenate([self._link, np.full(max(need, 2 * self._link.size) - self._link.size, -1, np.int64)])
        rows = self._link[other_rows]
        new = np.flatnonzero(rows < 0)
        if new.size:
            new = new[np.argsort(first[new], kind="stable")]
            rows[new] = self.index.insert(other.keys[other_rows[new]])
            self._link[other_rows[new]] = rows[new]
            self._grow(len(self.index))
        return rows

    def assign(self, rows: np.ndarray, owners: np.ndarray) -> set[int]:
        """Set the owner of the distinct voxel ``rows``; returns every object whose voxels or sums changed."""
        old = self.owner[rows]
        moved = old != owners
        lost = old[moved & (old >= 0)]
        self._grow_count(int(owners.max(initial=-1)) + 1)
        np.subtract.at(self.count, lost, 1)
        np.add.at(self.count, owners[moved], 1)
        self.owner[rows] = owners
        return set(np.unique(owners).tolist()) | set(np.unique(lost).tolist())

    def merge(self, keep: int, retire: int) -> None:
        self._grow_count(max(keep, retire) + 1)
        self.owner[self.owner == retire] = keep
        self.count[keep] += self.count[retire]
        self.count[retire] = 0

    def rows_of(self, ids: list[int]) -> dict[int, np.ndarray]:
        """Voxel rows of each object in ``ids`` (one pass over the owner array)."""
        rows = np.flatnonzero(np.isin(self.owner, np.asarray(ids, np.int64)))
        order = stable_argsort(self.owner[rows])
        rows, owners = rows[order], self.owner[rows[order]]
        cuts = np.searchsorted(owners, ids)
        ends = np.searchsorted(owners, ids, side="right")
        return {obj: rows[a:b] for obj, a, b in zip(ids, cuts, ends)}

    def num_objects(self, min_voxels: int) -> int:
        return int((self.count >= min_voxels).sum())

    def geometry(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean points N x 3 float32, mean colours N x 3 uint8, weights N float32) of voxel ``rows``."""
        return mean_geometry(*self.sums(rows))

    def sums(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of the point sums, colour sums and hit counts of voxel ``rows`` (``mean_geometry``);
        ``np.take`` gathers the N x 3 rows ~3x faster than indexing (the mapping thread takes them at
        every save)."""
        return np.take(self.xyz_sum, rows, axis=0), np.take(self.rgb_sum, rows, axis=0), self.hits[rows]

    def _grow(self, n: int) -> None:
        have = len(self.hits)
        if n <= have:
            return
        size = max(n, 2 * have, 1024)
        self.xyz_sum = np.concatenate([self.xyz_sum, np.zeros((size - have, 3))])
        self.rgb_sum = np.concatenate([self.rgb_sum, np.zeros((size - have, 3))])
        self.hits = np.concatenate([self.hits, np.zeros(size - have, np.int64)])
        self.owner = np.concatenate([self.owner, np.full(size - have, -1, np.int64)])

    def _grow_count(self, n: int) -> None:
        if n > len(self.count):
            self.count = np.concatenate([self.count, np.zeros(max(n, 2 * len(self.count), 256) - len(self.count), np.int64)])


def parts_settings(parts: PartConfig, one_level_masks: bool, object_extent: float) -> PartConfig:
    """The parts pass's settings for a mapper whose masks are (``one_level_masks``) one flat level or not:
    one-level masks are whole objects, so the same-colour join (``PartConfig.colour_join``), which joins
    pieces that no view's mask holds together, is off for them. An unset ``parts.object_extent`` takes
    ``object_extent`` (the mapper's ``geometric.object_extent``: one bound of an object-sized region)."""
    if parts.object_extent is None:
        parts = replace(parts, object_extent=object_extent)
    return replace(parts, colour_join=0.0) if one_level_masks else parts


class Mapper:
    """Builds an ``InstanceMap`` frame by frame (see the module docstring).

    ``out``: the SQLite map file for incremental saves (``None``: keep the map in memory only). The file
    is opened, and locked against other writers (``scene.storage``), here: an existing map file is
    refused (``MapStorageError``) unless ``overwrite=True``, and even then its contents are only
    replaced by the first save. A file this mapper created and never saved to is deleted by ``close()``.
    ``generator``: a ready ``MaskGenerator`` instead of building ``config.segmenter``. ``metadata``:
    source path/format and extra provenance for the map. The first frames integrated are fingerprinted
    (``metadata.extra["sequence"]``) so that a resumed map refuses another sequence (``check_sequence``).
    """

    def __init__(self, config: MapperConfig | None = None, out: str | Path | None = None,
                 generator=None, metadata: MapMetadata | None = None, overwrite: bool = False) -> None:
        config = config if config is not None else MapperConfig()
        self.config = config
        self.generator = generator if generator is not None else _make_generator(config)
        self.tracker = OnlineTracker(config.tracking, config.lift, one_level_masks(self.generator))
        self._parts = parts_settings(config.parts, self.tracker.one_level_masks, config.geometric.object_extent)
        # the map, its part ranker and up estimate: the saves' (``scene.map_writer``); with the saves in a
        # writer process, this one's copy gets the map edits but not the objects (``save_in_background``)
        self._replica = MapReplica(InstanceMap(metadata if metadata is not None else MapMetadata(voxel_size=config.voxel_size)),
                                   FinishSettings(config.min_hit_share, config.structure, self._parts))
        self._map.metadata.voxel_size = config.voxel_size
        if config.up is not None:
            self._map.metadata.up = np.asarray(config.up, np.float64)
        self._map.metadata.extra.setdefault("config", config.to_dict())
        self._dirty: set[int] = set()
        self.path = None if out is None else Path(out)
        self.resumed = False
        self.refinable = True  # False once resumed without the tracker's state: ``finalize`` keeps the online map
        self.kept_state: Path | None = None  # the last state file ``save_state`` wrote
        self._voxels = _VoxelGeometry()
        self._store: MapStore | None = None
        self._saved_once = False
        self._since_save = 0
        self._finalized = False
        self._map_ops: list[tuple] = []  # map edits of the frames since the last save, in order (``MapReplica.apply``)
        self._writer: MapWriter | WriterProcess = MapWriter()
        self.writer_process_stats: dict[str, float] = {}  # the last writer process's CPU seconds and peak RSS
        self._save_requested = False
        self._last_frame, self._num_frames = self._trajectory_end()
        self._fingerprinted: int | None = None  # frames digested into metadata.extra["sequence"]
        self.finalize_timings: dict[str, float] = {}  # seconds of finalize's "global_pass" and "final_save"
        if self.path is not None:
            self._store = _open_new_map(self.path, overwrite)

    # ---- lifecycle --------------------------------------------------------------------------

    @classmethod
    def resume(cls, path: str | Path, config: MapperConfig | None = None, generator=None) -> "Mapper":
        """Reopen the map file ``path`` written by a (possibly killed) mapper and continue it; see the
        module docstring for what is restored. ``config.lift.voxel_size`` is replaced by the map's. A
        tracker state beside the file that does not match it is not used (a ``RuntimeWarning`` says why)."""
        config = config if config is not None else MapperConfig()
        store = MapStore(path)
        imap = store.load()
        if abs(imap.metadata.voxel_size - config.voxel_size) > 1e-12:
            config = replace(config, lift=replace(config.lift, voxel_size=imap.metadata.voxel_size))
        try:
            mapper = cls(config, None, generator, imap.metadata)
        except BaseException:
            store.close()
            raise
        mapper.path, mapper._store, mapper._saved_once, mapper.resumed = Path(path), store, True, True
        mapper._save_requested = True
        mapper._map = imap
        mapper._last_frame, mapper._num_frames = mapper._trajectory_end()
        state = mapper._matching_state(state_path(path))
        if state is not None:
            mapper.tracker, mapper._voxels = state["tracker"], state["voxels"]
        else:
            mapper.refinable = False
            mapper._seed_from_map()
        return mapper

    @classmethod
    def from_state(cls, path: str | Path, config: MapperConfig | None = None, generator=None) -> "Mapper":
        """A mapper, without a map file, restored from the state file ``path`` (``save_state``): it goes on
        integrating frames, or finalizes, as the mapper that wrote it would. ``config``: the state's own
        when None; another one must have the same ``TRACKER_SETTINGS`` (mask generator, partition, lift,
        tracking: those made the tracker), e.g. to finalize with other ``refine`` settings. The map's objects
        are rebuilt from the voxels when it is next read (ranked afresh). ``MapperStateError`` names the file
        and the problem."""
        header, state = read_state(path)
        config = state["config"] if config is None else config
        mapper = cls(config, None, generator)
        problem = mapper._settings_mismatch(header) or mapper._state_mismatch(state, None)
        if problem:
            raise MapperStateError(f"{path}: {problem}")
        mapper.tracker, mapper._voxels = state["tracker"], state["voxels"]
        mapper._map = state["map"]
        mapper._last_frame, mapper._num_frames = mapper._trajectory_end()
        mapper._dirty = set(np.flatnonzero(mapper._voxels.count > 0).tolist())
        return mapper

    def save_state(self, path: str | Path | None = None) -> Path:
        """Write the mapper's working state (the tracker's records, the voxel sums, the map's trajectory and
        id remap, the configuration) to ``path`` (None: beside the map file, ``scene.mapper_state``), after
        saving the map when there is a file: ``resume`` then ends in the global refinement, as if the run
        had never stopped, and ``from_state`` restores a mapper from it. Returns the path written. A few
        hundred MB for a few hundred frames: ``run`` writes it only when a run stops early."""
        if self._finalized:
            raise RuntimeError("Mapper.save_state: the mapper was finalized; its tracker no longer matches the map")
        if path is None and self.path is None:
            raise ValueError("Mapper.save_state: no path given and no map file to put the state beside")
        if self.path is not None:
            self.save()
        else:
            self._guarded(self._writer.drain)
            self._apply_map_ops()
        target = state_path(self.path) if path is None else Path(path)
        header = {"frames": int(self._num_frames), "last_frame": int(self._last_frame),
                  "map": None if self.path is None else self.path.name, "settings": _tracker_settings(self.config)}
        state = {"tracker": self.tracker, "voxels": self._voxels, "map": self._map.copy(with_objects=False),
                 "config": self.config}
        write_state(target, header, state)
        self.kept_state = target
        return target

    def _matching_state(self, path: Path) -> dict | None:
        """The state in ``path`` when it matches the loaded map and this configuration, else None (with a
        ``RuntimeWarning`` saying why, when there is a file)."""
        if not path.exists():
            return None
        state = None
        try:  # the header tells the usual misfits (a map saved past the state, other settings) unread
            problem = self._header_mismatch(read_header(path))
            if not problem:
                _, state = read_state(path)
                problem = self._state_mismatch(state, self._map)
        except MapperStateError as exc:
            problem = str(exc)
        if problem:
            warnings.warn(f"{self.path}: its tracker state is not used ({problem}); the resumed map stays online "
                          f"(no global refinement)", RuntimeWarning, stacklevel=3)
            return None
        return state

    def _header_mismatch(self, header: dict) -> str | None:
        """Why a state with ``header`` cannot continue this resumed mapper, as far as the header tells."""
        if (header.get("frames"), header.get("last_frame")) != (self._num_frames, self._last_frame):
            return f"it holds {header.get('frames')} frames, the map {self._num_frames}: the map was saved after it"
        return self._settings_mismatch(header)

    def _settings_mismatch(self, header: dict) -> str | None:
        """The ``TRACKER_SETTINGS`` tables in which a state's ``header`` differs from this mapper, or None."""
        made_with, these = header.get("settings", {}), _tracker_settings(self.config)
        changed = [name for name in TRACKER_SETTINGS if made_with.get(name) != these[name]]
        return f"it was made with other {', '.join(changed)} settings" if changed else None

    def _state_mismatch(self, state: dict, imap: InstanceMap | None) -> str | None:
        """Why ``state`` cannot continue this mapper (and the map file's ``imap``) beyond its header's
        settings, or None."""
        tracker = state["tracker"]
        if tracker.one_level_masks != self.tracker.one_level_masks:
            return "it was made with another kind of mask generator (one-level against multi-level masks)"
        if imap is None:
            return None
        if imap.metadata.extra.get("refined"):
            return "the map was refined since"
        frames, poses = imap.trajectory
        state_frames, state_poses = state["map"].trajectory
        if not (np.array_equal(frames, state_frames) and np.array_equal(poses, state_poses)):
            return f"it holds {state_frames.size} frames, the map {frames.size}: the map was saved after it"
        table = tracker.objects
        for obj in imap:
            if obj.id >= len(table) or int(table.num_obs[obj.id]) != obj.num_observations:
                return f"object {obj.id} of the map is not the tracker's"
        return None

    def save_in_background(self, enabled: bool = True, process: bool = False, share: float | None = None) -> None:
        """Run the incremental saves (rebuilding the touched objects, ranking them, the SQLite write) on
        a writer thread, off the per-frame path: ``integrate`` hands each save over and goes on with the
        next frame; a save still running when the next one is due is waited for (one at a time, in order).
        The writer thread takes turns with the mapping thread: at most about ``share`` of the interpreter
        (``SAVE_SHARE`` when None; 1 unpaced) while the next save is not yet due
        (``scene.map_writer.MapWriter``). The map written is the same as with the saves inline. Reading
        ``map``, ``save``, ``finalize`` and ``close`` wait for the writer; an error on the writer thread is
        raised by the next of these or by the next ``integrate`` that saves. ``enabled=False`` waits for it
        and saves inline again.

        ``process=True`` (with a map file): the saves run in a writer process instead
        (``scene.map_writer.WriterProcess``), which holds the map's objects, its part ranker and a store
        connection written under this process's writer lock; this process sends it the map edits and the
        touched objects' voxel sums and keeps the map's trajectory, metadata and id remap itself. The
        saves, ``map``, ``save`` and ``finalize`` give the same maps and files as the writer thread's
        (``map`` asks the process for its map). A writer process that dies is reported (a
        ``RuntimeWarning`` naming the map file) and the map is then saved in full inline, from this
        process's voxels and tracker, and inline from then on: no integrated frame is lost, though the
        objects' ranking starts afresh there. A save that failed in the process is raised here as on the
        thread."""
        self._stop_writer()
        if enabled and process and self.path is not None:
            self._writer = WriterProcess(self._replica, self.path, self._saved_once, self.resumed, self._confirm_save)
        else:
            self._writer = MapWriter(background=enabled, share=SAVE_SHARE if share is None else share)

    def close(self) -> None:
        """Release the map file (and its writer lock); a file this mapper created but never saved to is
        deleted, so a run that failed before its first save leaves nothing behind. Waits for the writer
        thread or process (``save_in_background``) to finish its save, and stops it."""
        try:
            self._stop_writer()
        finally:
            self._release_store()

    def _stop_writer(self) -> None:
        """Wait for the writer's saves and stop it (a writer process that died: saved inline)."""
        try:
            self._guarded(self._writer.stop)
        finally:
            if isinstance(self._writer, WriterProcess):
                self.writer_process_stats = self._writer.stats
                self._writer.close()
                self._writer = MapWriter()

    def _in_process(self) -> bool:
        return isinstance(self._writer, WriterProcess)

    def _confirm_save(self) -> None:
        self._saved_once = True

    def _guarded(self, call: Callable):
        """``call()`` on the writer; a writer process that died is reported and replaced by inline saves,
        the map so far saved in full (``save_in_background``)."""
        try:
            return call()
        except WriterProcessDied as died:
            self._save_inline_after(died)
            return None

    def _save_inline_after(self, died: WriterProcessDied) -> None:
        warnings.warn(f"{died}; saving the map inline from now on (the map so far is saved in full now)",
                      RuntimeWarning, stacklevel=3)
        self._writer.close()
        self.writer_process_stats = {}
        self._writer = MapWriter()
        # This process's map holds the edits but not the objects the process built: rebuild every object
        # from the voxels, ranked afresh, and write the whole map (the file may lack the last saves).
        self._replica.forget_caches()
        self._dirty |= set(self._map.ids.tolist()) | set(np.flatnonzero(self._voxels.count > 0).tolist())
        self._flush()
        if self.path is not None:
            self._open_store().save(self._map)
            self._saved_once = self._save_requested = True

    def _release_store(self) -> None:
        if self._store is not None:
            if self._saved_once or not self._store.created:
                self._store.close()
            else:
                self._store.discard()
            self._store = None

    def check_sequence(self, source) -> None:
        """Refuse (``SequenceMismatchError``) a frame source whose first frames are not the ones this map
        was made from (``metadata.extra["sequence"]``): resuming a map with another dataset, or another
        stride, would mix two sequences in one map. Maps without a fingerprint are not checked."""
        recorded = self._map.metadata.extra.get("sequence", {}).get("first_frames", [])
        for k, (index, digest) in enumerate(recorded[: len(source)]):
            frame = source[k]
            if int(frame.index) != int(index) or frame_digest(frame) != digest:
                made_from = self._map.metadata.extra["sequence"].get("path") or "another sequence"
                raise SequenceMismatchError(
                    f"{self.path or 'the map'} was made from {made_from}, and its frame {index} differs from "
                    f"frame {frame.index} of {getattr(source, 'root', 'this source')} (position {k}): another "
                    f"sequence or another stride; map it into a new file instead")

    @property
    def map(self) -> InstanceMap:
        """The map, with every object touched since the last access rebuilt (objects are rebuilt lazily,
        once per access or save, not once per frame), with the pieces of objects shown joined
        (``scene.parts``; then a copy, with the joins in ``id_remap``). The joins are decided
        afresh at every access and kept out of the tracker and the incremental saves: decided on a
        partial map they misfire, and kept, they stick (ScanNet box AP25 fell from 0.53 to 0.38)."""
        if self._in_process():
            view = self._guarded(lambda: self._writer.view(self._send_map_ops(), self._touched_objects()))
            if view is not None:
                # the same metadata as this process's map (the process's copy got the same edits), shared
                # with the mapper as with the writer thread: what callers record there is kept
                view.metadata = self._map.metadata
                return view
        self._writer.drain()
        self._flush()
        return self._joined_view(self._map)

    @property
    def num_objects(self) -> int:
        """Objects the map holds (counted without rebuilding them)."""
        return self._voxels.num_objects(self.config.min_object_voxels)

    @property
    def num_frames(self) -> int:
        """Frames the map holds (integrated here, or before a resume)."""
        return self._num_frames

    @property
    def last_frame(self) -> int:
        """Index of the last integrated frame (-1 before any)."""
        return self._last_frame

    def _trajectory_end(self) -> tuple[int, int]:
        frames, _ = self._map.trajectory
        return (int(frames[-1]) if len(frames) else -1), int(self._map.num_frames)

    # ---- per frame --------------------------------------------------------------------------

    def integrate(self, frame: Frame, masks: MaskSet | MaskCrops | None = None,
                  lifted: LiftedFrame | None = None) -> FrameResult:
        """Segment, lift and associate one frame, update the map's touched objects, save every N frames.
        ``masks``: the frame's masks, already made by this mapper's generator (``run`` segments the next
        frame on a worker thread while this one is integrated), a MaskSet or the same masks as ``MaskCrops``
        (the result's MaskSet is then made when first read); None: segment here. ``lifted``: those
        masks already partitioned and lifted by ``frame_lifter()`` (``run``'s segmenter process does it
        while it spends less CPU per frame than this process; the scan mode on a worker thread,
        ``lift_ahead``); None: lift here. The result is the same either way."""
        if not isinstance(frame, Frame):
            raise TypeError(f"Mapper.integrate takes a scene.datasets.Frame, got {type(frame).__name__}")
        if self._finalized:
            raise RuntimeError("Mapper.integrate: the mapper was finalized; resume the map file to add frames")
        if frame.index <= self.last_frame:
            raise ValueError(f"Mapper.integrate: frame {frame.index} is not after the last integrated frame "
                             f"{self.last_frame}")
        timings = dict.fromkeys(STAGES, 0.0)
        if masks is None:
            start = time.perf_counter()
            masks = self.generator.generate(frame)
            timings["segment"] = time.perf_counter() - start

        start = time.perf_counter()
        tracked = track_frame(self.tracker, frame, masks, self.config.partition, lifted)
        segments, step = tracked.segments, tracked.step
        timings["lift_associate"] = time.perf_counter() - start

        start = time.perf_counter()
        self._remember_camera(frame)
        self._fingerprint(frame)
        self._apply_merges(step.merged)
        self._dirty |= self._add_segments(segments, step.voxels)
        index, pose = int(frame.index), np.array(frame.pose, np.float64)
        self._map_ops.append(("frame", index, pose))
        self._last_frame, self._num_frames = index, self._num_frames + 1
        object_ids = np.full(len(masks), -1, np.int64)
        if len(segments):
            object_ids[tracked.mask_rows] = self.tracker.resolve(step.object_ids)
        timings["map_update"] = time.perf_counter() - start

        self._since_save += 1
        saved = self.config.save_every > 0 and self._since_save >= self.config.save_every and self.path is not None
        if saved:
            start = time.perf_counter()
            self._request_save()
            timings["save"] = time.perf_counter() - start
        return FrameResult(frame.index, masks, object_ids, step.new_ids, list(step.merged), self.num_objects,
                           timings, saved, partial(partition_owner, tracked.selected, tracked.partition))

    def frame_lifter(self) -> FrameLifter:
        """The lift ``integrate`` would run on a frame's masks, as a picklable callable (``lifted``)."""
        return FrameLifter(self.tracker.lift, self.config.partition)

    def lift_ahead(self, frame: Frame, masks: MaskSet) -> LiftedFrame:
        """The tracker-independent part of ``integrate`` (``frame_lifter()``): it reads no mapper state, so
        a worker thread may run it for the next frame while ``integrate`` runs for this one (then pass it
        as ``integrate(frame, masks, lifted)``)."""
        return self.frame_lifter()(frame, masks)

    def save(self) -> None:
        """Write what changed since the last save (the whole map the first time) to ``out``; nothing when
        no frame came in since (a resumed map interrupted at once stays byte for byte as it was). Returns
        once the map is written, also with ``save_in_background``."""
        self._request_save()
        self._guarded(self._writer.drain)

    def waiting_for_frame(self):
        """A block in which the caller waits for its next frame: a save on the writer thread runs unpaced
        meanwhile (``save_in_background``; a no-op otherwise)."""
        return self._writer.unpaced() if isinstance(self._writer, MapWriter) else nullcontext()

    def _request_save(self) -> None:
        """Hand the save over to the writer (on its thread or process with ``save_in_background``, else at
        once): the map edits since the last save and the touched objects' geometry are taken now, on this
        thread."""
        if self.path is None or (self._save_requested and self._since_save == 0):
            return
        if self._in_process():
            ops = self._send_map_ops()
            objects = self._touched_objects()
            self._save_requested, self._since_save = True, 0
            self._guarded(lambda: self._writer.save(ops, objects))
            return
        ops, self._map_ops = self._map_ops, []
        objects = self._touched_objects()
        self._save_requested, self._since_save = True, 0
        writer = self._writer
        writer.submit(lambda: self._write_save(ops, objects, writer.give_way))

    def _send_map_ops(self) -> list:
        """The map edits since the last save, taken for the writer process and applied to this process's
        map too (its trajectory, metadata and id remap stay the writer's; ``_refined_map`` builds on them)."""
        ops, self._map_ops = self._map_ops, []
        self._replica.apply(ops)
        if self.resumed:
            self._map.metadata.extra["refined"] = False
        return ops

    def _write_save(self, ops: list, objects: list | None, give_way: Callable[[], None]) -> None:
        """The writer's part of a save (see ``_request_save``)."""
        write_save(self._replica, self._open_store(), ops, objects, not self._saved_once, self.resumed, give_way)
        self._saved_once = True

    def finalize(self) -> InstanceMap:
        """Run the global refinement (unless ``online_only`` or not ``refinable``), rebuild the map from it with
        long-lived objects keeping their ids (the remap is recorded), save it in full, release the file
        and return the map."""
        refined = not self.config.online_only and self.refinable and self.tracker.frames_seen > 0
        start = time.perf_counter()
        if refined:
            # The online objects are not rebuilt (the refined map replaces them), only the map edits are
            # applied. The refinement waits for the writer's last save: beside it, the two peaks of memory
            # added up (peak RSS +30-50 MiB on 7-Scenes) for ~0.1 s saved. A writer process ends here.
            if self._in_process():
                self._stop_writer()
            self._guarded(self._writer.drain)
            result = self._refine()
            self._apply_map_ops()
            self._map = self._refined_map(result)
        else:
            view = self.map if self._in_process() else None  # the writer process's map, joined
            self._stop_writer()
            if view is None:
                self._flush()
                view = self._joined_view(self._map)
            self._map = view
        self.finalize_timings = {"global_pass": time.perf_counter() - start, "final_save": 0.0}
        if self.tracker.frames_seen > 0:  # a resumed mapper with nothing new keeps the file's flag
            self._map.metadata.extra["refined"] = bool(refined)
        self._finalized = True
        if self.path is not None:
            start = time.perf_counter()
            self._open_store().save(self._map)
            self.finalize_timings["final_save"] = time.perf_counter() - start
            self._saved_once, self._save_requested, self._since_save = True, True, 0
            state_path(self.path).unlink(missing_ok=True)  # the refined map's ids are no longer the tracker's
            self.close()  # a finalized mapper writes no more: release the file and its writer lock
        return self._map

    # ---- internals: one frame ---------------------------------------------------------------

    def _fingerprint(self, frame: Frame) -> None:
        """Record the first ``FINGERPRINT_FRAMES`` frames' digests (see ``check_sequence``). How many the
        map holds is read once, at this mapper's first frame, before any save can be on the writer."""
        if self._fingerprinted is None:
            self._fingerprinted = len(self._map.metadata.extra.get("sequence", {}).get("first_frames", []))
        if self._fingerprinted >= FINGERPRINT_FRAMES or self._num_frames != self._fingerprinted:
            return
        entry = [int(frame.index), frame_digest(frame)]
        self._fingerprinted += 1
        self._map_ops.append(("fingerprint", entry))

    def _remember_camera(self, frame: Frame) -> None:
        if self._num_frames == 0 and self._map.metadata.K is None:
            K, size = np.asarray(frame.K, np.float64), (frame.height, frame.width)
            self._map_ops.append(("camera", K, size))

    def _apply_merges(self, merged: list) -> None:
        for keep, retire in merged:
            keep, retire = int(self.tracker.resolve(np.array([keep]))[0]), int(retire)
            self._voxels.merge(keep, retire)
            self._dirty.discard(retire)
            self._dirty.add(keep)
            self._map_ops.append(("retire", keep, retire))

    def _add_segments(self, segments: list, voxels: FrameVoxels | None = None) -> set[int]:
        """Accumulate the segments' points into their voxels and re-own those voxels by the tracker's
        dominant label; returns the touched object ids. ``voxels``: the tracker step's voxel lookup of
        these segments (saves looking the keys up again)."""
        if not segments:
            return set()
        points = np.concatenate([_segment_points(s) for s in segments])
        colors = np.concatenate([_segment_colors(s) for s in segments]).astype(np.float64)
        labels = self.tracker.labels
        if voxels is None:
            keys = np.concatenate([s.voxel_keys for s in segments])
            rows = self._voxels.accumulate(keys, points, colors, np.ones(keys.size, np.int64))
            label_rows = labels.index.lookup(self._voxels.index.keys[rows])
        else:
            rows = self._voxels.rows_linked(labels.index, voxels.rows, voxels.first)
            self._voxels.add_sums(rows, voxels.inverse, points, colors)
            label_rows = voxels.rows
        slot_labels, slot_counts = labels.labels_of_rows(label_rows)
        owners = slot_labels[np.arange(label_rows.size), slot_counts.argmax(1)]
        owners = self.tracker.resolve(owners.astype(np.int64))
        known = owners >= 0
        return self._voxels.assign(rows[known], owners[known])

    def _flush(self) -> None:
        """Apply the pending map edits, rebuild the map objects touched since the last flush, flag floor
        and ceiling, rank the objects (``scene.parts``). Parts are not joined here: joined in the tracker
        while the map is partial, wrong joins are permanent (ScanNet box AP25 fell from 0.53 to 0.13);
        ``map`` shows them joined. Only with the writer idle (``_writer.drain()``)."""
        self._apply_map_ops()
        self._finish_objects(self._touched_objects())

    def _apply_map_ops(self) -> None:
        ops, self._map_ops = self._map_ops, []
        self._replica.apply(ops)

    def _touched_objects(self) -> list | None:
        """The objects touched since the last flush, as (id, voxel sums or None when too small to be in
        the map, statistics), taken from the voxels and the tracker now; None when none was touched."""
        if not self._dirty:
            return None
        table = self.tracker.objects
        touched, self._dirty = sorted(self._dirty), set()
        members = self._voxels.rows_of(touched)
        objects = []
        for obj in touched:
            rows = members[obj]
            if rows.size < self.config.min_object_voxels:
                objects.append((obj, None, None))
                continue
            num_obs = int(table.num_obs[obj])
            confidence = self._online_confidence(obj, num_obs, rows.size)
            sums = self._voxels.sums(rows)  # copies: the means are taken by the writer
            objects.append((obj, sums, dict(
                num_observations=num_obs, first_frame=int(table.first_frame[obj]),
                last_frame=int(table.last_frame[obj]), confidence=float(np.clip(confidence, 0.0, 1.0)),
                best_view_frame=int(table.best_frame[obj]), best_view_box=np.array(table.best_box[obj]),
                is_structure=bool(table.structure_votes[obj] * 2 > num_obs))))
        return objects

    def _finish_objects(self, objects: list | None) -> None:
        """Put the touched objects (``_touched_objects``) into the map, then flag floor and ceiling and
        rank the map's objects; nothing when none was touched (``MapReplica.finish``)."""
        self._replica.finish(objects)

    def _joined_view(self, imap: InstanceMap) -> InstanceMap:
        """``imap`` itself, or a copy with its pieces joined (``PartRanker.joins``) when it has any."""
        return self._replica.joined_view(imap)

    def _current_up(self):
        return self._replica.current_up()

    @property
    def _map(self) -> InstanceMap:
        return self._replica.imap

    @_map.setter
    def _map(self, imap: InstanceMap) -> None:
        self._replica.imap = imap

    def _online_confidence(self, obj: int, num_obs: int, num_voxels: int) -> float:
        """Mean mask score x detection consistency, saturating with observing frames and voxels
        (``TrackerConfig.confidence_frames`` / ``confidence_voxels``)."""
        table, cfg, one = self.tracker.objects, self.tracker.config, np.array([obj])
        return float(observation_confidence(table.mean_score(one), np.array([num_obs]), table.consistency(one),
                                            np.array([num_voxels]), cfg.confidence_frames, cfg.confidence_voxels)[0])

    def _open_store(self) -> MapStore:
        if self._store is None:
            self._store = MapStore(self.path)
        return self._store

    # ---- internals: refinement and resume ----------------------------------------------------

    def _refine(self):
        return refine(self.tracker, self.config.refine)

    def _refined_map(self, result) -> InstanceMap:
        """The map of the refinement's ``result``, on this map's trajectory, camera and id remap. The
        voxels the refined segments own (for the trim) are found beside the objects' build, after the
        objects' statistics: both read every segment row, and side by side their peaks of memory added up."""
        threads = pass_threads(self.config.refine.threads)
        stats = _refined_statistics(self.tracker, result.object_map, result.row_voxel)
        imap, owned = side_by_side(lambda: self._refined_objects(result, stats),
                                   lambda: self._owned_voxels(result) if self.config.trim_unowned else None, threads)
        if owned is not None:
            trim_strays(imap, *owned, self.config.parts.contact_voxels)
        return imap

    def _refined_objects(self, result, stats: dict) -> InstanceMap:
        """The refined objects with their flags, joins and part ranks, not trimmed yet; ``stats``: their
        ``_refined_statistics``."""
        objects = result.object_map
        imap = self._map.copy(with_objects=False)
        order = np.argsort(objects.object, kind="stable")
        cuts = np.searchsorted(objects.object[order], objects.ids)
        bounds = np.r_[cuts, objects.object.size]
        for k, obj in enumerate(objects.ids.tolist()):
            keys = objects.keys[order[bounds[k]:bounds[k + 1]]]
            imap.add(self._refined_object(obj, keys, objects, k, stats))
        live = set(objects.ids.tolist())
        imap.record_remap({old: new for old, new in result.remap.items() if old != new and old not in live})
        up = map_up(imap, self.config.structure)  # estimated afresh on the final map
        mark_floor_and_ceiling(imap, self.config.structure, up)
        ranker = PartRanker(self._parts)  # one ranker: the joins' geometry serves the ranking too
        if up is not None and len(imap):
            floor, _ = flat_levels(imap, up, self.config.structure)
            ranker.join(imap, up, floor, self.config.min_hit_share)
        ranker.rank(imap, up)
        # walls after the ranking, which weighed them as objects as it always did; the pieces flagged here
        # then join the walls they lie in, which the one-kind joins above kept them from
        if up is not None and mark_walls(imap, self.config.structure, up):
            ranker.join_structure(imap, up, self.config.min_hit_share)
        return imap

    def _owned_voxels(self, result) -> tuple[np.ndarray, np.ndarray]:
        """``scene.trim.owned_voxels`` of the refined map: its voxel keys and whether a segment owns each."""
        segment_rows, segment_keys = self.tracker.segments.all_keys()
        objects = result.object_map
        return owned_voxels(segment_rows, segment_keys, result.segment_object, objects.keys, objects.object,
                            result.row_voxel)

    def _refined_object(self, obj: int, keys: np.ndarray, objects: ObjectMap, k: int, stats: dict) -> MapObject:
        rows = self._voxels.index.lookup(keys)
        known = rows >= 0
        points, colors, weights = well_observed(*self._voxels.geometry(rows[known]), self.config.min_hit_share)
        if not known.all():  # voxels without lifted points (none expected): their centres, grey
            from lift3d.voxels import voxel_centers

            points = np.concatenate([points, voxel_centers(keys[~known], objects.voxel_size).astype(np.float32)])
            colors = np.concatenate([colors, np.full(((~known).sum(), 3), 128, np.uint8)])
            weights = np.concatenate([weights, np.ones((~known).sum(), np.float32)])
        return MapObject.from_points(
            obj, points, colors, weights, up=self._map.metadata.up, num_observations=int(objects.num_obs[k]),
            first_frame=int(stats["first"][k]), last_frame=int(stats["last"][k]),
            confidence=float(np.clip(objects.confidence[k], 0.0, 1.0)), best_view_frame=int(stats["best_frame"][k]),
            best_view_box=stats["best_box"][k], is_structure=bool(objects.structure[k]),
        )

    def _seed_from_map(self) -> None:
        """Rebuild the voxel geometry and a tracker state from the loaded map (see the module docstring)."""
        voxel = self.config.voxel_size
        table = self.tracker.objects
        table.create(self._map.next_id())
        for obj in self._map:
            keys = keys_of_points(obj.points, voxel)
            weights = np.maximum(np.round(obj.weights if obj.weights is not None else 1), 1).astype(np.int64)
            weights = np.broadcast_to(weights, keys.shape)
            rows = self._voxels.accumulate(keys, obj.points.astype(np.float64), obj.colors.astype(np.float64), weights)
            self._voxels.assign(rows, np.full(rows.size, obj.id, np.int64))
            self.tracker.labels.add(keys, obj.id, weights)
            self._restore_statistics(obj)
        for old, new in self._map.id_remap.items():
            if old < len(table):
                table.parent[old] = new

    def _restore_statistics(self, obj: MapObject) -> None:
        table, n = self.tracker.objects, max(obj.num_observations, 1)
        discount = 1.0 - np.exp(-n / self.tracker.config.confidence_frames)  # inverse of observation_confidence's
        table.first_frame[obj.id], table.last_frame[obj.id] = obj.first_frame, obj.last_frame
        table.num_obs[obj.id] = obj.num_observations
        table.score_sum[obj.id] = min(detection_confidence(obj) / discount, 1.0) * obj.num_observations
        table.structure_votes[obj.id] = obj.num_observations if obj.is_structure else 0
        table.best_frame[obj.id], table.best_points[obj.id] = obj.best_view_frame, obj.num_points
        table.best_box[obj.id] = obj.best_view_box


class SequenceMismatchError(ValueError):
    """A map resumed with frames from another sequence than the one it was made from."""


def frame_digest(frame: Frame) -> str:
    """SHA-1 of a frame's index, pose and depth (its colour adds little and costs a JPEG decode's worth
    of hashing): identical frames of one sequence give identical digests."""
    digest = hashlib.sha1(str(int(frame.index)).encode())
    digest.update(np.ascontiguousarray(frame.pose, "<f8").tobytes())
    digest.update(np.ascontiguousarray(frame.depth, "<f4").tobytes())
    return digest.hexdigest()


def _open_new_map(path: Path, overwrite: bool) -> MapStore:
    """The store of a new map at ``path``: locked against other writers; an existing map file is
    refused unless ``overwrite`` (its contents then go at the first save)."""
    if not overwrite and path.exists() and path.stat().st_size > 0:
        raise MapStorageError(f"{path}: a map file is already there; pass overwrite=True to replace it "
                              f"(--overwrite), or resume it (Mapper.resume, --resume)")
    return MapStore(path, replace=overwrite)


def _refined_statistics(tracker: OnlineTracker, objects: ObjectMap, row_voxel: np.ndarray | None = None) -> dict:
    """Per refined object (aligned with ``objects.ids``), from every recorded segment sharing voxels with
    it: first and last frame, and the frame and 2D box of the segment with most voxels inside it.
    ``row_voxel``: ``RefineResult.row_voxel`` when known (saves searching every segment row's key)."""
    records = tracker.segments
    n = objects.ids.size
    stats = {"first": np.full(n, -1, np.int64), "last": np.full(n, -1, np.int64),
             "best_frame": np.full(n, -1, np.int64), "best_box": np.zeros((n, 4), np.float32)}
    seg_rows, keys = records.all_keys()
    if n == 0 or keys.size == 0:
        return stats
    if row_voxel is None:
        order = np.argsort(objects.keys, kind="stable")
        sorted_keys = objects.keys[order]
        at = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
        hit = sorted_keys[at] == keys
        row = np.searchsorted(objects.ids, objects.object[order][at[hit]])
    else:
        hit = row_voxel >= 0
        row = np.searchsorted(objects.ids, objects.object)[row_voxel[hit]]
    pairs, counts = unique_counts(row * len(records) + seg_rows[hit], n * len(records))
    obj, seg = np.divmod(pairs, len(records))
    frames = records.frame.view[seg]
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, obj, frames)
    np.maximum.at(stats["last"], obj, frames)
    stats["first"] = np.where(first == np.iinfo(np.int64).max, -1, first)
    lead = np.lexsort((-counts, obj))
    lead = lead[np.r_[True, obj[lead][1:] != obj[lead][:-1]]]
    stats["best_frame"][obj[lead]] = frames[lead]
    stats["best_box"][obj[lead]] = records.box.view[seg[lead]]
    return stats


def _segment_points(segment) -> np.ndarray:
    if segment.points is not None:
        return np.asarray(segment.points, np.float64)
    from lift3d.voxels import voxel_centers

    return voxel_centers(segment.voxel_keys, segment.voxel_size)


def _segment_colors(segment) -> np.ndarray:
    if segment.colors is not None:
        return np.asarray(segment.colors)
    return np.full((segment.num_voxels, 3), 128, np.uint8)


def _make_generator(config: MapperConfig):
    from segment2d.factory import make_generator

    return make_generator(config.segmenter, **config.generator_options())


# Frames read and segmented ahead of the one being integrated (``run``'s ``read_ahead``; memory holds this
# many + 1 frames). 2: one waits ready while the next is prepared, so the segmenter and the mapping thread
# each absorb the other's slow frames (throughput first: the map keeps up with the sensor), and while the
# mapping thread waits, the segmenter process holds the next frame's request beside the one it works on
# (``_SegmentAhead``), so that it never waits for this process to read a frame and send it. 1: a frame is
# prepared only once the mapping thread took the one before, so it waits behind one integration at most:
# latency ~ segment + integrate instead of ~ 2-3 integrations, at the cost of coupling the two stages'
# jitter (7-Scenes, 100 frames, loaded machine: same throughput, latency p95 -17%; a queueing simulation
# of balanced stages with 25% jitter: -7% throughput, -25% latency p95 on an idle machine).
SEGMENT_AHEAD = 2

# Whether the frames read ahead follow the bottleneck (``_SegmentAhead._give_slots``): ``read_ahead`` frames
# while the mapping thread mostly waits for its next frame (running mean of its waits above
# AHEAD_WAIT_SHARE: reading and segmenting are the slower side, and the second frame keeps the segmenter
# process busy), one while it mostly finds its next frame ready (the mapping side is the slower: a second
# frame would only wait ready, and its latency with it). Off: always ``read_ahead``. Frames and maps are
# the same either way.
# ``python -m benchmarks --only speed``, 2026-12-04, near idle, one run each (frames/s end to end, latency
# p95, concurrency gain): fixed 2: 7-Scenes 15.1, 215 ms, 1.37x; ScanNet scene0448_01 19.9, 145 ms, 1.57x.
# Fixed 1: 16.9, 129 ms, 1.52x; 16.0, 121 ms, 1.24x. Adaptive, mean of the waits above 1/2: 18.5, 162 ms,
# 1.70x; 20.3, 140 ms, 1.57x. Above 3/4: 17.8, 153 ms, 1.53x; 21.1, 122 ms, 1.65x.
ADAPTIVE_AHEAD = True
AHEAD_WAIT_SHARE = 0.75

# How the work of a frame is shared between the segmenter process and the mapping process. Besides
# segmenting, the segmenter process can take, in this order, reading the frame (``SegmenterProcess.reads``:
# decoding costs 6-25 ms a frame, a 1296 x 968 ScanNet JPEG resized the most) and partitioning and lifting
# its masks (``Mapper.frame_lifter``: ~15-20 ms a frame on 7-Scenes; only with ``run(lift_apart=True)``,
# which costs more CPU than it balances, see ``run``). It takes one more of them at the
# next frame while it has lately spent less CPU per frame than the mapping process (all its threads:
# mapping, reading, saving; running means, READ_BALANCE_SMOOTHING per frame), and gives one back while it
# spends more. CPU, not waits: a frame read here makes the mapping thread wait for it, which a wait-based
# rule took for a slow segmenter and answered by reading still more here. Frames, masks and lifted
# segments are the same either way; only where the work runs changes.
READ_BALANCE_SMOOTHING = 0.2

# Whether ``run(pipelined=True)`` saves in a writer process (``Mapper.save_in_background(process=True)``)
# rather than on a writer thread of the mapping process (``scene run --save-writer``). Off: measured on the
# shared 2 cores at load 2-7, pairs alternated against the writer thread (7-Scenes redkitchen 10 pairs,
# ScanNet scene0448_01 3), the process took ~2.8 s of CPU (19%) off the mapping process and ~0.9 s off its
# main thread per 7-Scenes run (medians 11.9 s against 14.8 s, 8.4 s against 9.3 s), and the frames right
# after a save waited less (7-Scenes frames 10-12 of each 10: +63 ms latency over the others against
# +85 ms; latency median 195 ms against 225 ms), but under that load neither wall nor latency p95 came out
# better (7-Scenes: per-pair ratios process / thread with median 1.00 for both, the process ahead in 5 of
# 10 pairs for each; ScanNet 0.75 and 0.73, ahead in 2 of 3), and the writer process's peak RSS
# (~158 MiB on 7-Scenes; a fresh interpreter importing numpy, scipy and OpenCV is ~120 MiB) takes the sum
# of the three processes' peaks to ~890 MiB (it ends before the global pass, where the mapping process
# peaks: sampled together every 20 ms the three peaked at 643-679 MiB, against 604-636 MiB). Near idle
# (2026-12-04, 3 alternated rounds, load 1.2-2.2): 7-Scenes wall 11.81 / 12.37 / 11.34 s against 11.84 /
# 11.54 / 11.48 s with the thread, latency p95 150 / 159 / 149 ms against 166 / 162 / 153; ScanNet wall
# 16.08 / 16.25 / 16.58 s against 16.07 / 16.50 / 16.40, p95 107 / 105 / 115 ms against 105 / 106 / 109.
SAVE_IN_PROCESS = False

# The share of the interpreter (the GIL) an incremental save on the writer thread may take while the
# mapping thread works and the next save is not yet due (``Mapper.save_in_background``,
# ``scene.map_writer.MapWriter``). Unpaced, a save (7-Scenes: ~80 ms of CPU a save, every 10 frames) took
# the GIL from the mapping thread in the 1-3 frames after it was handed over: lift + associate 70 ms
# median on the first frame after a save against 33 ms on the 5th-10th, and those frames set the latency
# p95. Paced at 1/3, the save spreads over the next ~5 frames (each ~5-10 ms slower), and runs unpaced
# while the mapping thread waits for a frame. Measured 2026-12-04 on the shared 2 cores (other work
# niced, load 7-9), 3 alternated pairs of ``scene run``, unpaced -> 1/3: 7-Scenes latency p95 221 / 221 /
# 209 -> 186 / 187 / 158 ms, frames/s online 14.6 / 14.4 / 15.5 -> 16.7 / 15.0 / 18.4; ScanNet
# scene0448_01 p95 220 / 191 / 187 -> 172 / 178 / 199 ms, 15.3 / 15.9 / 16.8 -> 18.2 / 17.7 / 16.3 frames/s;
# maps identical. Shares 0.2 and 0.5 (before the unpaced waits for frames) were no better than 1/3. Near
# idle (load 1.2-1.7), ``python -m benchmarks --only speed`` alternated with the unpaced code, 2 rounds:
# 7-Scenes p95 148 / 182 -> 107 / 139 ms, 17.5 / 15.7 -> 19.4 / 17.1 frames/s; ScanNet p95 129 / 130 ->
# 119 / 121 ms, 20.4 / 21.0 -> 20.9 / 20.1 frames/s.
SAVE_SHARE = 1 / 3

ProgressCallback = Callable[[FrameResult, int, int], None]


def run(source, config: MapperConfig | None = None, progress: ProgressCallback | None = None,
        out: str | Path | None = None, mapper: Mapper | None = None, max_frames: int | None = None,
        pipelined: bool = True, read_ahead: int = SEGMENT_AHEAD, lift_apart: bool = False,
        save_process: bool | None = None, worker: WaitingWorker | None = None) -> InstanceMap:
    """Map every frame of ``source`` (a FrameSource or any sized iterable of Frames) and finalize.

    ``pipelined`` (default): the next frames are read and segmented on a worker thread (at most
    ``read_ahead`` frames ahead; ``SEGMENT_AHEAD`` says what 1 and 2 trade, ``ADAPTIVE_AHEAD`` when
    fewer), in a worker process for ``process_safe`` generators, which also reads file sources itself
    (``SegmenterProcess``), while the current one is lifted and associated, and the incremental saves run
    on a writer thread, or in a writer process (``save_process``; None: ``SAVE_IN_PROCESS``;
    ``Mapper.save_in_background``); frames are integrated in order, so the map and its ids are the same
    as with ``pipelined=False``, which does everything on this thread. An
    error on the worker is raised here (a segmenter's as ``SegmentationError`` naming the frame); no
    thread is left running when ``run`` returns or raises. Each result's ``timings`` also holds "read"
    (pulling the frame from ``source``) and "latency" (from the start of reading the frame to the end
    of its integration: with ``pipelined``, time waiting behind the previous frame included; a frame the
    segmenter process reads starts when it begins reading it, after the requests sent before it) and
    "lifted_apart" (1.0 when the segmenter process lifted the frame's masks, its "segment" then includes
    that lift and "lift_associate" does not; else 0.0). ``lift_apart``: offer the segmenter process the
    partition and lift of the frames' masks too (``READ_BALANCE_SMOOTHING``); off by default: measured on
    2 cores at load 2-5, three alternated pairs, it cost ScanNet scene0448_01 ~7% of end-to-end wall
    (shipping the lifted segments and building the mask stack there cost more CPU than the balance
    gained) and left 7-Scenes unchanged.

    ``progress(result, done, total)`` is called after each frame. ``out``: map file for incremental and
    final saves. ``mapper``: continue an existing (e.g. resumed) mapper; frames it already integrated are
    skipped, and a source whose first frames are not the map's is refused (``Mapper.check_sequence``).
    ``max_frames``: stop after that many frames of ``source``. A source with no frame is an error
    (``ValueError``); frames that give no object make a valid, empty map. On KeyboardInterrupt, a
    frame that cannot be read (``DatasetError``) or a failing segmenter, the map so far is saved (online,
    not refined), and the tracker's state beside it (``Mapper.save_state``), before the error propagates:
    no integrated frame is lost, and the resumed run ends in the refinement. ``worker``: a segmenter
    process started ahead (``WaitingWorker``, e.g. by the CLI before its own imports) for the segmenter
    process of a pipelined run; ``run`` closes it when it goes unused.
    """
    config = config if config is not None else MapperConfig()
    if len(source) == 0:
        raise ValueError(f"{getattr(source, 'root', 'the frame source')}: no frame to map")
    mapper = mapper if mapper is not None else Mapper(config, out, metadata=_source_metadata(source, config))
    total = len(source) if max_frames is None else min(len(source), int(max_frames))
    frames = None
    try:
        if mapper.resumed:
            mapper.check_sequence(source)
        if pipelined:
            mapper.save_in_background(process=SAVE_IN_PROCESS if save_process is None else save_process)
        frames = (_SegmentAhead(mapper, source, total, read_ahead, lift_apart, crops=True, waiting=worker) if pipelined
                  else _segment_inline(mapper, source, total))
        for done, frame, masks, timings in frames:
            started, lifted = timings.pop("started"), timings.pop("lifted", None)
            result = mapper.integrate(frame, masks, lifted=lifted)
            result.timings.update(timings, latency=time.perf_counter() - started, lifted_apart=float(lifted is not None))
            if progress is not None:
                progress(result, done, total)
        frames.stop()  # the segmenter process winds down beside the global pass
        return mapper.finalize()
    except (KeyboardInterrupt, DatasetError, SegmentationError):
        if frames is not None:
            frames.close()  # the worker stops before the save below
        if mapper.last_frame >= 0:  # nothing integrated: nothing to keep (close() drops a new, unsaved file)
            mapper.save()
            _keep_state(mapper)
        raise
    finally:
        try:
            if frames is not None:
                frames.close()
            if worker is not None:
                worker.close()
        finally:
            mapper.close()


def _tracker_settings(config: MapperConfig) -> dict[str, str]:
    """Per ``TRACKER_SETTINGS`` table, a digest of its values (a state's header records them)."""
    tables = config.to_dict()
    return {name: hashlib.sha1(json.dumps(tables[name], sort_keys=True, default=str).encode()).hexdigest()[:12]
            for name in TRACKER_SETTINGS}


def _keep_state(mapper: Mapper) -> None:
    """After a run stopped early: the tracker's state beside the map file, so that the resumed run ends
    refined (``Mapper.save_state``). A state that cannot be written costs only that (a warning): the map
    is saved."""
    if mapper.path is None or not mapper.refinable or mapper.tracker.frames_seen == 0:
        return
    try:
        mapper.save_state()
    except OSError as exc:
        warnings.warn(f"{state_path(mapper.path)}: the tracker's state could not be written ({exc.strerror or exc}); "
                      f"the map is saved, and resumed it stays online", RuntimeWarning, stacklevel=2)


class SegmentationError(ValueError):
    """The mask generator failed on a frame; the message names the frame (the cause is chained)."""


def _frames(source, total: int, after: int):
    """(position from 1, frame, {"started": perf_counter before reading it, "read": seconds}) of the first
    ``total`` frames of ``source`` with an index above ``after``."""
    frames = iter(source)
    for k in range(total):
        started = time.perf_counter()
        try:
            frame = next(frames)
        except StopIteration:
            return
        if frame.index > after:
            yield k + 1, frame, {"started": started, "read": time.perf_counter() - started}


def _segmentation_error(frame: Frame, generator, message: str) -> SegmentationError:
    where = getattr(frame, "source", "") or "the frame source"
    return SegmentationError(f"frame {frame.index} ({where}): the {getattr(generator, 'name', 'mask')} "
                             f"generator failed: {message}")


@dataclass
class _InFlight:
    """A frame whose request went to the segmenter process and whose reply is still to be received:
    ``position`` (from 0) for a frame the process reads (``SegmenterProcess.send_read``), else the ``frame``
    read here and sent over (``send_frame``) with its number ``done``; ``timings`` so far ("started",
    and "read" for a frame read here); ``sent``: when the request was sent."""

    timings: dict
    sent: float
    position: int | None = None
    done: int = 0
    frame: Frame | None = None


class _segment_inline:
    """(done, frame, None, timings) per frame: ``Mapper.integrate`` segments it on the calling thread."""

    def __init__(self, mapper: Mapper, source, total: int) -> None:
        self._frames = _frames(source, total, mapper.last_frame)

    def __iter__(self):
        for done, frame, timings in self._frames:
            yield done, frame, None, timings

    def close(self) -> None:
        self._frames.close()

    def stop(self) -> None:
        """Nothing runs apart."""


class _SegmentAhead:
    """Reads and segments frames ahead of the consumer, ``ahead`` at most (a frame is read once the consumer
    took the one ``ahead`` before it; ``SEGMENT_AHEAD``), and yields them in order as (done, frame, masks,
    timings: started, read and segment seconds). Two threads: a reader ("scene-reader") reads each frame
    here, or has the segmenter process read it (``READ_BALANCE_SMOOTHING``), and sends the request without
    waiting for its reply; the segmenter thread ("scene-segmenter") receives the replies in the order sent
    and hands the frames over. Up to ``ahead`` requests are so in flight, and the process takes the next
    one as soon as it replied to the last, instead of waiting while this process reads the next frame and
    sends it (ScanNet, 1296 x 968 JPEGs: ~12 ms a frame read here). Without a segmenter process (one core,
    or a generator that is not ``process_safe``) and while it starts, the reader segments the frames
    itself. A reading error (``DatasetError``) is re-raised as is, a segmenter's as ``SegmentationError``
    naming the frame, each after the frames before it. ``close()`` stops both threads and waits for them
    (the replies to requests in flight are received and dropped first, so the process ends cleanly).
    A frame's "segment" is its request's round trip, waiting behind the request before it included
    (for a frame the process reads: from when it began reading it, its "started").
    ``crops``: masks from the segmenter process come as ``MaskCrops`` (``Mapper.integrate`` takes them; the
    N x H x W stack is made only if read), else every frame's masks are a MaskSet. ``waiting``: a segmenter
    process started ahead, taken for the segmenter process when there is one."""

    _END = object()

    def __init__(self, mapper: Mapper, source, total: int, ahead: int = SEGMENT_AHEAD, lift_apart: bool = False,
                 crops: bool = False, waiting: WaitingWorker | None = None) -> None:
        if int(ahead) < 1:
            raise ValueError(f"read_ahead must be >= 1 frame, got {ahead}")
        self._generator = mapper.generator
        self._ready: queue.Queue = queue.Queue()  # bounded by the slots: ``ahead`` frames and the end
        self._sent: queue.Queue = queue.Queue()  # reader -> segmenter thread, in order; bounded by the slots
        self._slots = threading.Semaphore(ahead)  # frames read ahead, given back as they are taken
        self._ahead, self._held = int(ahead), 0  # the most frames ahead, and how many slots are held back
        self._waits = 1.0  # running mean of the consumer finding no frame ready (``_give_slots``)
        self._stop = threading.Event()
        self._failed = threading.Event()  # a frame failed: nothing more is read
        in_process = getattr(mapper.generator, "process_safe", False) and _usable_cores() >= 2
        self._reads = in_process and SegmenterProcess.reads(source)
        lifter = mapper.frame_lifter() if lift_apart and in_process and hasattr(mapper, "frame_lifter") else None
        self._process = (SegmenterProcess(mapper.generator, source if self._reads else None, lifter, waiting=waiting)
                         if in_process else None)
        self._threads = _OneThreadPerCore() if in_process else None  # undone by close()
        # The work the segmenter process may take besides segmenting, in the order it takes it (READ_BALANCE_SMOOTHING)
        self._offloadable = ("read",) * self._reads + ("lift",) * (lifter is not None)
        self._offload = int(self._reads)  # how many of them it takes now: the reading, while it starts (lifting
        # there imports the tracking modules, which would delay its first frame)
        self._cpu_here = 0.0  # running means of this process's CPU seconds per frame taken, and of
        self._cpu_apart = 0.0  # the segmenter process's CPU seconds per frame
        self._cpu_clock: float | None = None  # this process's CPU clock when the last frame was taken
        self._source, self._total, self._after = source, total, mapper.last_frame
        self._crops = crops
        self._waiting_for_frame = getattr(mapper, "waiting_for_frame", nullcontext)  # ``Mapper.waiting_for_frame``
        self._reader = threading.Thread(target=self._read, name="scene-reader", daemon=True)
        self._thread = threading.Thread(target=self._receive, name="scene-segmenter", daemon=True)
        self._reader.start()
        self._thread.start()

    def __iter__(self):
        while True:
            waited = self._ready.empty()
            with self._waiting_for_frame():
                item = self._ready.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            self._measure(item[3].pop("cpu_apart", None))
            self._give_slots(waited)
            yield item

    def _give_slots(self, waited: bool) -> None:
        """The consumer took a frame: the next one may be read. How far ahead (``ADAPTIVE_AHEAD``): the
        whole ``ahead`` while the consumer mostly had to wait for its frames (reading and segmenting are
        behind; running mean of the waits, READ_BALANCE_SMOOTHING per frame, above AHEAD_WAIT_SHARE), one
        frame while it mostly found them ready (a frame more would only wait ready, adding to latency)."""
        self._waits += READ_BALANCE_SMOOTHING * (float(waited) - self._waits)
        want = self._ahead if self._waits > AHEAD_WAIT_SHARE or not ADAPTIVE_AHEAD else 1
        give = max(0, 1 + want - (self._ahead - self._held))  # 1 as usual, one more or one less towards ``want``
        self._held += 1 - give
        for _ in range(give):
            self._slots.release()

    def _measure(self, cpu_apart: float | None) -> None:
        """Update the running means of both processes' CPU seconds per frame with the frame just taken
        (``cpu_apart``: the segmenter process's on it; None without one) and rebalance."""
        clock = time.process_time()  # every thread of this process: mapping, reading here, the writer
        if self._cpu_clock is not None and cpu_apart is not None:  # the first frame waited for start-up
            self._cpu_here += READ_BALANCE_SMOOTHING * (clock - self._cpu_clock - self._cpu_here)
            self._cpu_apart += READ_BALANCE_SMOOTHING * (cpu_apart - self._cpu_apart)
            self._rebalance()
        self._cpu_clock = clock

    def stop(self) -> None:
        """Once every frame was taken: tell the segmenter process to end without waiting for it (``close``
        waits), so it winds down on its core while this one goes on."""
        self._stop.set()
        if self._process is not None:
            self._reader.join()
            self._thread.join()  # it ended with the frames: no request is in flight
            self._process.stop()

    def close(self) -> None:
        """Stop both threads and wait for them (and the segmenter process); closing twice is fine."""
        self._stop.set()
        for thread in (self._reader, self._thread):
            while thread.is_alive():
                try:  # unblock a thread waiting to hand over a frame
                    self._ready.get(timeout=0.05)
                except queue.Empty:
                    pass
            thread.join()
        if self._process is not None:
            self._process.close()
        if self._threads is not None:
            self._threads.restore()
            self._threads = None

    def _read(self) -> None:
        """The reader thread: per frame, once a slot is free, the frame segmented here (``_InFlight`` is
        not needed) or its request sent, handed on in order to the segmenter thread; then the end, or the
        error met."""
        frames = self._frames_here()
        try:
            while self._take_slot():
                item = self._read_next(frames)
                if item is None:
                    break
                self._sent.put(item)
            self._sent.put(self._END)
        except BaseException as error:  # raised by the consumer after the frames before it
            self._sent.put(error)
        finally:
            frames.close()

    def _frames_here(self):
        """(done, frame, timings) of the frames this process reads, in order: ``_frames`` of a source the
        segmenter process cannot read; for one it can, a placeholder per position (``_read_next`` reads it
        here or has it read there)."""
        if self._reads:
            return ((k + 1, None, {}) for k in range(self._total))
        return _frames(self._source, self._total, self._after)

    def _read_next(self, frames):
        """The next frame's item for the segmenter thread: (done, frame, masks, timings) when segmented
        here, else an ``_InFlight`` with its request sent; None after the last frame."""
        for done, frame, timings in frames:
            started = timings.get("started", time.perf_counter())
            starting = self._process is not None and not self._process.started()
            offload = self._offloaded()
            if self._reads and not starting and "read" in offload:
                sent = time.perf_counter()
                self._process.send_read(done - 1, self._after, "lift" in offload)
                return _InFlight({}, sent, position=done - 1)
            if self._reads:
                frame = self._source[done - 1]
                if frame.index <= self._after:
                    continue
                timings = {"started": started, "read": time.perf_counter() - started}
            sent = time.perf_counter()
            if self._process is None or starting:
                try:
                    masks = self._generator.generate(frame)
                except Exception as error:
                    raise _segmentation_error(frame, self._generator, f"{type(error).__name__}: {error}") from error
                return done, frame, masks, {**timings, "segment": time.perf_counter() - sent}
            self._process.send_frame(frame, "lift" in offload)
            return _InFlight(timings, sent, done=done, frame=frame)
        return None

    def _receive(self) -> None:
        """The segmenter thread: the reader's items in order, each request's reply received, handed to the
        consumer. After an error (handed over once) or ``close``, the replies to the requests still in
        flight are received and dropped until the reader ends, so that the process is not left writing."""
        while True:
            item = self._sent.get()
            if item is self._END or isinstance(item, BaseException):
                self._hand_over(item)
                return
            if isinstance(item, _InFlight):
                try:
                    item = self._received(item)
                except BaseException as error:
                    self._hand_over(error)
                    continue
                if item is None:  # skipped by the process (a resumed map holds it): its slot is free again
                    self._slots.release()
                    continue
            self._hand_over(item)

    def _received(self, sent: _InFlight):
        """(done, frame, masks, timings) from the reply to ``sent``; None for a frame the process skipped."""
        if sent.frame is None:
            reply = self._process.receive_read(self._crops)
            if reply.error:
                raise _segmentation_error(reply.frame, self._generator, reply.error)
            if reply.skipped:
                return None
            # The frame's reading began when the process took the request (after the requests before it),
            # its round trip then (clamped: the processes' clocks are one where it is CLOCK_MONOTONIC)
            now = time.perf_counter()
            started = min(max(reply.started, sent.sent), now - reply.read_s)
            return (sent.position + 1, reply.frame, reply.masks,
                    {"started": started, "read": reply.read_s, "segment": now - started - reply.read_s,
                     "lifted": reply.finished, "cpu_apart": reply.cpu_s})
        try:
            masks, lifted, cpu_apart = self._process.receive_masks(self._crops)
        except Exception as error:
            raise _segmentation_error(sent.frame, self._generator, f"{type(error).__name__}: {error}") from error
        return (sent.done, sent.frame, masks,
                {**sent.timings, "segment": time.perf_counter() - sent.sent, "lifted": lifted, "cpu_apart": cpu_apart})

    def _hand_over(self, item) -> None:
        """Give ``item`` to the consumer, unless an error was given already or ``close`` was called."""
        if self._stop.is_set() or self._failed.is_set():
            return
        if isinstance(item, BaseException):
            self._failed.set()
        self._ready.put(item)

    def _rebalance(self) -> None:
        """One more kind of work for the segmenter process while it spends less CPU per frame than this
        process, one less while it spends more (READ_BALANCE_SMOOTHING)."""
        step = -1 if self._cpu_apart > self._cpu_here else 1
        self._offload = min(max(self._offload + step, 0), len(self._offloadable))

    def _offloaded(self) -> tuple[str, ...]:
        """The work besides segmenting that the segmenter process does for the next frame ("read", "lift";
        READ_BALANCE_SMOOTHING says how it is chosen)."""
        return self._offloadable[:self._offload]

    def _take_slot(self) -> bool:
        """Wait until a frame may be read ahead; False once ``close`` was called or a frame failed."""
        while not self._stop.is_set() and not self._failed.is_set():
            if self._slots.acquire(timeout=0.05):
                return True
        return False


class _OneThreadPerCore:
    """OpenCV's thread pool of this process cut to one thread while a segmenter process runs beside it (its
    own pools are cut to one too, ``segment2d.worker.worker_environment``): with one process per core, a
    pool's extra threads only contend with the other process and spin while they wait (7-Scenes, 200
    frames, loaded machine: see ``run``). ``restore`` gives the pool its size back; OpenCV keeps one pool
    per process, so the last pipeline to restore it decides (pipelines in threads of one process are not
    expected)."""

    def __init__(self) -> None:
        import cv2

        self._cv2, self._opencv = cv2, cv2.getNumThreads()
        cv2.setNumThreads(1)

    def restore(self) -> None:
        self._cv2.setNumThreads(self._opencv)


def _source_metadata(source, config: MapperConfig) -> MapMetadata:
    root = getattr(source, "root", "")
    return MapMetadata(voxel_size=config.voxel_size, source_path=str(root),
                       source_format=str(getattr(source, "format_name", "")))


__all__ = ["FrameResult", "Mapper", "STAGES", "SegmentationError", "SequenceMismatchError", "frame_digest", "run"]
