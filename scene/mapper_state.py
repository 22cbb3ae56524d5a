"""A mapper's working state in a file of its own (``<map file>.state``), so that an interrupted run
resumes to a refined map.

The global refinement reads what the tracker recorded of every frame (its segments, observed surfaces,
free-space votes and per-voxel labels) and the per-voxel sums of the lifted points; the map file holds
neither, only the objects. ``scene.pipeline.run`` writes them here when a run stops early (Ctrl-C, a
frame that cannot be read, a failing segmenter), right after saving the map, and ``Mapper.resume`` takes
them back when they match the map file (see ``Mapper.resume``). A killed run writes none: its map
resumes online. ``Mapper.finalize`` deletes the file, since a refined map's ids are no longer the
tracker's.

Layout: a magic line, one JSON header line (format, the code's digest, frames, last frame, when), then
a pickle of the state. The state is read back only by the code that wrote it (``code_digest``: the
pickled classes change with it), and only numpy arrays and this project's classes are unpickled
(``_StateUnpickler``); still, resume only state files you made.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from functools import lru_cache
from pathlib import Path

MAGIC = b"scene mapper state\n"
FORMAT = 1
SUFFIX = ".state"
_PACKAGES = ("tracking", "lift3d", "scene", "segment2d")
_FOLDERS = ("tracking", "lift3d", "scene", "segment2d", "datasets")  # ``scene.datasets`` lives in datasets/
_NUMPY = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
          ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer")}
_BUILTINS = {"set", "frozenset", "dict", "list", "tuple", "slice", "range", "complex", "bytearray", "bytes"}


class MapperStateError(Exception):
    """A state file that cannot be used: the message names the file and the problem."""


def state_path(map_path: str | Path) -> Path:
    """Where the state of the map file ``map_path`` is kept: beside it, with ``SUFFIX`` appended."""
    map_path = Path(map_path)
    return map_path.with_name(map_path.name + SUFFIX)


@lru_cache(maxsize=1)
def code_digest() -> str:
    """Digest of the source of the packages whose classes a state pickles: a state is read back only by
    the code that wrote it."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for folder in _FOLDERS:
        for source in sorted((root / folder).rglob("*.py")):
            digest.update(str(source.relative_to(root)).encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def write_state(path: str | Path, header: dict, state: object) -> int:
    """Write ``state`` with ``header`` (JSON-able; ``format``, ``code`` and ``written`` are added) to
    ``path``, atomically (a temporary file renamed over it). Returns the bytes written; an ``OSError``
    leaves any earlier file at ``path`` as it was."""
    path = Path(path)
    written = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    header = {**header, "format": FORMAT, "code": code_digest(), "written": written}
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as out:
            out.write(MAGIC)
            out.write(json.dumps(header).encode() + b"\n")
            pickle.dump(state, out, protocol=5)
            size = out.tell()
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size


def read_header(path: str | Path) -> dict:
    """The header of the state file ``path`` (``MapperStateError`` when it is not one)."""
    with _opened(path) as source:
        return _header(path, source)


def read_state(path: str | Path) -> tuple[dict, object]:
    """(header, state) of the state file ``path``. ``MapperStateError`` names the file and the problem: not
    a state file, another format, written by other code, truncated or corrupt."""
    with _opened(path) as source:
        header = _header(path, source)
        if header.get("code") != code_digest():
            raise MapperStateError(f"{path}: written by another version of the code ({header.get('code')}, this is "
                                   f"{code_digest()})")
        try:
            return header, _StateUnpickler(source).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError) as exc:
            raise MapperStateError(f"{path}: truncated or corrupt ({type(exc).__name__}: {exc})") from None


def _opened(path: str | Path):
    try:
        return open(path, "rb")
    except OSError as exc:
        raise MapperStateError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _header(path, source) -> dict:
    if source.read(len(MAGIC)) != MAGIC:
        raise MapperStateError(f"{path}: not a mapper state file")
    try:
        header = json.loads(source.readline())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MapperStateError(f"{path}: its header is corrupt") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise MapperStateError(f"{path}: format {header.get('format') if isinstance(header, dict) else '?'}, "
                               f"this code reads format {FORMAT}")
    return header


class _StateUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, plain containers and this project's classes, nothing else."""

    def find_class(self, module: str, name: str):
        allowed = ((module, name) in _NUMPY or (module == "numpy.dtypes" and name.endswith("DType"))
                   or (module == "builtins" and name in _BUILTINS))
        if allowed:
            return super().find_class(module, name)
        if module.split(".")[0] in _PACKAGES:
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a mapper state")
