"""Timing and memory utilities of the benchmark suite, and the description of the machine it ran on.

Times are seconds (``time.perf_counter``); memory is bytes. ``peak_rss_bytes`` is the process's
high-water mark (``resource.getrusage(...).ru_maxrss``, never decreasing), ``current_rss_bytes`` the
resident set now (``/proc/self/statm``); ``MemoryProbe`` adds the Python heap peak (``tracemalloc``,
which numpy reports its buffers to) over a block, at about twice the run time, so timed runs leave it off.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # ../shared/data
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def summarize(seconds: Sequence[float]) -> dict:
    """Median, 95th percentile, mean, min, max and count of a list of durations (seconds).

    Raises ``ValueError`` naming the problem for non-finite or negative durations; an empty list gives
    ``{"n": 0}`` with NaN statistics, so a stage that never ran is visible as such."""
    values = np.asarray(list(seconds), dtype=np.float64).reshape(-1)
    if values.size and (not np.isfinite(values).all() or (values < 0).any()):
        raise ValueError(f"summarize: durations must be finite and >= 0 seconds, got {values[:5].tolist()}...")
    if values.size == 0:
        nan = float("nan")
        return {"n": 0, "median": nan, "p95": nan, "mean": nan, "min": nan, "max": nan}
    return {
        "n": int(values.size),
        "median": float(np.median(values)),
        "p95": float(np.percentile(values, 95)),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def timed(function: Callable[[], object]) -> tuple[object, float]:
    """(result of ``function()``, seconds it took)."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def repeat_timed(function: Callable[[], object], repeats: int) -> dict:
    """``summarize`` of ``repeats`` calls of ``function``."""
    if repeats < 1:
        raise ValueError(f"repeat_timed: repeats must be >= 1, got {repeats}")
    return summarize([timed(function)[1] for _ in range(repeats)])


def ratio_last_first(values: Sequence[float]) -> float:
    """last / first of a series (NaN when it has < 2 values or the first is 0): 1.0 means flat."""
    values = [float(v) for v in values]
    if len(values) < 2 or values[0] == 0 or not np.isfinite(values[0]):
        return float("nan")
    return values[-1] / values[0]


def linear_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope dy/dx (NaN with fewer than two distinct x)."""
    x = np.asarray(xs, np.float64)
    y = np.asarray(ys, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"linear_slope: {x.size} x values for {y.size} y values")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if np.unique(x).size < 2:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def current_rss_bytes() -> int:
    """Resident set size of this process now (bytes); 0 where ``/proc`` is not available."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident_pages * _PAGE_BYTES


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (bytes; Linux reports ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass
class MemoryReport:
    """Memory over one block (bytes): ``traced_peak`` Python heap peak (tracemalloc; None when not traced),
    ``rss_start`` / ``rss_end`` current RSS, ``peak_rss`` process high-water mark at the end."""

    traced_peak: int | None
    rss_start: int
    rss_end: int
    peak_rss: int

    def as_dict(self) -> dict:
        return {"traced_peak_bytes": self.traced_peak, "rss_start_bytes": self.rss_start,
                "rss_end_bytes": self.rss_end, "peak_rss_bytes": self.peak_rss}


@dataclass
class MemoryProbe:
    """``with MemoryProbe(trace=True) as probe: ...`` then ``probe.report``. Tracing is skipped when
    tracemalloc is already running (the outer tracer owns it)."""

    trace: bool = True
    report: MemoryReport | None = field(default=None, init=False)
    _owns_trace: bool = field(default=False, init=False)
    _rss_start: int = field(default=0, init=False)

    def __enter__(self) -> "MemoryProbe":
        self._rss_start = current_rss_bytes()
        self._owns_trace = self.trace and not tracemalloc.is_tracing()
        if self._owns_trace:
            tracemalloc.start()
        return self

    def __exit__(self, *exc) -> None:
        traced = None
        if self._owns_trace:
            traced = int(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        self.report = MemoryReport(traced, self._rss_start, current_rss_bytes(), peak_rss_bytes())


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or the given text), else ``platform.processor()``."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or "unknown"


def total_ram_bytes(meminfo: str | None = None) -> int:
    """MemTotal from ``/proc/meminfo`` (or the given text) in bytes; 0 when unknown."""
    if meminfo is None:
        try:
            meminfo = Path("/proc/meminfo").read_text()
        except OSError:
            return 0
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_description() -> dict:
    """Where a figure was measured: CPU model, cores (total and usable), RAM, torch/numpy/Python versions,
    thread count torch uses, load average at the time of the call."""
    try:
        import torch

        torch_version, torch_threads = torch.__version__, int(torch.get_num_threads())
    except ImportError:
        torch_version, torch_threads = "absent", 0
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": round(total_ram_bytes() / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch_version,
        "torch_threads": torch_threads,
        "platform": platform.platform(),
        "load_average": [round(v, 2) for v in load],
    }


def machine_line(machine: dict) -> str:
    """One-line summary of ``machine_description()`` for Markdown captions."""
    load = ", ".join(f"{v:.1f}" for v in machine.get("load_average", []))
    return (f"{machine.get('cpu', '?')}, {machine.get('usable_cores', '?')} cores, {machine.get('ram_gib', '?')} GiB, "
            f"torch {machine.get('torch', '?')}, numpy {machine.get('numpy', '?')}, load average at start {load}")


def utc_timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def markdown_table(rows: Sequence[dict], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows`` (dicts) over ``columns``; floats to 3 significant decimals, missing as '-'."""
    headers = list(headers) if headers is not None else list(columns)
    if len(headers) != len(columns):
        raise ValueError(f"markdown_table: {len(headers)} headers for {len(columns)} columns")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "nan"
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def jsonable(value):
    """``value`` with numpy scalars/arrays and tuples turned into plain JSON types; NaN and infinities
    become None (``null``), so strict JSON parsers read the report."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
