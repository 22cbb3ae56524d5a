"""Section "scan": the scan mode (``scene.scan``) labelling a scan's own vertices, and stereo depth.

ScanNet (both scenes): the scan is ``points/*.bin`` (the mesh's vertices, no faces); every frame, the
geometric generator. Box AP25 / AP50 of the vertex instances against ``gt_boxes.json``, with the
protocol of the "boxes" section (vertices moved by ``axis_align_matrix``, AABB per instance, score =
confidence), beside the voxel map of the same run (the same masks). "scan (map)": the voxel map's
objects on the vertices (a vertex takes the map point within two voxels; on a mesh,
every vertex of a superpoint one object holds 40 % of takes that object); "scan (consensus)": superpoints clustered by multi-view mask consensus alone.

Synthetic (the noisy room, tabletop and cluttered presets and the clean room; the graph and
consensus labellings on the room only): the scene's surfaces as a welded mesh (``scan_mesh``, 5 cm
edges) with the instance of every vertex. Instance AP (ScanNet protocol, ``scene.eval``) on the vertices some true pose observes, for the
scan mode with the sensor's depth and with depth rendered from the mesh (the frames' depth removed; the
rendered depth given a sensor's statistics, ``ScanConfig.rendered``),
beside the voxel map (each vertex takes the map point within two voxels) of the same run.

Stereo: depth from ``lift3d.stereo`` (SGBM + left-right check with two partners chosen by pose, fused
with a multi-view check, planar segments filled) against ScanNet's sensor depth (every 3rd frame, 20
of them) and the synthetic scene's true depth: median absolute and relative error, share of pixels
within 5 % / 10 %, coverage; the voxel map's non-structure box AP on both ScanNet scenes (every 3rd
frame) and its AP on the synthetic scene, with stereo depth beside sensor depth. Stage times are sums over the run (seconds; these rows integrate frame by frame, so the masks'
partition and lift are inside "fusion": "lift" is that stage on a worker thread in the pipelined command
only); "clustering" is the map labels' transfer and snapping,
"graph_clustering" / "consensus_clustering" the other two labellings; "scan_only_without_masks" leaves
out the masks and the voxel map's fusion (what the graph and consensus modes cost).
"command_wall_without_masks" / "command_cpu_without_masks" (ScanNet rows): what ``scene run DATA --scan
auto`` does besides making masks (the masks of the run above replayed): reading the scan and the frames,
fusing, the global pass, labelling and writing the outputs, wall and CPU seconds of the process (all
threads); "same_labels": its vertex labels equal the run above's.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.harness import markdown_table, peak_rss_bytes, timed
from benchmarks.suites.boxes import read_gt_boxes
from benchmarks.suites.common import BenchContext, aligned_boxes, label_distance
from benchmarks.suites.sequences import sizes, synthetic_scene

NAME = "scan"
TITLE = "Scan mode: labels on the scan's own vertices; stereo depth"
SCANNET_SCENES = ("scannet_scene0448_01", "scannet_scene0113_00")
# (preset, noisy, also the graph and consensus labellings): every preset of the accuracy section, noisy
SYNTHETIC = (("room", True, True), ("room", False, True), ("tabletop", True, False), ("cluttered", True, False))
OBSERVED_STRIDE = 4


def run(ctx: BenchContext) -> dict:
    boxes = [row for name in SCANNET_SCENES for row in _scannet_rows(ctx, name)]
    synthetic, timings = [], []
    for preset, noisy, others in SYNTHETIC:
        if ctx.quick and not others:  # the quick check keeps the room's two rows
            continue
        for seed in sizes(ctx).seeds:
            rows, stage_rows = _synthetic_rows(ctx, preset, noisy, seed, others)
            synthetic += rows
            timings += stage_rows
    stereo = _stereo_rows(ctx)
    timings += [row.pop("stages") for row in boxes if "stages" in row]
    return {"protocol": __doc__.split("\n\n", 1)[1].strip(), "boxes": boxes, "synthetic": synthetic,
            "rgb_only": rgb_only_gaps(synthetic), "stereo": stereo, "timings": timings, "peak_rss_bytes": peak_rss_bytes()}


def rgb_only_gaps(synthetic: list) -> list:
    """Per synthetic preset and variant: the scan mode's ("scan (map)") AP and AP50 (all), mean over the
    seeds, with the sensor's depth and with depth rendered from the mesh, and the gap (sensor - mesh)."""
    groups: dict = {}
    for row in synthetic:
        if row["labels"] == "scan (map)":
            scene = row["scene"].rsplit("-s", 1)[0]
            groups.setdefault(scene, {}).setdefault(row["depth"], []).append((row["all_ap"], row["all_ap50"]))
    out = []
    for scene, by_depth in groups.items():
        if set(by_depth) != {"sensor", "mesh"}:
            continue
        sensor, mesh = np.mean(by_depth["sensor"], axis=0), np.mean(by_depth["mesh"], axis=0)
        out.append({"scene": scene, "seeds": len(by_depth["sensor"]), "ap_sensor": float(sensor[0]),
                    "ap_mesh": float(mesh[0]), "ap_gap": float(sensor[0] - mesh[0]), "ap50_sensor": float(sensor[1]),
                    "ap50_mesh": float(mesh[1]), "ap50_gap": float(sensor[1] - mesh[1])})
    return out


