"""Mask generators by name: ``make_generator('geometric')``, ``make_generator('sam', checkpoint=...)``,
``make_generator('sam-hq', checkpoint=...)``.

Each entry of ``GENERATORS`` names a builder and the options it accepts; add SAM 2, FastSAM, ... there.
Generators are imported lazily, so asking for one never imports (or fails on) the others.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

from .types import MaskGenerator

DEFAULT_GENERATOR = "geometric"


@dataclass(frozen=True)
class GeneratorEntry:
    """How to build one generator: ``build(**options)`` and ``option_names()`` (the keywords it accepts)."""

    build: Callable[..., MaskGenerator]
    option_names: Callable[[], tuple[str, ...]]
    summary: str


def _build_geometric(**options) -> MaskGenerator:
    from .geometric import GeometricMaskGenerator

    return GeometricMaskGenerator(**options)


def _geometric_options() -> tuple[str, ...]:
    from .geometric import GeometricConfig

    return ("config",) + tuple(f.name for f in fields(GeometricConfig))


def _build_sam(**options) -> MaskGenerator:
    if not options.get("checkpoint"):
        raise ValueError("the sam generator needs a checkpoint path (--checkpoint)")
    from .automatic import SamMaskGenerator

    return SamMaskGenerator(**options)


def _sam_options() -> tuple[str, ...]:
    from .automatic import AMG_OPTION_NAMES

    return ("checkpoint", "model_type", "device", "encoder_dtype", "config") + AMG_OPTION_NAMES


def _build_sam_hq(**options) -> MaskGenerator:
    if not options.get("checkpoint"):
        raise ValueError("the sam-hq generator needs an HQ-SAM checkpoint path (--checkpoint sam_hq_vit_*.pth)")
    from .automatic import SamHQMaskGenerator

    return SamHQMaskGenerator(**options)


def _sam_hq_options() -> tuple[str, ...]:
    return _sam_options() + ("hq_token_only",)


def _build_ground_truth(**options) -> MaskGenerator:
    from .groundtruth import GroundTruthMaskGenerator

    return GroundTruthMaskGenerator(**options)


def _ground_truth_options() -> tuple[str, ...]:
    from .groundtruth import GroundTruthConfig

    return tuple(f.name for f in fields(GroundTruthConfig))


GENERATORS: dict[str, GeneratorEntry] = {
    "geometric": GeneratorEntry(_build_geometric, _geometric_options, "weight-free depth + colour regions (default)"),
    "sam": GeneratorEntry(_build_sam, _sam_options, "SAM / MobileSAM checkpoint with the automatic mask generator"),
    "sam-hq": GeneratorEntry(_build_sam_hq, _sam_hq_options,
                             "HQ-SAM checkpoint (sam_hq_vit_*.pth) with the automatic mask generator"),
    "ground-truth": GeneratorEntry(_build_ground_truth, _ground_truth_options,
                                   "the frame's GT instance masks (synthetic data): the upper bound after 2D"),
}


def available_generators() -> list[str]:
    """Names accepted by ``make_generator``, the default first."""
    return list(GENERATORS)


def make_generator(name: str = DEFAULT_GENERATOR, **options) -> MaskGenerator:
    """Build the mask generator called ``name`` with its options (config fields of that generator).

    Options whose value is None are treated as not given, so a command line can pass its defaults
    through. Raises ValueError for an unknown name or option, naming the accepted ones.
    """
    key = str(name).lower()
    if key not in GENERATORS:
        raise ValueError(f"unknown mask generator {name!r}; available: {', '.join(available_generators())}")
    entry = GENERATORS[key]
    given = {k: v for k, v in options.items() if v is not None}
    accepted = entry.option_names()
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for the {key} generator; it accepts: {', '.join(accepted)}")
    return entry.build(**given)
