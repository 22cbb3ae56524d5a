"""The benchmark sections, one module each, in the order ``python -m benchmarks`` runs them (and the
optional ones, run only when named with ``--only``).

Every section module has ``NAME``, ``TITLE``, ``run(ctx) -> dict`` (JSON-ready numbers; raises
``SuiteSkipped`` with the reason when it cannot run here) and ``markdown(data) -> str``.
"""
from __future__ import annotations

from importlib import import_module

SECTION_MODULES = ("speed", "boxes", "scaling", "accuracy", "robustness", "recall", "robotics")
# run only when named with --only (long: full-size model timings)
OPTIONAL_SECTIONS = ("sam_hq",)


def section(name: str):
    """The module of section ``name``; ``ValueError`` naming the known sections otherwise."""
    if name not in SECTION_MODULES + OPTIONAL_SECTIONS:
        raise ValueError(f"unknown benchmark section {name!r}; known: {', '.join(SECTION_MODULES + OPTIONAL_SECTIONS)}")
    return import_module(f"benchmarks.suites.{name}")
