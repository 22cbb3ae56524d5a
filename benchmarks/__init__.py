"""Benchmarks of the project: ``python -m benchmarks [--quick] [--only SECTION ...] [--out DIR]``.

Sections (``benchmarks.suites``): speed, boxes, scaling, accuracy, robustness, recall; timing and memory utilities
in ``benchmarks.harness``. The older ``bench_*.py`` scripts time single components on their own.
"""
