"""ScanNet's instance-prediction files, and its ground-truth id files.

Predictions for one scene (``ROOT/<scene>.txt``), one line per predicted instance::

    pred_mask/<scene>_000.txt 1 0.912

(mask path relative to the scene file's folder, label id, confidence), and each mask file holds one
integer per mesh vertex, in the mesh's vertex order: non-zero means the vertex belongs to the instance.
Ground-truth files hold one ``label_id * 1000 + instance`` per vertex (``label_id`` alone for vertices of
a class without an instance, 0 for unannotated ones).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MASK_FOLDER = "pred_mask"
# The 18 classes of ScanNet's instance benchmark (evaluate_semantic_instance.py's VALID_CLASS_IDS).
SCANNET_VALID_CLASS_IDS = np.array([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39], np.int64)


@dataclass
class ScanNetPredictions:
    """``masks`` P x N bool (N vertices), ``label_ids`` P int64, ``scores`` P float64, ``mask_files`` P paths."""

    masks: np.ndarray
    label_ids: np.ndarray
    scores: np.ndarray
    mask_files: list[Path]


def write_predictions(
    root: str | Path, scene: str, masks: np.ndarray, scores: np.ndarray, label_ids: np.ndarray | None = None
) -> Path:
    """Write ``root/<scene>.txt`` and ``root/pred_mask/<scene>_<k:03d>.txt``; returns the scene file.

    ``masks`` P x N bool over the mesh vertices; ``label_ids`` default to 1 (class-agnostic).
    """
    masks = np.asarray(masks)
    if masks.ndim != 2 or masks.dtype != bool:
        raise ValueError(f"write_predictions({scene!r}): masks must be P x N bool, got {masks.dtype} {masks.shape}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.ones(len(masks), np.int64) if label_ids is None else np.asarray(label_ids, np.int64).reshape(-1)
    if len(scores) != len(masks) or len(labels) != len(masks):
        raise ValueError(
            f"write_predictions({scene!r}): {len(masks)} masks, {len(scores)} scores, {len(labels)} label ids"
        )
    if any(c.isspace() for c in scene) or "/" in scene:
        raise ValueError(f"write_predictions: scene name {scene!r} must not contain spaces or slashes")
    root = Path(root)
    (root / MASK_FOLDER).mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (mask, label, score) in enumerate(zip(masks, labels, scores)):
        relative = f"{MASK_FOLDER}/{scene}_{k:03d}.txt"
        _write_mask(root / relative, mask)
        lines.append(f"{relative} {int(label)} {float(score)!r}\n")
    scene_file = root / f"{scene}.txt"
    scene_file.write_text("".join(lines))
    return scene_file


def read_predictions(scene_file: str | Path, num_vertices: int) -> ScanNetPredictions:
    """Read a scene's prediction file and its masks, checking each mask has ``num_vertices`` lines."""
    scene_file = Path(scene_file)
    if not scene_file.is_file():
        raise FileNotFoundError(f"prediction file {scene_file} does not exist")
    lines = scene_file.read_text().splitlines()
    entries = [_parse_line(scene_file, i, line) for i, line in enumerate(lines, 1) if line.strip()]
    mask_files = [scene_file.parent / relative for relative, _, _ in entries]
    masks = np.zeros((len(entries), num_vertices), bool)
    for k, path in enumerate(mask_files):
        masks[k] = _read_ids(path, num_vertices, f"mask file {path} (listed in {scene_file})") != 0
    labels = np.array([label for _, label, _ in entries], np.int64)
    scores = np.array([score for _, _, score in entries], np.float64)
    return ScanNetPredictions(masks, labels, scores, mask_files)


def read_gt_ids(path: str | Path, num_vertices: int | None = None) -> np.ndarray:
    """One ScanNet ground-truth id per vertex (``label * 1000 + instance``), int64."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file {path} does not exist")
    return _read_ids(path, num_vertices, f"ground-truth file {path}")


def class_agnostic_gt(scannet_ids: np.ndarray, valid_class_ids: np.ndarray = SCANNET_VALID_CLASS_IDS) -> np.ndarray:
    """ScanNet ids -> this package's convention (``scene.eval.instance_ap``), as the script sees them.

    Instances of valid classes keep their id; vertices of a valid class without an instance become void
    (0: the script's ``void_intersection``); everything else (unannotated, walls, floors, other classes)
    becomes background (-1: predictions there count as false positives).
    """
    ids = np.asarray(scannet_ids, dtype=np.int64)
    instance = (ids >= 1000) & np.isin(ids // 1000, valid_class_ids)
    void = np.isin(ids, valid_class_ids)
    return np.where(instance, ids, np.where(void, 0, -1))


def _write_mask(path: Path, mask: np.ndarray) -> None:
    """'0\\n' / '1\\n' per vertex, built as one byte array."""
    text = np.full(2 * len(mask), ord("\n"), np.uint8)
    text[0::2] = ord("0") + mask.astype(np.uint8)
    path.write_bytes(text.tobytes())


def _read_ids(path: Path, expected: int | None, what: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{what} does not exist")
    lines = path.read_bytes().split()
    if expected is not None and len(lines) != expected:
        raise ValueError(f"{what} has {len(lines)} values, expected {expected} (one per mesh vertex)")
    try:
        return np.array(lines, dtype=np.int64)
    except ValueError as error:
        raise ValueError(f"{what} holds a value that is not an integer: {error}") from None


def _parse_line(scene_file: Path, number: int, line: str) -> tuple[str, int, float]:
    parts = line.split()
    where = f"{scene_file}, line {number}"
    if len(parts) != 3:
        raise ValueError(f"{where}: expected '<relative mask path> <label id> <confidence>', got {line!r}")
    relative, label, score = parts
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise ValueError(f"{where}: mask path {relative!r} must be relative and stay inside {scene_file.parent}")
    try:
        return relative, int(float(label)), float(score)
    except ValueError:
        raise ValueError(f"{where}: label id {label!r} or confidence {score!r} is not a number") from None
