"""``scene demo``: everything end to end on a generated scene, with no data and no weights.

Generates a noisy synthetic room with ground truth, writes it in the project's layout, maps it from disk
with the default (geometric) mask generator (online association, then the global refinement), evaluates
the online and the refined map (ScanNet-style class-agnostic 3D instance AP on the GT surface points) and
the 2D masks (recall against the GT instance images), and writes pictures and a short report
(report.md / report.json) with the numbers and timings.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write PNG")
    return path


def run_demo(out: Path, preset: str = "room-noisy", seed: int = 0, num_frames: int = 60, width: int = 640,
             height: int = 480, log=print) -> dict:
    """Run the demo into folder ``out``; returns the report as a dict (also written as JSON and Markdown)."""
    from scene.datasets import open_dataset
    from scene.datasets.synthetic import make_scene, render_contact_sheet, write_scene

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"preset": preset, "seed": seed, "frames": num_frames, "image_size": [width, height]}

    t0 = time.perf_counter()
    scene = make_scene(preset, seed=seed, num_frames=num_frames, width=width, height=height)
    objects = scene.gt_objects()
    structure_ids = [o.id for o in objects if o.is_structure]
    report["objects"] = sum(not o.is_structure for o in objects)
    report["structure"] = len(structure_ids)
    log(f"[demo] generated '{scene.name}' (seed {seed}): {report['objects']} objects, "
        f"{report['structure']} structure parts, {len(scene)} frames at {width}x{height}")
    progress = _progress(log, "rendering and writing frames")
    dataset_dir = write_scene(scene, out / "dataset", frames=_logged(scene.frames(), len(scene), progress))
    report["generate_and_write_s"] = round(time.perf_counter() - t0, 2)
    log(f"[demo] wrote the dataset to {dataset_dir} in {report['generate_and_write_s']} s")

    picks = sorted({0, len(scene) // 3, 2 * len(scene) // 3, len(scene) - 1})
    source = open_dataset(dataset_dir)
    sheet = render_contact_sheet([source[i] for i in picks], out / "frames.png")
    log(f"[demo] contact sheet (RGB | depth | GT instances): {sheet}")

    mapper, picked, online_ap, mapping, id_frames = _map(source, out / "map.sqlite", picks, scene, structure_ids, log)
    report["mapping"] = mapping
    report["online_map"] = online_ap
    t = time.perf_counter()
    imap = mapper.finalize()
    mapper.close()
    report["mapping"]["refine_and_save_s"] = round(time.perf_counter() - t, 2)
    report["refined_map"] = _instance_ap(imap, scene, structure_ids)
    report["refined_map"]["num_objects"] = len(imap)
    log(f"[demo] refined map: {len(imap)} objects; instance AP (all / objects): "
        f"{report['refined_map']['all_instances']['ap']:.3f} / {report['refined_map']['objects']['ap']:.3f}, "
        f"AP50 {report['refined_map']['all_instances']['ap50']:.3f} / {report['refined_map']['objects']['ap50']:.3f} "
        f"(online: {online_ap['all_instances']['ap']:.3f} / {online_ap['objects']['ap']:.3f})")

    report["segment2d"] = _mask_recall(picked, mapper.generator.name, mapping)
    log(f"[demo] 2D masks ({report['segment2d']['generator']}): recall@0.5 {report['segment2d']['recall_at_0.5']:.3f}, "
        f"AR {report['segment2d']['average_recall_0.5_0.95']:.3f}")
    report["pictures"] = _pictures(out, picked, imap, log) + _video(out, id_frames, imap, log)
    report["map_file"] = str(out / "map.sqlite")
    report["total_s"] = round(time.perf_counter() - t0, 2)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(_markdown(report))
    log(f"[demo] report: {out / 'report.md'} (total {report['total_s']} s)")
    return report


def _map(source, path: Path, picks: list[int], scene, structure_ids: list[int], log):
    """Integrate every frame; keep the picked frames with their masks and persistent ids; evaluate the
    online map before the refinement. Returns (mapper, picked, online AP, mapping stats, id frames): the
    id frames are (colour, H x W object-id image) per frame, for the video of the run."""
    from scene.config import MapperConfig
    from scene.pipeline import STAGES, Mapper

    path.unlink(missing_ok=True)
    mapper = Mapper(MapperConfig(up=(0.0, 0.0, 1.0)), path)
    mapper.map.metadata.source_path, mapper.map.metadata.source_format = str(source.root), source.format_name
    progress = _progress(log, "mapping")
    picked, timings, id_frames = [], [], []
    start = time.perf_counter()
    for done, frame in enumerate(source, 1):
        result = mapper.integrate(frame)
        timings.append(result.timings)
        id_frames.append((frame.color, _id_image(result)))
        if frame.index in picks:
            picked.append((frame, result))
        progress(done, len(source), f"{result.num_objects} objects")
    seconds = time.perf_counter() - start
    mapping = {
        "frames": len(source), "seconds": round(seconds, 2), "frames_per_s": round(len(source) / seconds, 2),
        "median_ms": {s: round(1000 * float(np.median([t[s] for t in timings])), 1) for s in STAGES},
        "masks_per_frame": round(float(np.mean([len(r.masks) for _, r in picked])), 1),
    }
    online = _instance_ap(mapper.map, scene, structure_ids)
    online["num_objects"] = len(mapper.map)
    return mapper, picked, online, mapping, id_frames


def _id_image(result) -> np.ndarray:
    """H x W int32 image of the frame's persistent object ids (-1: no object); small masks on top."""
    kept = np.flatnonzero(result.object_ids >= 0)
    image = np.full(result.masks.image_size, -1, np.int32)
    for i in kept[np.argsort(-result.masks.areas[kept], kind="stable")]:
        image[result.masks.masks[i]] = result.object_ids[i]
    return image


