"""Exports of an ``InstanceMap``: instance-coloured PLY point clouds, instance-labelled mesh PLYs,
ScanNet instance-prediction files for a scan's vertices, and a JSON summary of the objects.

PLY files are written as binary little-endian with numpy alone. Coordinates: metres, the map's world frame.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scene.eval.scannet_format import write_predictions
from scene.map import NO_OBJECT, InstanceMap

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def instance_colors(ids: np.ndarray) -> np.ndarray:
    """A deterministic, well-spread RGB (N x 3 uint8) per instance id; -1 (no object) is black.

    Hues step by the golden ratio (HSV with saturation 0.75, value 0.95, converted in closed form).
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    hue = (ids.astype(np.float64) * 0.61803398875) % 1.0
    value, saturation = 0.95, 0.75
    k = (np.array([5.0, 3.0, 1.0]) + hue[:, None] * 6.0) % 6.0
    rgb = value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    rgb = np.round(rgb * 255.0).astype(np.uint8)
    rgb[ids == NO_OBJECT] = 0
    return rgb


# --------------------------------------------------------------------------------------------------
# PLY writing


def write_instance_ply(imap: InstanceMap, path: str | Path, color_by: str = "instance") -> Path:
    """All map points as a binary PLY: x y z (float32), red green blue (uchar), instance (int32 id).

    ``color_by``: "instance" (a colour per object) or "rgb" (the points' own colours).
    """
    if color_by not in ("instance", "rgb"):
        raise ValueError(f"write_instance_ply({path}): color_by must be 'instance' or 'rgb', got {color_by!r}")
    objects = list(imap)
    xyz = np.concatenate([o.points for o in objects]) if objects else np.zeros((0, 3), np.float32)
    ids = np.repeat(np.array([o.id for o in objects], np.int64), [o.num_points for o in objects])
    colors = instance_colors(ids) if color_by == "instance" else (
        np.concatenate([o.colors for o in objects]) if objects else np.zeros((0, 3), np.uint8))
    return _write_ply(Path(path), _vertex_records(xyz, colors, ids), None)


def write_mesh_ply(
    path: str | Path, vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray | None = None,
    instance_ids: np.ndarray | None = None,
) -> Path:
    """A triangle mesh as binary PLY with per-vertex colour and instance id (-1 = none).

    ``vertices`` V x 3 metres, ``triangles`` T x 3 vertex indices, ``colors`` V x 3 uint8 (default:
    coloured by instance), ``instance_ids`` V integers (default -1).
    """
    path = Path(path)
    xyz = np.asarray(vertices, dtype=np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"write_mesh_ply({path}): vertices must be V x 3, got shape {xyz.shape}")
    faces = np.asarray(triangles)
    if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and (faces.min() < 0 or faces.max() >= len(xyz))):
        raise ValueError(f"write_mesh_ply({path}): triangles must be T x 3 indices into {len(xyz)} vertices")
    ids = np.full(len(xyz), NO_OBJECT, np.int64) if instance_ids is None else np.asarray(instance_ids, np.int64)
    if ids.shape != (len(xyz),):
        raise ValueError(f"write_mesh_ply({path}): instance_ids must hold {len(xyz)} values, got {ids.shape}")
    rgb = instance_colors(ids) if colors is None else np.asarray(colors)
    if rgb.shape != (len(xyz), 3):
        raise ValueError(f"write_mesh_ply({path}): colors must be {len(xyz)} x 3, got shape {rgb.shape}")
    face_records = np.empty(len(faces), dtype=[("count", "u1"), ("vertex_indices", "<i4", (3,))])
    face_records["count"], face_records["vertex_indices"] = 3, faces
    return _write_ply(path, _vertex_records(xyz, rgb.astype(np.uint8), ids), face_records)


