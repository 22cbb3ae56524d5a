"""Scoring a whole ``InstanceMap`` against ground truth: instance AP on labelled points (a project-layout
folder's ``gt/points.npz``, or per-vertex ids of a scan) and 3D box AP against a ``gt_boxes.json``.

Every evaluator returns plain dicts (JSON-ready) with a ``protocol`` line saying what was measured.
Units: metres, the map's world frame (boxes: after the file's ``axis_align_matrix``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scene.datasets import ProjectSource
from scene.eval.box_ap import SceneBoxes, evaluate_box_scenes
from scene.eval.instance_ap import ScenePredictions, evaluate_scenes, objects_only
from scene.eval.scannet_format import class_agnostic_gt


class EvaluationError(ValueError):
    """Ground truth that cannot be used (missing, malformed, not matching the points): names the file."""


def map_instance_ap(imap, xyz: np.ndarray, gt_ids: np.ndarray, max_distance: float) -> dict:
    """ScanNet-style class-agnostic AP of the map on labelled points (N x 3 metres, world frame): every
    point takes the id of the nearest map point within ``max_distance``; each object is one prediction
    scored by its confidence. ``gt_ids``: N ints, 0 = void. Returns ``InstanceAP.as_dict()``."""
    return evaluate_scenes([instance_predictions(imap, xyz, gt_ids, max_distance)]).as_dict()


def instance_predictions(imap, xyz: np.ndarray, gt_ids: np.ndarray, max_distance: float,
                         name: str = "scene") -> ScenePredictions:
    """The map's objects as one scene's predictions on labelled points (see ``map_instance_ap``)."""
    labels = imap.label_points(np.asarray(xyz, np.float64), max_distance)
    ids = np.unique(labels[labels >= 0])
    masks = labels[None, :] == ids[:, None]
    scores = np.array([imap.get(i).confidence for i in ids], np.float64)
    return ScenePredictions(np.asarray(gt_ids, np.int64), masks, scores, name=name)


def evaluate_on_project_gt(imap, root: Path, max_distance: float) -> dict:
    """AP / AP50 / AP25 on a project-layout folder's ``gt/points.npz``: all instances, and objects only
    (structure from ``gt/objects.json`` made void)."""
    source = ProjectSource(root)
    points = source.gt_points()
    if points is None:
        raise EvaluationError(f"{root}: no gt/points.npz there")
    structure = [o.id for o in (source.gt_objects() or []) if o.is_structure]
    return {
        "all_instances": map_instance_ap(imap, points.xyz, points.ids, max_distance),
        "objects": map_instance_ap(imap, points.xyz, objects_only(points.ids, structure), max_distance),
        "protocol": f"ScanNet class-agnostic AP on {len(points.xyz)} GT surface points, map labels within "
                    f"{max_distance:g} m; 'objects' makes structure void",
    }


def evaluate_on_point_ids(imap, ids_path: Path, vertices_path: Path, max_distance: float) -> dict:
    """AP on per-vertex GT ids aligned with ``vertices_path``. Ids >= 1000 are read as ScanNet's
    ``label * 1000 + instance`` encoding (18 benchmark classes kept); smaller ids as plain instance ids."""
    from scene.export import read_vertices  # scene.export imports scene.eval: not at module level

    xyz, _ = read_vertices(vertices_path)
    if ids_path.suffix.lower() == ".npy":
        gt = np.load(ids_path)
    else:
        gt = np.loadtxt(ids_path, dtype=np.int64, ndmin=1)
    gt = np.asarray(gt).reshape(-1)
    if len(gt) != len(xyz) or not np.issubdtype(gt.dtype, np.integer):
        raise EvaluationError(f"{ids_path}: need {len(xyz)} integer ids (one per vertex of {vertices_path}), "
                       f"got {gt.dtype} x {len(gt)}")
    if gt.max(initial=0) >= 1000:
        gt = class_agnostic_gt(gt)
    return {"instances": map_instance_ap(imap, xyz, gt, max_distance),
            "protocol": f"ScanNet class-agnostic AP on {len(xyz)} vertices, map labels within {max_distance:g} m"}


def read_gt_boxes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(G x 6 min/max boxes in the aligned frame, 4 x 4 axis_align_matrix) from a gt_boxes.json."""
    try:
        data = json.loads(path.read_text())
        boxes = [(np.asarray(b["center_aligned"], np.float64), np.asarray(b["size"], np.float64))
                 for b in data["boxes"]]
        matrix = np.asarray(data.get("axis_align_matrix", np.eye(4)), np.float64).reshape(4, 4)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvaluationError(f"{path}: not a gt_boxes.json with 'boxes' (center_aligned, size): {exc}") from None
    gt = np.array([np.concatenate([c - s / 2, c + s / 2]) for c, s in boxes], np.float64).reshape(-1, 6)
    return gt, matrix


