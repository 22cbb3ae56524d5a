"""Build the equivalence references of the models we reimplement, from the official packages.

    python scripts/build_references.py [FAMILY ...] [--out .references] [--env DIR] [--force] [--full-size]

Each family (``sam2``: SAM 2.1, ``hq``: HQ-SAM) installs its official package with ``pip install --no-deps --target`` into a
throwaway folder (``--env``, default ``/tmp/scene-seg-reference-env/FAMILY``; never a project
dependency), then runs ``scripts/reference_FAMILY.py`` in a separate process with only that folder added
to the path, so the official code never meets ours. Outputs go to ``.references/FAMILY/`` (gitignored),
with a ``manifest.json`` naming the package versions; a family whose manifest matches its builder is
skipped (idempotent), so CI can call this before the tests at little cost.

``--full-size`` (opt-in, never run by CI or setup) builds instead the references of the released sizes
checked otherwise only by layout (SAM 2.1 hiera_s / b+ / l, HQ-SAM vit_b / l / h) into
``.references/FAMILY-full/``: one model at a time, seeded random weights at 1024 x 1024; the equivalence
tests (``test_released_sizes_*`` in tests/test_sam2_equivalence.py and tests/test_sam_hq_equivalence.py)
compare our models with them when present. Measured once on the shared 2-core machine under a load
average of 15-20 (niced): sam2 (hiera_s, b+, l) 20 minutes, 1.5 GB; hq vit_b 7 and vit_l 26 minutes (3.5 GB
resident), 1.6 GB; vit_h 3 minutes at a load average of about 2 (8.4 GiB peak memory), 2.5 GB of weights.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# family -> the official packages it needs (installed with --no-deps next to the project's torch)
FAMILIES: dict[str, list[str]] = {
    "hq": ["segment-anything-hq==0.3"],
    "sam2": [
        "sam2==1.1.0", "hydra-core==1.3.2", "omegaconf<2.4", "antlr4-python3-runtime==4.9.3", "iopath",
        "portalocker", "pyyaml", "tqdm", "pillow", "packaging",
    ],
}


def builder_path(family: str) -> Path:
    return ROOT / "scripts" / f"reference_{family.replace('-', '_')}.py"


def builder_digest(family: str) -> str:
    text = builder_path(family).read_bytes() + json.dumps(FAMILIES[family]).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def is_current(out_dir: Path, family: str) -> bool:
    manifest = out_dir / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("builder_digest") == builder_digest(family)
    except (OSError, ValueError):
        return False


def install(family: str, env_dir: Path) -> None:
    stamp = env_dir / ".installed"
    wanted = json.dumps(FAMILIES[family])
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    env_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade", "--target", str(env_dir), *FAMILIES[family]]
    print(f"[{family}] installing the official package into {env_dir}", flush=True)
    subprocess.run(cmd, check=True)
    stamp.write_text(wanted)


def build(family: str, out_root: Path, env_root: Path, force: bool, full_size: bool = False) -> None:
    out_dir = out_root / (f"{family}-full" if full_size else family)
    if not force and is_current(out_dir, family):
        print(f"[{family}] references are current in {out_dir}")
        return
    env_dir = env_root / family
    install(family, env_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(env_dir), PYTHONNOUSERSITE="1")
    print(f"[{family}] building references in {out_dir}", flush=True)
    # run from a neutral folder: the official package must not see our checkout on its path
    extra = ["--full-size"] if full_size else []
    subprocess.run([sys.executable, str(builder_path(family)), "--out", str(out_dir), *extra], check=True, env=env,
                   cwd=tempfile.gettempdir())
    manifest = json.loads((out_dir / "manifest.json").read_text())
    manifest["builder_digest"] = builder_digest(family)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("families", nargs="*", default=list(FAMILIES), help=f"families to build (default: all of {list(FAMILIES)})")
    parser.add_argument("--out", type=Path, default=ROOT / ".references")
    parser.add_argument("--env", type=Path, default=Path(tempfile.gettempdir()) / "scene-seg-reference-env")
    parser.add_argument("--force", action="store_true", help="rebuild even when the manifest is current")
    parser.add_argument("--full-size", action="store_true",
                        help="build the released-size references (hiera_s/b+/l, vit_b/l/h) into FAMILY-full/ instead (long)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; known: {sorted(FAMILIES)}")
    for family in args.families:
        build(family, args.out.resolve(), args.env.resolve(), args.force, args.full_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
