"""A user's scan (mesh or point cloud) read into a `ScanGeometry`, checked before any work starts.

Formats: PLY (ascii or binary, vertex x y z [red green blue], optional triangle faces), ScanNet's raw
``points/*.bin`` (float32 N x 6 x y z r g b, or N x 3) and OBJ (through Open3D). Vertices keep the
file's order: every output of the scan mode is indexed by it. Units: metres, the poses' world frame.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCAN_SUFFIXES = (".ply", ".bin", ".obj")
MAX_VERTICES = 20_000_000  # a 20 M-vertex scan needs ~10 GB for the per-view tables: decimate it first

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


class ScanError(ValueError):
    """A scan file that cannot be used; the message names the file and the problem."""


@dataclass
class ScanGeometry:
    """The user's scan: ``vertices`` V x 3 float32 metres (world frame of the poses), ``colors`` V x 3
    uint8 RGB or None, ``triangles`` T x 3 int32 vertex indices or None (a point cloud), ``path``."""

    vertices: np.ndarray
    colors: np.ndarray | None = None
    triangles: np.ndarray | None = None
    path: str = ""

    @property
    def num_vertices(self) -> int:
        return int(len(self.vertices))

    @property
    def is_mesh(self) -> bool:
        return self.triangles is not None and len(self.triangles) > 0


def read_scan(path: str | Path, max_vertices: int = MAX_VERTICES) -> ScanGeometry:
    """Read and check a scan; raises ``ScanError`` naming the file for a missing, unreadable, empty,
    non-finite, degenerate or oversized scan and for faces that point outside the vertices."""
    path = Path(path)
    if not path.is_file():
        raise ScanError(f"scan {path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SCAN_SUFFIXES:
        raise ScanError(f"scan {path}: unknown extension {path.suffix!r} (expected {', '.join(SCAN_SUFFIXES)})")
    reader = {".ply": _read_ply, ".bin": _read_bin, ".obj": _read_obj}[suffix]
    try:
        scan = reader(path)
    except ScanError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ScanError(f"scan {path}: cannot read it ({exc})") from None
    return check_scan(scan, max_vertices)


def check_scan(scan: ScanGeometry, max_vertices: int = MAX_VERTICES) -> ScanGeometry:
    """Shape, finiteness, size and face-index checks; drops degenerate faces (repeated vertices).
    Non-manifold edges (shared by more than two faces) are reported in a warning and accepted:
    superpoints only need the edges, visibility only the faces."""
    where = f"scan {scan.path or '(in memory)'}"
    v = np.asarray(scan.vertices)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ScanError(f"{where}: no vertices (shape {v.shape}): the file is empty or not a scan")
    if len(v) > max_vertices:
        raise ScanError(f"{where}: {len(v):,} vertices is more than the {max_vertices:,} supported; "
                        f"decimate the scan (e.g. Open3D simplify_vertex_clustering at 1-2 cm)")
    if not np.all(np.isfinite(v)):
        raise ScanError(f"{where}: {int((~np.isfinite(v)).any(1).sum())} vertices have non-finite coordinates")
    extent = np.ptp(v, axis=0)
    if len(v) > 1 and float(extent.max()) <= 0:
        raise ScanError(f"{where}: all {len(v)} vertices coincide")
    if float(extent.max()) > 1e4:
        raise ScanError(f"{where}: the scan spans {extent.max():.0f} units; expected metres (a room or a building)")
    colors = None if scan.colors is None else np.ascontiguousarray(scan.colors, np.uint8)
    if colors is not None and colors.shape != v.shape:
        raise ScanError(f"{where}: {len(colors)} colours for {len(v)} vertices")
    triangles = _checked_triangles(scan.triangles, len(v), where)
    if triangles is not None:
        _warn_non_manifold(triangles, where)
    return ScanGeometry(np.ascontiguousarray(v, np.float32), colors, triangles, scan.path)


def _checked_triangles(triangles, num_vertices: int, where: str) -> np.ndarray | None:
    if triangles is None:
        return None
    t = np.asarray(triangles)
    if t.size == 0:
        return None
    if t.ndim != 2 or t.shape[1] != 3:
        raise ScanError(f"{where}: faces must be triangles (T x 3), got shape {t.shape}")
    if t.min() < 0 or t.max() >= num_vertices:
        raise ScanError(f"{where}: faces index vertices outside 0..{num_vertices - 1} (min {t.min()}, max {t.max()})")
    t = t.astype(np.int32)
    proper = (t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])
    return np.ascontiguousarray(t[proper]) if proper.any() else None


def non_manifold_edges(triangles: np.ndarray) -> int:
    """How many distinct edges are shared by more than two triangles."""
    pairs = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    keys = np.sort(pairs[:, 0].astype(np.int64) * (int(triangles.max()) + 1) + pairs[:, 1])
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return int(np.count_nonzero(np.diff(np.r_[starts, len(keys)]) > 2))


def _warn_non_manifold(triangles: np.ndarray, where: str) -> None:
    count = non_manifold_edges(triangles)
    if count:
        warnings.warn(f"{where}: {count} non-manifold edges (shared by more than two faces); used as they are",
                      stacklevel=3)


def find_scan(root: str | Path) -> Path | None:
    """The scan stored with a dataset, if any: ScanNet's ``*_vh_clean_2.ply`` (preferred: it has faces)
    or ``points/*.bin`` (mmdetection3d's export), in ``root`` or its parent."""
    root = Path(root)
    for folder in (root, root.parent):
        for pattern in ("*_vh_clean_2.ply", "points/*.bin"):
            found = sorted(folder.glob(pattern))
            if found:
                return found[0]
    return None


# ---- readers -----------------------------------------------------------------------------------------


def _read_bin(path: Path) -> ScanGeometry:
    size = path.stat().st_size
    if size == 0 or size % 12:
        raise ScanError(f"scan {path}: {size} bytes is not a whole number of float32 N x 3 or N x 6 rows")
    values = np.fromfile(path, dtype="<f4")
    six = len(values) % 6 == 0 and _looks_like_colors(values.reshape(-1, 6)[:, 3:])
    table = values.reshape(-1, 6 if six else 3)
    colors = np.clip(np.round(table[:, 3:6]), 0, 255).astype(np.uint8) if six else None
    return ScanGeometry(table[:, :3].copy(), colors, None, str(path))


def _looks_like_colors(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all((values >= 0) & (values <= 255)))


def _read_obj(path: Path) -> ScanGeometry:
    import open3d as o3d

    mesh = o3d.io.read_triangle_mesh(str(path))
    vertices = np.asarray(mesh.vertices, np.float32)
    if len(vertices) == 0:
        raise ScanError(f"scan {path}: Open3D read no vertices (empty or corrupt OBJ)")
    colors = np.round(np.asarray(mesh.vertex_colors) * 255).astype(np.uint8) if mesh.has_vertex_colors() else None
    return ScanGeometry(vertices, colors, np.asarray(mesh.triangles, np.int32), str(path))


def _read_ply(path: Path) -> ScanGeometry:
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ScanError(f"scan {path}: not a PLY file (no 'ply' magic or no 'end_header')")
    body = data.index(b"\n", end) + 1
    fmt, elements = _ply_header(path, data[:end].decode("ascii", errors="replace").splitlines())
    if fmt == "ascii":
        tables = _ply_ascii(path, data[body:], elements)
    else:
        tables = _ply_binary(path, data, body, elements, "<" if fmt == "binary_little_endian" else ">")
    vertex = tables.get("vertex")
    if vertex is None or not all(a in vertex for a in "xyz"):
        raise ScanError(f"scan {path}: the PLY has no vertex element with x, y, z")
    xyz = np.stack([vertex[a].astype(np.float32) for a in "xyz"], axis=1)
    rgb = None
    if all(c in vertex for c in ("red", "green", "blue")):
        rgb = np.stack([vertex[c] for c in ("red", "green", "blue")], 1)
        rgb = (np.clip(rgb, 0, 1) * 255 if rgb.dtype.kind == "f" else rgb).astype(np.uint8)
    return ScanGeometry(xyz, rgb, tables.get("face", {}).get("triangles"), str(path))


def _ply_header(path: Path, lines: list[str]) -> tuple[str, list]:
    """(format, [(element name, count, [(property, numpy type) or (property, 'list', count type, item type)])])."""
    fmt, elements = None, []
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            if words[1] == "list" and len(words) == 5 and words[2] in _PLY_TYPES and words[3] in _PLY_TYPES:
                elements[-1][2].append((words[4], "list", _PLY_TYPES[words[2]], _PLY_TYPES[words[3]]))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise ScanError(f"scan {path}: unsupported PLY property line {line.strip()!r}")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ScanError(f"scan {path}: unknown PLY format {fmt!r}")
    return fmt, elements


def _ply_binary(path: Path, data: bytes, offset: int, elements: list, order: str) -> dict:
    tables = {}
    for name, count, props in elements:
        if any(p[1] == "list" for p in props):
            if len(props) != 1 or name != "face":
                break  # other list elements (edges, materials) come after what we need: stop reading
            _, _, count_type, item_type = props[0]
            dtype = np.dtype([("n", order + count_type), ("idx", order + item_type, (3,))])
            if len(data) - offset < count * dtype.itemsize:
                raise ScanError(f"scan {path}: truncated face data ({count} faces announced)")
            faces = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            if count and np.any(faces["n"] != 3):
                raise ScanError(f"scan {path}: only triangle faces are supported (found a face with "
                                f"{int(faces['n'][faces['n'] != 3][0])} vertices); triangulate the mesh first")
            tables["face"] = {"triangles": faces["idx"].astype(np.int64)}
            offset += count * dtype.itemsize
            continue
        dtype = np.dtype([(p[0], order + p[1]) for p in props])
        if len(data) - offset < count * dtype.itemsize:
            raise ScanError(f"scan {path}: truncated {name} data ({count} {name} rows announced)")
        records = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        tables[name] = {p[0]: records[p[0]] for p in props}
        offset += count * dtype.itemsize
    return tables


def _ply_ascii(path: Path, body: bytes, elements: list) -> dict:
    lines = body.decode("ascii").splitlines()
    tables, start = {}, 0
    for name, count, props in elements:
        rows = lines[start:start + count]
        if len(rows) < count:
            raise ScanError(f"scan {path}: truncated {name} rows ({count} announced, {len(rows)} present)")
        start += count
        if any(p[1] == "list" for p in props):
            if name != "face":
                continue
            table = _ascii_table(path, rows, name, 4)
            if table.shape[1] != 4 or np.any(table[:, 0] != 3):
                raise ScanError(f"scan {path}: only triangle faces are supported; triangulate the mesh first")
            tables["face"] = {"triangles": table[:, 1:4].astype(np.int64)}
            continue
        table = _ascii_table(path, rows, name, len(props))
        if table.shape[1] < len(props):
            raise ScanError(f"scan {path}: {name} rows hold {table.shape[1]} values for {len(props)} properties")
        tables[name] = {p[0]: table[:, k].astype(p[1]) for k, p in enumerate(props)}
    return tables


def _ascii_table(path: Path, rows: list[str], name: str, columns: int = 0) -> np.ndarray:
    if not rows:
        return np.zeros((0, columns))
    try:
        return np.array([row.split() for row in rows], dtype=np.float64).reshape(len(rows), -1)
    except ValueError:
        raise ScanError(f"scan {path}: {name} rows hold non-numeric or ragged values") from None
