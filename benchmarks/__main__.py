"""``python -m benchmarks``: accuracy, speed and scaling of the pipeline in one command.

    python -m benchmarks [--quick] [--only SECTION ...] [--out benchmarks/results] [--sam-checkpoint PATH]

Writes ``latest.json`` (every number; each section with the machine it ran on and a UTC timestamp) and
``latest.md`` (Markdown tables) into ``--out``; ``--quick`` (tiny sizes, a dry run) writes ``quick.json``
and ``quick.md`` instead, so it never overwrites a full report. Sections run with ``--only`` replace
their own entries of an existing report and keep the others. Exit status 1 when a section failed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from benchmarks.harness import DEFAULT_DATA, jsonable, machine_description, machine_line, utc_timestamp
from benchmarks.suites import OPTIONAL_SECTIONS, SECTION_MODULES, section
from benchmarks.suites.common import BenchContext, SuiteSkipped

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a few frames, one seed): a dry run")
    parser.add_argument("--only", nargs="+", choices=SECTION_MODULES + OPTIONAL_SECTIONS, metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTION_MODULES)}; optional, only when named: "
                             f"{', '.join(OPTIONAL_SECTIONS)})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the report (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared real data (default: %(default)s)")
    parser.add_argument("--sam-checkpoint", default=None, help="SAM/MobileSAM weights: adds SAM to the 2D recall")
    return parser.parse_args(argv)


def run_section(name: str, ctx: BenchContext) -> dict:
    """Run one section; its entry: status ("ok", "skipped", "failed"), reason, machine, timestamp, seconds, data."""
    module = section(name)
    entry = {"title": module.TITLE, "machine": machine_description(), "timestamp": utc_timestamp(),
             "quick": ctx.quick}
    ctx.log(f"[{name}] {module.TITLE}")
    start = time.perf_counter()
    try:
        entry.update(status="ok", data=module.run(ctx))
    except SuiteSkipped as exc:
        entry.update(status="skipped", reason=str(exc))
    except Exception as exc:  # one broken section must not lose the others' numbers
        traceback.print_exc()
        entry.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    entry["seconds"] = time.perf_counter() - start
    ctx.log(f"[{name}] {entry['status']}{': ' + entry['reason'] if 'reason' in entry else ''} "
            f"({entry['seconds']:.0f} s)")
    return entry


def section_markdown(name: str, entry: dict) -> str:
    """The Markdown block of one section entry."""
    head = (f"## {entry.get('title', name)} (`{name}`)\n\nMeasured {entry['timestamp']} on "
            f"{machine_line(entry['machine'])}; section took {entry['seconds']:.0f} s"
            f"{' (QUICK dry run: tiny sizes, not comparable)' if entry.get('quick') else ''}.")
    if entry["status"] != "ok":
        return f"{head}\n\n**{entry['status']}**: {entry.get('reason', '')}"
    try:
        body = section(name).markdown(entry["data"])
    except Exception as exc:  # the JSON still holds the numbers
        body = f"(could not render: {type(exc).__name__}: {exc})"
    return f"{head}\n\n{body}"


def write_report(report: dict, out: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.json`` and ``stem.md`` into ``out``; returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(jsonable(report), indent=1, allow_nan=False))
    blocks = [f"# Benchmark report\n\nStarted {report['started']}, {report.get('finished') or 'running'}; "
              f"machine at start: {machine_line(report['machine'])}. Numbers taken on a shared, loaded machine: "
              f"quote medians with their machine line."]
    ordered = [n for n in SECTION_MODULES + OPTIONAL_SECTIONS if n in report["sections"]]
    blocks += [section_markdown(name, report["sections"][name]) for name in ordered]
    md_path.write_text("\n\n".join(blocks) + "\n")
    return json_path, md_path


def load_previous(path: Path) -> dict:
    """Sections of an earlier report at ``path`` (empty when absent or unreadable)."""
    try:
        return dict(json.loads(path.read_text()).get("sections", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {message}", flush=True)

    stem = "quick" if args.quick else "latest"
    ctx = BenchContext(data_dir=args.data, quick=args.quick, sam_checkpoint=args.sam_checkpoint, log=log)
    names = args.only or list(SECTION_MODULES)
    report = {"started": utc_timestamp(), "finished": None, "quick": args.quick, "argv": sys.argv[1:],
              "machine": machine_description(), "sections": load_previous(args.out / f"{stem}.json")}
    for name in names:
        report["sections"][name] = run_section(name, ctx)
        write_report(report, args.out, stem)
    report["finished"] = f"finished {utc_timestamp()} after {time.perf_counter() - started:.0f} s"
    json_path, md_path = write_report(report, args.out, stem)
    log(f"wrote {json_path} and {md_path}")
    return int(any(report["sections"][n]["status"] == "failed" for n in names))


if __name__ == "__main__":
    sys.exit(main())
