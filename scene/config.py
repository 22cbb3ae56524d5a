"""Configuration of the mapping pipeline as dataclasses, loadable from TOML (``docs/config.example.toml``).

``MapperConfig`` gathers the mask generator's name and typed options and the lower layers' own configs
(``segment2d.geometric.GeometricConfig``, ``lift3d.LiftConfig``, ``tracking.pipeline.PartitionConfig``,
``tracking.config.TrackerConfig`` and ``RefineConfig``). Each setting lives in one place: the voxel size,
pixel stride and depth range of the whole pipeline are ``lift``'s (the tracker and the map are given them),
so ``MapperConfig.voxel_size`` only reads ``lift.voxel_size``.

``load_config(path)`` reads a TOML file whose tables mirror the dataclasses (``docs/config.example.toml``
lists every field); keys left out keep their defaults, unknown keys are an error naming the key and the
file; the string "none" sets an optional field to None (TOML has no null). Keys of older files are still
read: a top-level ``voxel_size`` (now ``lift.voxel_size``), ``tracking.surface_stride`` and
``tracking.depth_range`` (now ``lift.stride`` and ``lift.depth_range``), geometric options under
``[segmenter_options]`` (now ``[geometric]``), and settings folded into one that did the same work at the
same value (``_MOVED``: ``refine.confidence_frames`` / ``confidence_voxels``, ``refine.contained_share``,
``tracking.track_ids.merge_votes`` / ``merge_ratio``; ``segment2d.geometric.config.FOLDED_FIELDS``): each
is read as the setting that replaced it, and two of them that disagree are an error naming both. Settings
of rules that were retired (``scene.parts.RETIRED_FIELDS``) are an error naming the key and why it went;
so is a key asking for a retired option (``_RETIRED``: ``global_fusion = "graph"``, the global pass over a
graph of map cells; ``refine.online_links = true``; ``tracking.association.parts_by_vote = true``), whose
keys left where they had no effect (the example file's defaults) are dropped with a warning.
"""
from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

from lift3d.lift import LiftConfig
from scene.parts import RETIRED_FIELDS, PartConfig
from scene.structure import StructureConfig
from segment2d.geometric import GeometricConfig
from segment2d.geometric.config import FOLDED_FIELDS as GEOMETRIC_FOLDED
from tracking.config import RefineConfig, TrackerConfig
from tracking.pipeline import PartitionConfig


class ConfigError(ValueError):
    """A configuration file or value that cannot be used: the message names the file and the key."""


