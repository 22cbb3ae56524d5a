"""Build the reference outputs of the official models that the equivalence tests compare ours to.

    python scripts/build_references.py [PART ...] [--out .references] [--force]

Each PART installs its official package into a throwaway virtual environment (``--no-deps``, next to the
torch this interpreter has; never into the project's environment), runs ``scripts/references/<script>`` in it,
and writes its outputs to ``OUT/<part>/`` (``.references/`` is git-ignored). A part whose ``manifest.json``
exists is skipped unless ``--force``: running this again is cheap. Without PART, every part is built.

Parts: ``hq`` (HQ-SAM, ``segment-anything-hq``).
"""
from __future__ import annotations

import argparse
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / ".references"


@dataclass(frozen=True)
class Part:
    """One official package: what to pip install (``--no-deps``) and which script writes its references."""

    packages: tuple[str, ...]
    script: str
    summary: str


PARTS: dict[str, Part] = {
    "hq": Part(("segment-anything-hq==0.3",), "hq_official.py", "HQ-SAM (segment-anything-hq 0.3)"),
}


def make_environment(where: Path, packages: tuple[str, ...]) -> Path:
    """A virtual environment in ``where`` that sees this interpreter's packages (torch, numpy) through a
    ``.pth`` file and has ``packages`` installed on top with ``--no-deps``; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    purelib = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    (purelib / "_project_packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(purelib), *packages],
        check=True,
    )
    return python


def build_part(name: str, out: Path, force: bool) -> None:
    part = PARTS[name]
    target = out / name
    if (target / "manifest.json").is_file() and not force:
        print(f"[references] {name}: up to date in {target} (--force rebuilds)")
        return
    start = time.perf_counter()
    print(f"[references] {name}: {part.summary} -> {target}", flush=True)
    partial = out / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"ref-{name}-venv-") as venv:
        python = make_environment(Path(venv), part.packages)
        script = ROOT / "scripts" / "references" / part.script
        subprocess.run([str(python), str(script), str(partial)], check=True, cwd=venv)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # only a complete build becomes visible to the tests
    print(f"[references] {name}: done in {time.perf_counter() - start:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"one of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild parts that already exist")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; known: {', '.join(PARTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in args.parts or list(PARTS):
        try:
            build_part(name, args.out, args.force)
        except (subprocess.CalledProcessError, OSError) as exc:
            print(f"[references] {name}: FAILED ({exc}); its equivalence tests will skip", file=sys.stderr)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
