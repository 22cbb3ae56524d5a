"""Configuration of the mapping pipeline as dataclasses, loadable from TOML (``docs/config.example.toml``).

``MapperConfig`` gathers the mask generator's name and options and the lower layers' own configs
(``lift3d.LiftConfig``, ``tracking.pipeline.PartitionConfig``, ``tracking.config.TrackerConfig`` and
``RefineConfig``). ``MapperConfig.voxel_size`` (metres) is the one voxel size of the whole pipeline: it
overrides ``lift.voxel_size`` and ``tracking.voxel_size``. ``load_config(path)`` reads a TOML file whose
tables mirror the dataclasses; keys left out keep their defaults, unknown keys are an error naming the key
and the file; the string "none" sets an optional field to None (TOML has no null).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path

from lift3d.clean import CleanConfig
from lift3d.lift import LiftConfig
from scene.parts import PartConfig
from scene.structure import StructureConfig
from tracking.config import RefineConfig, TrackerConfig
from tracking.pipeline import PartitionConfig
from tracking.voxel_graph import VoxelGraphConfig


class ConfigError(ValueError):
    """A configuration file or value that cannot be used: the message names the file and the key."""


def _default_lift() -> LiftConfig:
    # The frame pipeline partitions masks before lifting, so the lifter has no overlaps left to drop.
    return LiftConfig(clean=CleanConfig(drop_overlaps=False))


@dataclass
class MapperConfig:
    """Everything the ``Mapper`` needs.

    - ``segmenter``: mask generator name for ``segment2d.factory.make_generator`` ("geometric", "sam");
      ``segmenter_options``: its keyword options (e.g. ``checkpoint`` for "sam").
    - ``voxel_size``: metres, used by lifting, tracking and the map (overrides the sub-configs' own).
    - ``save_every``: incremental save to the map file every this many integrated frames (a crash loses
      at most that many frames); 0 saves only at the end.
    - ``online_only``: skip the global refinement in ``finalize`` (the online map is the result).
    - ``min_object_voxels``: online objects with fewer voxels stay out of the ``InstanceMap``.
    - ``min_hit_share``: an object's voxels lifted fewer times than this share of its median voxel's hit
      count are left out of its points (stray and flying points that stretch boxes); 0 keeps all.
    - ``up``: world-frame up vector for upright oriented boxes (``None``: free PCA boxes).
    - ``lift``, ``partition``, ``tracking``, ``refine``: the lower layers' configs.
    - ``structure``: the 3D floor / ceiling test (``scene.structure``) flagging flat pieces as structure.
    - ``parts``: objects and their pieces (``scene.parts``): the confidence discount of pieces attached to
      a larger object, and the joins of hanging parts and coplanar pieces.
    - ``global_fusion``: the global pass: "graph" (the multi-view evidence graph over map cells,
      ``tracking.voxel_graph``, configured by ``graph``) or "consensus" (view consensus over segments,
      ``refine``).
    """

    segmenter: str = "geometric"
    segmenter_options: dict = field(default_factory=dict)
    voxel_size: float = 0.02
    save_every: int = 10
    online_only: bool = False
    min_object_voxels: int = 10
    min_hit_share: float = 0.2
    up: tuple[float, float, float] | None = None
    lift: LiftConfig = field(default_factory=_default_lift)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    tracking: TrackerConfig = field(default_factory=TrackerConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)
    parts: PartConfig = field(default_factory=PartConfig)
    global_fusion: str = "consensus"
    graph: VoxelGraphConfig = field(default_factory=VoxelGraphConfig)

    def __post_init__(self) -> None:
        if self.global_fusion not in ("graph", "consensus"):
            raise ConfigError(f"MapperConfig.global_fusion must be 'graph' or 'consensus', got {self.global_fusion!r}")
        if not isinstance(self.segmenter, str) or not self.segmenter:
            raise ConfigError(f"MapperConfig.segmenter must be a generator name, got {self.segmenter!r}")
        if not isinstance(self.segmenter_options, dict):
            raise ConfigError("MapperConfig.segmenter_options must be a table of keyword options")
        self.voxel_size = float(self.voxel_size)
        if not self.voxel_size > 0:
            raise ConfigError(f"MapperConfig.voxel_size must be > 0 metres, got {self.voxel_size}")
        if int(self.save_every) < 0 or int(self.min_object_voxels) < 1:
            raise ConfigError(f"MapperConfig: save_every must be >= 0 and min_object_voxels >= 1, "
                              f"got {self.save_every} and {self.min_object_voxels}")
        if self.up is not None:
            if len(self.up) != 3:
                raise ConfigError(f"MapperConfig.up must be 3 numbers, got {self.up!r}")
            self.up = tuple(float(v) for v in self.up)
        self.lift = replace(self.lift, voxel_size=self.voxel_size)
        self.tracking = replace(self.tracking, voxel_size=self.voxel_size)

    def to_dict(self) -> dict:
        """Plain JSON/TOML-ready values (tuples become lists)."""
        return _plain(dataclasses.asdict(self))


def load_config(path: str | Path, **overrides) -> MapperConfig:
    """Read a ``MapperConfig`` from a TOML file; ``overrides`` replace top-level fields afterwards."""
    path = Path(path)
    data = _read_toml(path)
    config = build_dataclass(MapperConfig, data, str(path))
    return replace(config, **overrides) if overrides else config


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
        else:
            values[name] = _converted(value, default, key, where)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid [{prefix.rstrip('.') or 'top level'}] settings: {exc}") from None


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _converted(value, default, key: str, where: str):
    """``value`` checked against the type of the field's default (None defaults accept anything)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple))
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{where}: key '{key}' must be like {default!r}, got {value!r}")
    return _tuples(value)


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