def _resolve_ids(imap, id_image: np.ndarray) -> np.ndarray:
    """Map every id of an id image to the id it has in the final map (-1 stays -1)."""
    unique, inverse = np.unique(id_image, return_inverse=True)
    current = np.array([imap.resolve_id(i) if i >= 0 else -1 for i in unique], np.int64)
    return current[inverse].reshape(id_image.shape)


def _video(out: Path, id_frames, imap, log) -> list[str]:
    """The whole run as MP4: every frame's masks coloured and labelled by persistent id (named as in the
    final map, so merged ids show as the id they became)."""
    from viz.video import masks_from_id_image, overlay_sequence, write_video

    resolved = [(color, _resolve_ids(imap, ids)) for color, ids in id_frames]
    split = [masks_from_id_image(ids) for _, ids in resolved]
    frames = overlay_sequence((c for c, _ in resolved), (m for m, _ in split), (i for _, i in split),
                              captions=(f"frame {k}" for k in range(len(resolved))))
    write_video(frames, out / "run.mp4", fps=10.0)
    log(f"[demo] video of the run with persistent ids: {out / 'run.mp4'}")
    return ["run.mp4"]


def _instance_ap(imap, scene, structure_ids: list[int]) -> dict:
    from scene.eval import map_instance_ap, objects_only

    xyz, ids, _ = scene.observed_gt_points()
    distance = 2 * imap.metadata.voxel_size
    keep = ("ap", "ap50", "ap25", "num_gt", "num_pred")
    return {
        "all_instances": {k: _rounded(v) for k, v in map_instance_ap(imap, xyz, ids, distance).items() if k in keep},
        "objects": {k: _rounded(v) for k, v in
                    map_instance_ap(imap, xyz, objects_only(ids, structure_ids), distance).items() if k in keep},
    }


def _rounded(value):
    return round(float(value), 3) if isinstance(value, float) else value


def _mask_recall(picked, generator_name: str, mapping: dict) -> dict:
    from scene.eval import MaskRecall, mask_recall

    pooled = MaskRecall.concatenate([mask_recall(f.instance_ids, r.masks, min_area=200)
                                     for f, r in picked if f.instance_ids is not None])
    return {
        "generator": generator_name, "frames_scored": len(picked),
        "median_ms_per_frame": mapping["median_ms"]["segment"],
        "masks_per_frame": mapping["masks_per_frame"],
        "recall_at_0.5": round(float(pooled.recall[0]), 3),
        "average_recall_0.5_0.95": round(float(pooled.average_recall), 3),
        "mean_best_iou": round(float(pooled.mean_best_iou), 3),
    }