def evaluate_boxes(imap, path: Path, include_structure: bool = False) -> dict:
    """Box AP25/AP50 of the map objects' AABBs (after ``axis_align_matrix``) against the GT boxes."""
    scene = scene_boxes(imap, path, include_structure)
    result = evaluate_box_scenes([scene]).as_dict()
    return {"boxes": result, "protocol": f"VOC-style 3D box AP of {len(scene.pred_boxes)} object AABBs "
            f"({'with' if include_structure else 'without'} structure) vs {len(scene.gt_boxes)} GT boxes, "
            f"axis-aligned frame"}


def scene_boxes(imap, path: Path, include_structure: bool = False, name: str = "scene") -> SceneBoxes:
    """The map objects' AABBs (after the GT file's ``axis_align_matrix``) and the file's GT boxes."""
    gt, matrix = read_gt_boxes(path)
    objects = [o for o in imap if include_structure or not o.is_structure]
    boxes = np.zeros((len(objects), 6), np.float64)
    for k, o in enumerate(objects):
        aligned = o.points.astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
        boxes[k] = np.concatenate([aligned.min(0), aligned.max(0)])
    scores = np.array([o.confidence for o in objects], np.float64)
    return SceneBoxes(gt, boxes, scores, name=name)


def evaluate_pooled(scenes, max_distance: float | None = None, include_structure: bool = False) -> dict:
    """AP pooled over several mapped scenes, as ScanNet's benchmark pools its scenes (all detections of all
    scenes ranked together, each matched in its own scene). ``scenes``: (name, map file, input folder)
    triples; box AP over the inputs holding ``gt_boxes.json``, instance AP (all instances and objects
    only) over those with a project-layout ``gt/points.npz``; ``max_distance`` defaults to 2 voxels."""
    from scene.storage import MapStore

    boxes, instances, objects, without = [], [], [], []
    for name, map_path, source in scenes:
        source = Path(source)
        has_boxes, has_points = (source / "gt_boxes.json").is_file(), (source / "gt" / "points.npz").is_file()
        if not (has_boxes or has_points):
            without.append(name)
            continue
        with MapStore(map_path, read_only=True) as store:
            imap = store.load()
        if has_boxes:
            boxes.append(scene_boxes(imap, source / "gt_boxes.json", include_structure, name))
            continue
        project = ProjectSource(source)
        points = project.gt_points()
        structure = [o.id for o in (project.gt_objects() or []) if o.is_structure]
        distance = max_distance if max_distance is not None else 2 * imap.metadata.voxel_size
        instances.append(instance_predictions(imap, points.xyz, points.ids, distance, name))
        objects.append(instance_predictions(imap, points.xyz, objects_only(points.ids, structure), distance, name))
    if not boxes and not instances:
        raise EvaluationError(f"no scene has ground truth (gt_boxes.json or gt/points.npz in its input): "
                              f"{', '.join(without) or 'no scenes'}")
    results = {}
    if boxes:
        results["boxes"] = {**evaluate_box_scenes(boxes).as_dict(), "scenes": len(boxes)}
    if instances:
        results["all_instances"] = {**evaluate_scenes(instances).as_dict(), "scenes": len(instances)}
        results["objects"] = {**evaluate_scenes(objects).as_dict(), "scenes": len(objects)}
    results["protocol"] = (f"pooled over scenes (one ranking of all detections, each matched in its own scene): "
                           f"boxes {[s.name for s in boxes]}, instances {[s.name for s in instances]} ('objects' "
                           f"makes structure void); no ground truth: {without or 'none'}")
    return results