# ---- ScanNet -------------------------------------------------------------------------------------------


def _scannet_rows(ctx: BenchContext, name: str) -> list:
    from lift3d.scan_io import find_scan
    from scene.datasets import open_dataset
    from scene.eval import box_ap
    from scene.scan import ScanConfig, ScanMapper

    root = ctx.data_set(name)
    gt, align, _ = read_gt_boxes(root / "gt_boxes.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = open_dataset(root, stop=sizes(ctx).real_frames)
    ctx.log(f"  scan mode on {name}: {len(source)} frames")
    recorder = _RecordingGenerator()
    mapper, wall = _integrate(ScanMapper(find_scan(root), ScanConfig(keep_views=True), recorder), source)
    consensus = mapper.finalize("consensus")
    graph = mapper.finalize("graph")
    mapped = mapper.finalize("map")
    rows = []
    for label, imap in (("voxel map", mapped.voxel_map), ("scan (map)", mapped.imap), ("scan (graph)", graph.imap),
                        ("scan (consensus)", consensus.imap)):
        row = {"scene": name, "labels": label}
        for subset, structure in (("all", None), ("nonstructure", False)):
            b, s = aligned_boxes(imap, align, structure)
            result = box_ap(gt, b, s)
            row.update({f"{subset}_ap25": result.ap25, f"{subset}_ap50": result.ap50, f"{subset}_pred": result.num_pred})
        row["num_gt"] = int(len(gt))
        rows.append(row)
        ctx.log(f"    {label}: box AP25 {row['all_ap25']:.3f} / non-structure {row['nonstructure_ap25']:.3f}")
    rows[0]["stages"] = {**_stage_row(name, mapper, mapped, wall), "graph_clustering":
                         graph.timings["clustering"], "consensus_clustering": consensus.timings["clustering"]}
    ctx.log(f"  the scan command on {name}, masks made beforehand")
    rows[0]["stages"].update(_command_without_masks(root, source, recorder.replay(), mapped.vertex_ids))
    return rows


class _RecordingGenerator:
    """The geometric generator, keeping each frame's masks (bit-packed) for ``replay``."""

    name = "geometric"

    def __init__(self) -> None:
        from segment2d.factory import make_generator

        self._generator, self._packed = make_generator("geometric"), {}

    def generate(self, frame):
        from segment2d.worker import pack_masks

        masks = self._generator.generate(frame)
        self._packed[int(frame.index)] = pack_masks(masks)
        return masks

    def replay(self):
        return _ReplayGenerator(self._packed)


class _ReplayGenerator:
    """Hands out the masks a ``_RecordingGenerator`` kept (unpacking them is all it costs)."""

    name = "replay"

    def __init__(self, packed: dict) -> None:
        self._packed = packed

    def generate(self, frame):
        from segment2d.worker import unpack_masks

        return unpack_masks(self._packed[int(frame.index)])


def _command_without_masks(root, source, generator, expected_ids) -> dict:
    """What ``scene run DATA --scan auto`` does after the masks: read the scan, read the frames (on the
    read-ahead worker), fuse, global pass, label the vertices, write the PLY, ScanNet predictions and map
    file; wall seconds and CPU seconds of this process (every thread). ``same_labels``: the vertex ids
    equal those of the run above (same masks, frames integrated one by one)."""
    import resource
    import tempfile

    from lift3d.scan_io import find_scan
    from scene.scan import ScanConfig, ScanMapper, integrate_frames, write_scan_outputs

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    with tempfile.TemporaryDirectory() as folder:
        cpu_start, start = cpu(), time.perf_counter()
        mapper = ScanMapper(find_scan(root), ScanConfig(), generator)
        integrate_frames(mapper, source, len(source))
        result = mapper.finalize()
        write_scan_outputs(result, Path(folder), root.name, map_path=Path(folder) / "map.sqlite")
        wall, cpu_seconds = time.perf_counter() - start, cpu() - cpu_start
    return {"command_wall_without_masks": wall, "command_cpu_without_masks": cpu_seconds,
            "same_labels": bool(np.array_equal(result.vertex_ids, expected_ids))}


def _integrate(mapper, frames):
    def loop():
        for frame in frames:
            mapper.integrate(frame)
    _, seconds = timed(loop)
    return mapper, seconds


def _stage_row(name: str, mapper, result, wall: float) -> dict:
    stages = dict(result.timings)
    without_masks = sum(v for k, v in stages.items() if k != "segment")
    return {"run": name, "vertices": mapper.scan.num_vertices, "num_superpoints": mapper.superpoints.count,
            "frames": result.frames, **{k: float(v) for k, v in stages.items()},
            "total_without_masks": float(without_masks), "scan_only_without_masks":
            float(without_masks - stages.get("fusion", 0.0)), "integrate_wall": float(wall)}


# ---- synthetic -----------------------------------------------------------------------------------------


def _synthetic_rows(ctx: BenchContext, preset: str, noisy: bool, seed: int, others: bool = True) -> tuple[list, list]:
    from lift3d.scan_io import ScanGeometry
    from scene.datasets.synthetic.scan_mesh import scan_mesh
    from scene.scan import ScanConfig, ScanMapper

    scene = synthetic_scene(ctx, preset, noisy, seed)
    mesh = scan_mesh(scene.layout)
    scan = ScanGeometry(mesh.vertices, mesh.colors, mesh.triangles, f"synthetic:{preset}:{seed}")
    observed = scene.gt_observed(_as_points(mesh), stride=OBSERVED_STRIDE)
    structure = [o.id for o in scene.gt_objects() if o.is_structure]
    name = f"{preset}-{'noisy' if noisy else 'clean'}-s{seed}"
    rows, stages = [], []
    for depth in ("sensor", "mesh"):
        frames = scene.frames() if depth == "sensor" else (replace(f, depth=np.zeros_like(f.depth)) for f in scene.frames())
        ctx.log(f"  scan mode on synthetic {name} ({mesh.vertices.shape[0]} vertices), depth: {depth}")
        mapper, wall = _integrate(ScanMapper(scan, ScanConfig(depth=depth, keep_views=others)), frames)
        consensus = mapper.finalize("consensus") if others else None
        graph = mapper.finalize("graph") if others else None
        mapped = mapper.finalize("map")
        voxel_labels = mapped.voxel_map.label_points(mesh.vertices.astype(np.float64),
                                                     label_distance(mapped.voxel_map.metadata.voxel_size))
        variants = (("voxel map", voxel_labels, mapped.voxel_map), ("scan (map)", mapped.vertex_ids, mapped.imap))
        if others:
            variants += (("scan (graph)", graph.vertex_ids, graph.imap),
                         ("scan (consensus)", consensus.vertex_ids, consensus.imap))
        for label, vertex_ids, imap in variants:
            row = {"scene": name, "depth": depth, "labels": label}
            for protocol, result in _instance_ap(vertex_ids, imap, mesh.instance_ids, observed, structure, name).items():
                row.update({f"{protocol}_ap": result.ap, f"{protocol}_ap50": result.ap50, f"{protocol}_ap25": result.ap25})
            rows.append(row)
            ctx.log(f"    {label}: AP {row['all_ap']:.3f} AP50 {row['all_ap50']:.3f} (objects AP50 {row['objects_ap50']:.3f})")
        stages.append({**_stage_row(f"{name} ({depth} depth)", mapper, mapped, wall),
                       **({"graph_clustering": graph.timings["clustering"],
                           "consensus_clustering": consensus.timings["clustering"]} if others else {})})
    return rows, stages


def _as_points(mesh):
    from scene.datasets.synthetic import GTPoints

    return GTPoints(mesh.vertices, mesh.instance_ids, mesh.colors)


def _instance_ap(vertex_ids, imap, gt_ids, observed, structure, name) -> dict:
    from scene.eval import ScenePredictions, evaluate_scenes, objects_only

    labels = np.asarray(vertex_ids)[observed]
    gt = np.asarray(gt_ids, np.int64)[observed]
    ids = np.unique(labels[labels >= 0])
    masks = labels[None, :] == ids[:, None]
    scores = np.array([imap.get(int(i)).confidence for i in ids], np.float64)
    return {"all": evaluate_scenes([ScenePredictions(gt, masks, scores, name)]),
            "objects": evaluate_scenes([ScenePredictions(objects_only(gt, structure), masks, scores, name)])}


# ---- stereo --------------------------------------------------------------------------------------------


STEREO_STRIDE = 3  # stereo costs seconds per frame on 2 cores: the ScanNet stereo maps use every 3rd frame


def _stereo_rows(ctx: BenchContext) -> list:
    from lift3d.stereo import StereoDepthSource
    from scene.datasets import open_dataset

    rows = []
    for name in SCANNET_SCENES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                source = open_dataset(ctx.data_set(name), stride=STEREO_STRIDE, stop=sizes(ctx).real_frames)
        except Exception as exc:  # a missing data set must not hide the synthetic figures
            ctx.log(f"  stereo on {name} skipped: {exc}")
            continue
        stereo = StereoDepthSource(source)
        picks = range(0, len(source), max(1, len(source) // 20))
        rows.append(_depth_errors(f"{name} vs sensor depth", ((stereo[k].depth, source[k].depth) for k in picks),
                                  len(picks)))
        rows[-1].update(_stereo_box_ap(ctx, name, source, stereo))
    scene = synthetic_scene(ctx, "room", True, sizes(ctx).seeds[0])
    stereo = StereoDepthSource(scene.source())
    picks = range(0, len(scene), max(1, len(scene) // 24))
    rows.append(_depth_errors("room-noisy vs true depth", ((stereo[k].depth, scene.render_clean(k).depth)
                                                           for k in picks), len(picks)))
    rows[-1].update(_stereo_map_ap(ctx, scene, stereo))
    return rows


def _stereo_box_ap(ctx: BenchContext, name: str, source, stereo) -> dict:
    """Non-structure box AP25 / AP50 of the refined voxel map with sensor depth and with stereo depth."""
    from scene.eval import box_ap

    gt, align, _ = read_gt_boxes(ctx.data_set(name) / "gt_boxes.json")
    out = {}
    for label, frames in (("sensor", source), ("stereo", stereo)):
        ctx.log(f"  voxel map of {name} (every {STEREO_STRIDE}rd frame) with {label} depth")
        imap = _map_frames_with_depth(frames)
        boxes, scores = aligned_boxes(imap, align, False)
        result = box_ap(gt, boxes, scores)
        out[f"box_ap25_{label}"], out[f"box_ap50_{label}"] = result.ap25, result.ap50
    return out


def _map_frames_with_depth(frames):
    """The default pipeline's refined map of the frames that hold any depth (stereo leaves some empty)."""
    from scene.config import MapperConfig
    from scene.pipeline import Mapper

    mapper = Mapper(MapperConfig())
    for frame in frames:
        if np.any(frame.depth > 0):
            mapper.integrate(frame)
    imap = mapper.finalize()
    mapper.close()
    return imap


def _depth_errors(name: str, pairs, count: int) -> dict:
    abs_err, rel_err, coverage, partnered = [], [], [], 0
    for estimate, reference in pairs:
        valid = reference > 0
        both = valid & (estimate > 0)
        partnered += int(np.any(estimate > 0))
        coverage.append(float(both.sum() / max(valid.sum(), 1)))
        abs_err.append(np.abs(estimate[both] - reference[both]))
        rel_err.append(abs_err[-1] / reference[both])
    a, r = np.concatenate(abs_err), np.concatenate(rel_err)
    return {"comparison": name, "frames": count, "frames_with_partner": partnered,
            "median_abs_m": float(np.median(a)) if a.size else float("nan"),
            "median_rel": float(np.median(r)) if r.size else float("nan"),
            "within_5pct": float(np.mean(r < 0.05)) if r.size else 0.0,
            "within_10pct": float(np.mean(r < 0.10)) if r.size else 0.0,
            "coverage": float(np.mean(coverage))}


def _stereo_map_ap(ctx: BenchContext, scene, stereo) -> dict:
    from scene.eval import ScenePredictions, evaluate_scenes

    gt = scene.gt_points()
    seen = scene.gt_observed(gt, stride=OBSERVED_STRIDE)
    xyz, ids = gt.xyz[seen], gt.ids[seen].astype(np.int64)
    out = {}
    for label, frames in (("sensor", scene.frames()), ("stereo", iter(stereo))):
        ctx.log(f"  voxel map of room-noisy with {label} depth")
        imap = _map_frames_with_depth(frames)
        labels = imap.label_points(xyz.astype(np.float64), label_distance(imap.metadata.voxel_size))
        objects = np.unique(labels[labels >= 0])
        masks = labels[None, :] == objects[:, None]
        scores = np.array([imap.get(int(i)).confidence for i in objects], np.float64)
        result = evaluate_scenes([ScenePredictions(ids, masks, scores, label)])
        out[f"map_ap_{label}"], out[f"map_ap50_{label}"] = result.ap, result.ap50
    return out


def markdown(data: dict) -> str:
    box_cols = ["scene", "labels", "all_ap25", "all_ap50", "all_pred", "nonstructure_ap25", "nonstructure_ap50",
                "nonstructure_pred", "num_gt"]
    box_heads = ["scene", "labels", "AP25", "AP50", "pred", "AP25 (non-structure)", "AP50 (non-structure)", "pred", "GT"]
    syn_cols = ["scene", "depth", "labels", "all_ap", "all_ap50", "all_ap25", "objects_ap", "objects_ap50", "objects_ap25"]
    syn_heads = ["scene", "depth", "labels", "AP (all)", "AP50 (all)", "AP25 (all)", "AP (obj)", "AP50 (obj)", "AP25 (obj)"]
    rgb_cols = ["scene", "seeds", "ap_sensor", "ap_mesh", "ap_gap", "ap50_sensor", "ap50_mesh", "ap50_gap"]
    st_cols = ["comparison", "frames", "frames_with_partner", "median_abs_m", "median_rel", "within_5pct",
               "within_10pct", "coverage", "map_ap_sensor", "map_ap_stereo", "map_ap50_sensor", "map_ap50_stereo",
               "box_ap25_sensor", "box_ap25_stereo", "box_ap50_sensor", "box_ap50_stereo"]
    t_cols = ["run", "vertices", "num_superpoints", "frames", "superpoints", "depth", "projection", "graph", "lift", "fusion",
              "clustering", "graph_clustering", "consensus_clustering", "objects", "segment", "scan_only_without_masks",
              "total_without_masks", "command_wall_without_masks", "command_cpu_without_masks", "same_labels"]
    return "\n\n".join([
        data["protocol"],
        "Box AP on ScanNet (class-agnostic, 18-class GT boxes):\n\n" + markdown_table(data["boxes"], box_cols, box_heads),
        "Instance AP on the synthetic scan's vertices:\n\n" + markdown_table(data["synthetic"], syn_cols, syn_heads),
        "RGB-only input (depth rendered from the mesh) against RGB-D, scan mode, mean over the seeds:\n\n"
        + markdown_table(data.get("rgb_only", []), rgb_cols, rgb_cols),
        "Stereo depth:\n\n" + markdown_table(data["stereo"], st_cols, st_cols),
        f"Time per stage (seconds, summed over the run; peak RSS of the process "
        f"{data['peak_rss_bytes'] / 2**20:.0f} MiB):\n\n" + markdown_table(data["timings"], t_cols, t_cols),
    ])