def _pictures(out: Path, picked, imap, log) -> list[str]:
    """Mask overlays coloured and labelled by persistent object id (as named in the final map), and map
    renders when ``viz.render`` is available."""
    from viz.overlay import overlay_masks

    written = ["frames.png"]
    for frame, result in picked:
        kept = np.flatnonzero(result.object_ids >= 0)
        ids = np.array([imap.resolve_id(i) for i in result.object_ids[kept]], np.int64)
        overlay = overlay_masks(frame.color, result.masks.masks[kept], ids=ids)
        name = f"masks_{frame.index:04d}.png"
        _write_png(out / name, np.concatenate([frame.color, overlay], axis=1))
        written.append(name)
    log(f"[demo] mask overlays with persistent ids: {', '.join(written[1:])}")
    written += _map_renders(out, imap, log)
    return written


def _map_renders(out: Path, imap, log) -> list[str]:
    try:
        from viz.render import render_perspective, render_top_down, save_png
    except ImportError as exc:
        log(f"[demo] no map render ({exc})")
        return []
    names = []
    for name, render in (("map_top.png", render_top_down), ("map_view.png", render_perspective)):
        try:
            save_png(out / name, render(imap))
            names.append(name)
        except (TypeError, ValueError, AttributeError) as exc:  # viz is developed alongside; never fail the demo
            log(f"[demo] map render {name} failed: {exc}")
    if names:
        log(f"[demo] map renders: {', '.join(names)}")
    return names


def _logged(items, total: int, progress):
    for done, item in enumerate(items, 1):
        yield item
        progress(done, total)


def _progress(log, what: str):
    start = time.perf_counter()

    def update(done: int, total: int, note: str = "") -> None:
        if done == total or done % max(1, total // 10) == 0:
            rate = done / max(time.perf_counter() - start, 1e-9)
            log(f"[demo]   {what}: {done}/{total} ({rate:.1f} frames/s){', ' + note if note else ''}")

    return update


def _markdown(report: dict) -> str:
    seg, mapping = report["segment2d"], report["mapping"]
    online, refined = report["online_map"], report["refined_map"]
    stages = ", ".join(f"{k} {v} ms" for k, v in mapping["median_ms"].items())

    def row(name: str, result: dict) -> str:
        a, o = result["all_instances"], result["objects"]
        return (f"| {name} | {result['num_objects']} | {a['ap']} | {a['ap50']} | {a['ap25']} | "
                f"{o['ap']} | {o['ap50']} | {o['ap25']} |")

    return "\n".join([
        f"# scene demo: {report['preset']} (seed {report['seed']})",
        "",
        f"- {report['objects']} objects and {report['structure']} structure parts, {report['frames']} frames at "
        f"{report['image_size'][0]}x{report['image_size'][1]}, generated and written in {report['generate_and_write_s']} s",
        f"- mapping: {mapping['frames_per_s']} frames/s ({mapping['seconds']} s); per frame (median): {stages}; "
        f"refinement and final save {mapping['refine_and_save_s']} s; total {report['total_s']} s",
        f"- 2D masks by `{seg['generator']}` ({seg['masks_per_frame']} per frame): recall at IoU 0.5 = "
        f"{seg['recall_at_0.5']}, average recall 0.5:0.95 = {seg['average_recall_0.5_0.95']}, "
        f"mean best IoU = {seg['mean_best_iou']} ({seg['frames_scored']} frames)",
        "",
        "3D instance AP (ScanNet class-agnostic protocol on the GT surface points; each point takes the map object "
        "within 2 voxels; 'objects' makes floor, walls and ceiling void):",
        "",
        "| map | objects | AP | AP50 | AP25 | objects AP | objects AP50 | objects AP25 |",
        "|---|---|---|---|---|---|---|---|",
        row("online", online),
        row("refined", refined),
        "",
        "Pictures: `frames.png` (RGB | depth | ground-truth instances), `masks_NNNN.png` (frame | masks coloured "
        "and labelled by persistent object id), `map_top.png` / `map_view.png` (map renders), `run.mp4` (every frame's "
        "masks with persistent ids). Map file: `map.sqlite` (try `scene info`, `scene query`, `scene view`).",
        "",
    ])