def _nan_settings(config, prefix: str = "") -> list[str]:
    """Dotted names of the float settings of ``config`` (nested configs and tuples too) that are NaN."""
    found = []
    for f in dataclasses.fields(config):
        value, name = getattr(config, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            found += _nan_settings(value, name + ".")
        elif any(isinstance(v, float) and v != v for v in (value if isinstance(value, tuple) else (value,))):
            found.append(name)
    return found


@dataclass
class MapperConfig:
    """Everything the ``Mapper`` needs.

    - ``segmenter``: mask generator name for ``segment2d.factory.make_generator`` ("geometric", "sam",
      "ground-truth"); ``geometric``: the geometric generator's settings (used when ``segmenter`` is
      "geometric"); ``segmenter_options``: keyword options of any other generator (e.g. ``checkpoint``
      for "sam"; geometric options found here are an error naming ``geometric``).
    - ``save_every``: incremental save to the map file every this many integrated frames (a crash loses
      at most that many frames); 0 saves only at the end.
    - ``online_only``: skip the global refinement in ``finalize`` (the online map is the result).
    - ``min_object_voxels``: online objects with fewer voxels stay out of the ``InstanceMap``.
    - ``min_hit_share``: an object's voxels lifted fewer times than this share of its median voxel's hit
      count are left out of its points (stray and flying points that stretch boxes); 0 keeps all. Pieces
      joined into one object (``scene.parts``) are filtered again against the joined object's median.
    - ``trim_unowned``: the refined map's objects drop the voxels they do not own (held only by masks
      whose bulk lies on another object) lying outside the box of those they own (``scene.trim``).
    - ``up``: world-frame up vector for upright oriented boxes (``None``: free PCA boxes).
    - ``lift``: masks to 3D segments; its ``voxel_size`` (metres), ``stride`` and ``depth_range`` are the one
      voxel grid and pixel sampling of lifting, the tracker's visibility test and the map
      (``voxel_size`` is a read-only shortcut to ``lift.voxel_size``).
    - ``partition``, ``tracking``, ``refine``: the lower layers' configs.
    - ``structure``: the 3D floor / ceiling test (``scene.structure``) flagging flat pieces as structure.
    - ``parts``: objects and their pieces (``scene.parts``): the confidence discount of pieces attached to
      a larger object, and the joins of hanging parts and coplanar pieces.
    """

    segmenter: str = "geometric"
    geometric: GeometricConfig = field(default_factory=GeometricConfig)
    segmenter_options: dict = field(default_factory=dict)
    save_every: int = 10
    online_only: bool = False
    min_object_voxels: int = 10
    min_hit_share: float = 0.2
    trim_unowned: bool = True
    up: tuple[float, float, float] | None = None
    lift: LiftConfig = field(default_factory=LiftConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    tracking: TrackerConfig = field(default_factory=TrackerConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)
    parts: PartConfig = field(default_factory=PartConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.segmenter, str) or not self.segmenter:
            raise ConfigError(f"MapperConfig.segmenter must be a generator name, got {self.segmenter!r}")
        if not isinstance(self.segmenter_options, dict):
            raise ConfigError("MapperConfig.segmenter_options must be a table of keyword options")
        self._check_types()
        unset = _nan_settings(self)
        if unset:  # no setting means NaN: every comparison with it is False, so no range check catches it
            raise ConfigError(f"MapperConfig: {', '.join(unset)} must be a number, got NaN")
        misplaced = sorted(set(self.segmenter_options) & {f.name for f in dataclasses.fields(GeometricConfig)})
        if misplaced:
            raise ConfigError(f"MapperConfig.segmenter_options: {misplaced} are settings of the geometric generator; "
                              f"set them in MapperConfig.geometric ([geometric] in TOML)")
        if self.segmenter.lower() != "geometric" and self.geometric != GeometricConfig():
            raise ConfigError(f"MapperConfig.geometric is set but MapperConfig.segmenter is {self.segmenter!r}: "
                              f"the geometric generator's settings would be ignored")
        if int(self.save_every) < 0 or int(self.min_object_voxels) < 1:
            raise ConfigError(f"MapperConfig: save_every must be >= 0 and min_object_voxels >= 1, "
                              f"got {self.save_every} and {self.min_object_voxels}")
        if not 0.0 <= float(self.min_hit_share) <= 1.0:  # above 1 it can empty an object
            raise ConfigError(f"MapperConfig.min_hit_share must lie in [0, 1] (a share of the median hit count), "
                              f"got {self.min_hit_share}")
        if self.up is not None:
            if len(self.up) != 3:
                raise ConfigError(f"MapperConfig.up must be 3 numbers, got {self.up!r}")
            self.up = tuple(float(v) for v in self.up)

    def _check_types(self) -> None:
        for name, cls in (("geometric", GeometricConfig), ("lift", LiftConfig), ("partition", PartitionConfig),
                          ("tracking", TrackerConfig), ("refine", RefineConfig), ("structure", StructureConfig),
                          ("parts", PartConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"MapperConfig.{name} must be a {cls.__module__}.{cls.__name__}, "
                                  f"got {type(getattr(self, name)).__name__}")

    @property
    def voxel_size(self) -> float:
        """Metres: the pipeline's one voxel size, ``lift.voxel_size``."""
        return self.lift.voxel_size

    def generator_options(self) -> dict:
        """Keyword options for ``segment2d.factory.make_generator(self.segmenter, ...)``."""
        if self.segmenter.lower() == "geometric":
            return {"config": self.geometric, **self.segmenter_options}
        return dict(self.segmenter_options)

    def to_dict(self) -> dict:
        """Plain JSON/TOML-ready values (tuples become lists)."""
        return _plain(dataclasses.asdict(self))


def load_config(path: str | Path, **overrides) -> MapperConfig:
    """Read a ``MapperConfig`` from a TOML file; ``overrides`` replace top-level fields afterwards."""
    path = Path(path)
    data = _moved_keys(_read_toml(path), str(path))
    config = build_dataclass(MapperConfig, data, str(path))
    return replace(config, **overrides) if overrides else config


# Keys of older config files: (table, key) -> (table, key) where the setting lives now.
# Also settings folded into one that did the same work at the same value (two copies that disagree are an
# error): the refined map's confidence saturation is the online map's, the containment of the post-filter
# is the consensus's "holds most of" share, a track's merge test is the association's.
_MOVED = {((), "voxel_size"): (("lift",), "voxel_size"),
          (("tracking",), "surface_stride"): (("lift",), "stride"),
          (("tracking",), "depth_range"): (("lift",), "depth_range"),
          (("refine",), "confidence_frames"): (("tracking",), "confidence_frames"),
          (("refine",), "confidence_voxels"): (("tracking",), "confidence_voxels"),
          (("refine",), "contained_share"): (("refine",), "contain_share"),
          (("tracking", "track_ids"), "merge_votes"): (("tracking", "association"), "merge_frames"),
          (("tracking", "track_ids"), "merge_ratio"): (("tracking", "association"), "merge_ratio")}


# Keys of older config files whose setting was replaced by one in other units: (table, key) -> what to set.
_REPLACED = {(("refine",), "min_voxels"): "'refine.min_area' (m^2 of surface, the same under exact and noisy depth; "
                                          "0.016 keeps what 60 voxels kept under noisy depth at 2 cm voxels)"}


_CELL_GRAPH = ("the global pass over a graph of map cells was removed (ScanNet scene0448_01 box AP25 0.07 against "
               "view consensus's 0.71); view consensus is the one global pass")
_LINKS = ("online links in the global pass from single segments were removed (scene0448_01 box AP25/AP50 "
          "0.256/0.143 against the default's 0.696/0.149; ground-truth masks do better with refine.keep_apart)")
_PARTS_BY_VOTE = ("tracking.association.parts_by_vote was removed: it never gained (ScanNet pooled box AP25/AP50 "
                  "0.378/0.202 against the default's 0.750/0.376); grow_by_vote stays")
# Settings of retired options: (table, key) -> (the value that had no effect, or None: any value had none
# unless another retired key asked for the option; why it went).
_RETIRED = {((), "global_fusion"): ("consensus", _CELL_GRAPH), ((), "graph"): (None, _CELL_GRAPH),
            (("refine",), "online_links"): (False, _LINKS), (("refine",), "link_share"): (None, _LINKS),
            (("tracking", "association"), "parts_by_vote"): (False, _PARTS_BY_VOTE)}


def _drop_retired(data: dict, where: str) -> None:
    """Remove (in place) the keys of retired options (``_RETIRED``). A key asking for a retired option is
    an error naming it; keys an older file held where they had no effect (the example file listed them
    all, at their defaults) are dropped with one warning naming them."""
    dropped = []
    for (table, key), (inert, why) in _RETIRED.items():
        source = _table(data, table)
        if not isinstance(source, dict) or key not in source:
            continue
        value = source.pop(key)
        name = ".".join(table + (key,))
        if inert is not None and value != inert:
            raise ConfigError(f"{where}: {name} = {value!r}: {why}: delete the key")
        dropped.append(name if not isinstance(value, dict) else f"[{name}]")
    if dropped:
        warnings.warn(f"{where}: {', '.join(dropped)} no longer exist (retired options, which had no effect there): "
                      f"ignored, delete them from the file", stacklevel=4)


def _moved_keys(data: dict, where: str) -> dict:
    """``data`` with the keys of older files moved to where they live now (``_MOVED``, and geometric
    generator options from ``[segmenter_options]`` to ``[geometric]``); a key given in both places with
    different values is an error naming both."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    _drop_retired(data, where)
    for (table, key), instead in _REPLACED.items():
        source = _table(data, table)
        if isinstance(source, dict) and key in source:
            raise ConfigError(f"{where}: '{'.'.join(table + (key,))}' was replaced: set {instead}")
    parts = data.get("parts")
    retired = sorted(set(parts) & set(RETIRED_FIELDS)) if isinstance(parts, dict) else []
    if retired:
        raise ConfigError(f"{where}: 'parts.{retired[0]}' was removed ({RETIRED_FIELDS[retired[0]]}); "
                          f"delete it from the file")
    moves = dict(_MOVED)
    options = data.get("segmenter_options")
    if isinstance(options, dict) and str(data.get("segmenter", "geometric")).lower() == "geometric":
        geometric = {f.name for f in dataclasses.fields(GeometricConfig)}
        moves.update({(("segmenter_options",), k): (("geometric",), k) for k in options
                      if k in geometric or k in GEOMETRIC_FOLDED})
    moves.update({(("geometric",), k): (("geometric",), new) for k, new in GEOMETRIC_FOLDED.items()})
    for (old_table, old_key), (new_table, new_key) in moves.items():
        source = _table(data, old_table)
        if not isinstance(source, dict) or old_key not in source:
            continue
        target = _table(data, new_table, create=True)
        if not isinstance(target, dict):
            raise ConfigError(f"{where}: [{'.'.join(new_table)}] must be a table")
        value = source.pop(old_key)
        old_name, new_name = ".".join(old_table + (old_key,)), ".".join(new_table + (new_key,))
        if new_key in target and target[new_key] != value:
            raise ConfigError(f"{where}: '{old_name}' (an older name of '{new_name}') is {value!r} but "
                              f"'{new_name}' is {target[new_key]!r}; keep one")
        target[new_key] = value
    return data


def _table(data: dict, path: tuple, create: bool = False):
    for name in path:
        if create and name not in data:
            data[name] = {}
        data = data.get(name) if isinstance(data, dict) else None
    return data


def build_dataclass(cls: type, data: dict, where: str, prefix: str = ""):
    """Instantiate dataclass ``cls`` from a (TOML) dict, recursing into nested dataclass fields.

    Lists become tuples where the field holds a tuple. Errors name ``where`` (the file) and the dotted key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: [{prefix.rstrip('.') or 'top level'}] must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key '{prefix}{unknown[0]}' (known keys in this table: "
                          f"{', '.join(sorted(known))})")
    values = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        default = _default_of(known[name])
        if dataclasses.is_dataclass(hints[name]) and isinstance(hints[name], type):
            values[name] = build_dataclass(hints[name], value, where, f"{key}.")
        elif value == "none" and type(None) in typing.get_args(hints[name]):
            values[name] = None  # TOML has no null: the string "none" stands for None where allowed
        elif typing.get_origin(hints[name]) in (typing.Union, types.UnionType):
            values[name] = _union_value(value, hints[name], key, where)
        else:
            values[name] = _converted(value, default, key, where)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid [{prefix.rstrip('.') or 'top level'}] settings: {exc}") from None


def _union_value(value, hint, key: str, where: str):
    """``value`` checked against the members of a union-typed field (``bool | str``, ``float | None``,
    ``tuple[int, ...] | None``), whatever type its default has: ``from_online = false`` where the default
    is "auto". Each member is checked as ``_converted`` checks a default of its type."""
    members = [typing.get_origin(m) or m for m in typing.get_args(hint) if m is not type(None)]
    for member in members:
        ok, converted = _of_kind(value, member)
        if ok:
            return _tuples(converted)
    allowed = [getattr(m, "__name__", str(m)) for m in members] + (['"none"'] if type(None) in typing.get_args(hint) else [])
    raise ConfigError(f"{where}: key '{key}' must be {' or '.join(allowed)}, got {value!r}")


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _converted(value, default, key: str, where: str):
    """``value`` checked against the type of the field's default (None defaults accept anything)."""
    ok, value = _of_kind(value, type(default))
    if not ok:
        raise ConfigError(f"{where}: key '{key}' must be like {default!r}, got {value!r}")
    return _tuples(value)


def _of_kind(value, kind: type) -> tuple[bool, object]:
    """(whether ``value`` read from TOML fits a setting of type ``kind``, the value as that type): a bool
    only for a bool, an int (not a bool) for an int or a float, a list for a tuple; other kinds take
    anything."""
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if kind is str:
        return isinstance(value, str), value
    if kind is tuple:
        return isinstance(value, (list, tuple)), value
    if kind is dict:
        return isinstance(value, dict), value
    return True, value


def _tuples(value):
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ConfigError(f"{path}: reading TOML needs Python >= 3.11 or the 'tomli' package") from None
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