def _vertex_records(xyz: np.ndarray, rgb: np.ndarray, ids: np.ndarray) -> np.ndarray:
    records = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                                        ("blue", "u1"), ("instance", "<i4")])
    records["x"], records["y"], records["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    records["red"], records["green"], records["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    records["instance"] = ids
    return records


def _write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray | None) -> Path:
    names = {"<f4": "float", "u1": "uchar", "<i4": "int", "|u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", "comment scene-seg instance map",
              f"element vertex {len(vertices)}"]
    header += [f"property {names[vertices.dtype[n].str]} {n}" for n in vertices.dtype.names]
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(("\n".join(header + ["end_header"]) + "\n").encode("ascii"))
        handle.write(vertices.tobytes())
        if faces is not None:
            handle.write(faces.tobytes())
    return path


# --------------------------------------------------------------------------------------------------
# Reading vertex files


def read_vertices(path: str | Path, columns: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices of a scan: (xyz V x 3 float32 metres, rgb V x 3 uint8 or None).

    Reads a PLY (ascii or binary; the vertex element's x, y, z and red, green, blue properties) or a raw
    float32 little-endian ``.bin`` of V x 6 (x y z r g b) or V x 3 rows. For ``.bin`` the layout comes
    from ``columns`` or, when None, from the data: 6 columns when the value count divides by 6 and every
    4th-6th value is an integer colour in 0..255, else 3.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vertex file {path} does not exist")
    if path.suffix.lower() == ".ply":
        return _read_ply_vertices(path)
    if path.suffix.lower() == ".bin":
        return _read_bin_vertices(path, columns)
    raise ValueError(f"vertex file {path}: unknown extension {path.suffix!r} (expected .ply or .bin)")


def _read_bin_vertices(path: Path, columns: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    size = path.stat().st_size
    if size % 4 or (size // 4) % 3:
        raise ValueError(f"vertex file {path}: {size} bytes is not a whole number of float32 N x 3 or N x 6 rows")
    values = np.fromfile(path, dtype="<f4")
    if columns not in (None, 3, 6):
        raise ValueError(f"vertex file {path}: columns must be 3, 6 or None, got {columns!r}")
    if columns == 6 and len(values) % 6:
        raise ValueError(f"vertex file {path}: {len(values)} float32 values do not form N x 6 rows")
    if columns is None:
        columns = 6 if len(values) % 6 == 0 and _looks_like_colors(values.reshape(-1, 6)[:, 3:]) else 3
    table = values.reshape(-1, columns)
    xyz = np.ascontiguousarray(table[:, :3], dtype=np.float32)
    if not np.all(np.isfinite(xyz)):
        raise ValueError(f"vertex file {path}: coordinates hold non-finite values")
    rgb = np.clip(np.round(table[:, 3:6]), 0, 255).astype(np.uint8) if columns == 6 else None
    return xyz, rgb


def _looks_like_colors(values: np.ndarray) -> bool:
    return bool(np.all((values >= 0) & (values <= 255) & (values == np.round(values))))


def read_ply_vertex_properties(path: str | Path) -> dict[str, np.ndarray]:
    """Every scalar property of a PLY's vertex element (ascii or binary), by name, e.g. the ``instance``
    ids written by ``write_instance_ply``/``write_mesh_ply``."""
    path = Path(path)
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError(f"PLY file {path}: missing 'ply' magic or 'end_header'")
    body_start = data.index(b"\n", end) + 1
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    fmt, count, properties = _parse_ply_header(path, lines)
    if fmt == "ascii":
        text = data[body_start:].decode("ascii").splitlines()[:count]
        try:
            table = np.array([row.split()[: len(properties)] for row in text], dtype=np.float64)
        except ValueError:
            raise ValueError(f"PLY file {path}: vertex rows hold non-numeric values") from None
        if table.shape != (count, len(properties)):
            raise ValueError(f"PLY file {path}: expected {count} vertex rows of {len(properties)} values")
        return {name: table[:, k].astype(kind) for k, (name, kind) in enumerate(properties)}
    order = "<" if fmt == "binary_little_endian" else ">"
    dtype = np.dtype([(name, order + kind) for name, kind in properties])
    if len(data) - body_start < count * dtype.itemsize:
        raise ValueError(f"PLY file {path}: truncated vertex data ({count} vertices announced)")
    records = np.frombuffer(data, dtype=dtype, count=count, offset=body_start)
    return {name: records[name].astype(kind) for name, kind in properties}


def _read_ply_vertices(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    records = read_ply_vertex_properties(path)
    if not all(axis in records for axis in "xyz"):
        raise ValueError(f"PLY file {path}: the vertex element has no x, y, z properties")
    xyz = np.stack([records[a].astype(np.float32) for a in "xyz"], axis=1)
    has_rgb = all(c in records for c in ("red", "green", "blue"))
    rgb = np.stack([records[c] for c in ("red", "green", "blue")], 1).astype(np.uint8) if has_rgb else None
    return xyz, rgb


def _parse_ply_header(path: Path, lines: list[str]) -> tuple[str, int, list[tuple[str, str]]]:
    fmt, count, properties, element = None, 0, [], None
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            element = words[1]
            if element == "vertex":
                count = int(words[2])
            elif count == 0:
                raise ValueError(f"PLY file {path}: the vertex element must come first")
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                raise ValueError(f"PLY file {path}: unsupported vertex property {line.strip()!r}")
            properties.append((words[2], _PLY_TYPES[words[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"PLY file {path}: unknown format {fmt!r}")
    return fmt, count, properties


# --------------------------------------------------------------------------------------------------
# ScanNet predictions and the JSON summary


def export_scannet(
    imap: InstanceMap, vertices: np.ndarray, root: str | Path, scene: str, max_distance: float = 0.05,
    min_vertices: int = 1,
) -> Path:
    """ScanNet instance predictions for a scan's vertices (V x 3, metres, the map's world frame).

    Each vertex takes ``imap.label_points(vertices, max_distance)``; every object labelling at least
    ``min_vertices`` vertices becomes one class-agnostic mask (label id 1) with the object's confidence.
    Writes ``root/<scene>.txt`` and ``root/pred_mask/<scene>_NNN.txt`` (one line per vertex) through
    ``scene.eval.scannet_format.write_predictions``; returns the scene file.
    """
    labels = imap.label_points(np.asarray(vertices), max_distance)
    ids, counts = np.unique(labels[labels != NO_OBJECT], return_counts=True)
    ids = ids[counts >= min_vertices]
    masks = labels[None, :] == ids[:, None]
    scores = np.array([imap.get(i).confidence for i in ids], np.float64)
    return write_predictions(root, scene, masks, scores)


def summary(imap: InstanceMap) -> dict:
    """JSON-ready description of the map and each object (metres, world frame)."""
    objects = [{
        "id": o.id, "num_points": o.num_points, "num_observations": o.num_observations,
        "first_frame": o.first_frame, "last_frame": o.last_frame, "confidence": o.confidence,
        "is_structure": o.is_structure, "centroid": o.centroid.tolist(),
        "aabb_min": o.aabb_min.astype(np.float64).tolist(), "aabb_max": o.aabb_max.astype(np.float64).tolist(),
        "obb": {"center": o.obb_center.tolist(), "rotation": o.obb_rotation.tolist(),
                "extents": o.obb_extents.tolist()},
        "best_view": {"frame": o.best_view_frame, "box_xyxy": o.best_view_box.astype(np.float64).tolist()},
        "attributes": o.attributes,
    } for o in imap]
    return {
        "num_objects": len(objects), "num_points": imap.num_points, "num_frames": imap.num_frames,
        "metadata": imap.metadata.to_json(), "id_remap": {str(k): v for k, v in sorted(imap.id_remap.items())},
        "objects": objects,
    }


def write_summary_json(imap: InstanceMap, path: str | Path) -> Path:
    """Write ``summary(imap)`` as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary(imap), indent=1, allow_nan=False))
    return path
