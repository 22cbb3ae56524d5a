"""``python -m benchmarks.variants``: the pipeline with changed settings, tuned and held-out data apart.

    python -m benchmarks.variants --set tracking.association.part_share=0.8 [--set ...] [--only heldout scannet]

Maps every sequence with ``MapperConfig()`` changed by the ``--set KEY=VALUE`` settings (dotted keys as in
``docs/config.example.toml``'s tables, values in TOML syntax: ``0.8``, ``true``, ``"none"``, ``[0.05, 0.95]``)
and scores both maps (online and refined) as the ``accuracy`` and ``boxes`` sections do. Sequences: the two
ScanNet scenes (non-structure box AP25 / AP50, per scene and pooled), and the noisy synthetic room, cluttered
and tabletop presets at the accuracy section's size (instance AP / AP50 "all", pooled per preset over seeds
0-1, on which settings were tuned, and over the held-out seeds 2-5). A setting is a gain only where it holds
on the held-out seeds and on ScanNet, so a report never pools the two groups. Without ``--set`` it maps the
defaults (the accuracy and boxes sections' numbers). Prints one line per map; about 20 s per sequence on
one core.

``--states DIR`` keeps each sequence's mapper state (``Mapper.save_state``) and online map in ``DIR``, named
by a digest of the settings that decide them (all but ``[refine]``); a later run whose settings match a
kept state's there finalizes from it (``Mapper.from_state``) instead of mapping: the same maps, the global
pass alone. About 150 MB per synthetic sequence.

Another mask generator is a setting too: ``--set segmenter=sam --set segmenter_options.checkpoint=PATH
--set segmenter_options.model_type=vit_t`` maps every sequence with MobileSAM's masks (the weights are not
in the repository; ``segment2d`` loads the released checkpoints), ``--set segmenter=ground-truth`` with the
synthetic frames' true masks (the ScanNet scenes carry none and are skipped). The generator is built once,
before any mapping, so a missing or unreadable checkpoint is one line, not a traceback after the first maps.

``--costs N`` adds, for the refined maps, what each error costs (``benchmarks.costs``): the ScanNet scenes
pooled and each synthetic preset per seed group, the AP50 as ranked and ranked by best GT IoU, the N
highest-ranked false positives, each with its object id, best GT and the AP50 without it, and the N misses
whose mending would pay most.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from benchmarks.harness import DEFAULT_DATA

PRESETS = ("room", "cluttered", "tabletop")
SCANNET = ("scannet_scene0448_01", "scannet_scene0113_00")
TUNED, HELD_OUT = (0, 1), (2, 3, 4, 5)
GROUPS = ("tuned", "heldout", "scannet")


@dataclass(frozen=True)
class Sequence:
    """One benchmark sequence: a ScanNet folder name, or a synthetic preset and seed."""

    name: str
    preset: str | None = None
    seed: int | None = None

    @property
    def group(self) -> str:
        if self.preset is None:
            return "scannet"
        return "tuned" if self.seed in TUNED else "heldout"


def sequences(groups, presets=PRESETS) -> list[Sequence]:
    """The sequences of ``groups`` (``GROUPS``), ScanNet first."""
    out = [Sequence(name) for name in SCANNET] if "scannet" in groups else []
    for group, seeds in (("heldout", HELD_OUT), ("tuned", TUNED)):
        if group in groups:
            out += [Sequence(f"{p}-s{s}", p, s) for p in presets for s in seeds]
    return out


def parse_settings(pairs: list[str]) -> dict:
    """``["a.b=1", ...]`` -> ``{"a": {"b": 1}}`` (values in TOML syntax; a bare word is a string)."""
    data: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        *tables, name = key.strip().split(".")
        target = data
        for table in tables:
            target = target.setdefault(table, {})
            if not isinstance(target, dict):
                raise ValueError(f"--set {pair!r}: {table!r} was set as a value before")
        target[name] = value
    return data


def variant_config(pairs: list[str]):
    """The ``MapperConfig`` of the defaults changed by ``--set`` pairs; errors name the key (``ConfigError``)."""
    from scene.config import MapperConfig, build_dataclass

    return build_dataclass(MapperConfig, parse_settings(pairs), "--set")


def score(sequence: Sequence, config, data: Path, frames: int, size: tuple[int, int],
          states: Path | None = None, names: bool = False, generator=None) -> dict:
    """{"online": scored map, "refined": scored map} of one sequence (the suites' own scoring); with
    ``names`` also "refined_ids" (the refined map's object id of each scored prediction) and "gt_names" (GT
    index or id -> a name: the box's label, or the instance's kind and id). ``states``: a folder of mapper
    states to finalize from instead of mapping (``mapped``); ``generator``: the mask generator ``config``
    names, built already (None: each mapper builds its own)."""
    if sequence.preset is None:
        from benchmarks.suites.boxes import read_gt_boxes
        from benchmarks.suites.common import aligned_boxes
        from scene.datasets import open_dataset
        from scene.eval import SceneBoxes

        run = mapped(sequence, lambda: open_dataset(data / sequence.name, stop=None), config, states, frames, size,
                     generator)
        gt, align, labels = read_gt_boxes(data / sequence.name / "gt_boxes.json")
        scored = {mode: SceneBoxes(gt, *aligned_boxes(imap, align, False), sequence.name)
                  for mode, imap in (("online", run.online_map), ("refined", run.final_map))}
        if not names:
            return scored
        ids = [obj.id for obj in run.final_map if not obj.is_structure]  # aligned_boxes' order
        return scored | {"refined_ids": ids, "gt_names": dict(enumerate(labels))}
    from benchmarks.suites.accuracy import OBSERVED_STRIDE, score_run
    from benchmarks.suites.common import point_predictions
    from scene.datasets.synthetic import make_scene

    scene = make_scene(sequence.preset, seed=sequence.seed, noisy=True, num_frames=frames, width=size[0],
                       height=size[1])
    run = mapped(sequence, scene.frames, config, states, frames, size, generator)
    scored = score_run(SimpleNamespace(scene=scene, run=run), sequence.name)
    scored = {"online": scored[("online", "all")], "refined": scored[("online+global", "all")]}
    if not names:
        return scored
    gt = scene.gt_points()  # the points score_run labelled, labelled again for the objects' ids
    seen = scene.gt_observed(gt, stride=OBSERVED_STRIDE)
    _, _, ids = point_predictions(run.final_map, gt.xyz[seen], run.final_map.metadata.voxel_size)
    kinds = {obj.id: f"{obj.kind}{obj.id}" for obj in scene.gt_objects()}
    return scored | {"refined_ids": ids.tolist(), "gt_names": kinds}


def cost_report(scored: dict[Sequence, dict], top: int) -> list[str]:
    """``benchmarks.costs``' lines for the refined maps: the ScanNet scenes pooled (boxes), then each
    synthetic preset per seed group (points), each prediction named by its object id and its GT's name."""
    from benchmarks.costs import box_costs, cost_lines, point_costs

    by_name = {s.name: v for s, v in scored.items()}

    def names(scene: str, index: int, gt: int) -> str:
        found = by_name[scene]
        label = found["gt_names"].get(gt, str(gt)) if gt >= 0 else "none"
        return (f"object {found['refined_ids'][index]}, " if index >= 0 else "") + f"GT {label}"

    lines = []
    scannet = [s for s in scored if s.group == "scannet"]
    if scannet:
        costs = box_costs([scored[s]["refined"] for s in scannet], top)
        lines += cost_lines("costs, refined, ScanNet pooled (box)", costs, names)
    for group in ("tuned", "heldout"):
        for preset in PRESETS:
            members = [s for s in scored if s.group == group and s.preset == preset]
            if members:
                costs = point_costs([scored[s]["refined"] for s in members], top)
                seeds = "0-1" if group == "tuned" else "2-5"
                lines += cost_lines(f"costs, refined, {preset} {seeds} (points)", costs, names)
    return lines


def mapped(sequence: Sequence, frames, config, states: Path | None, num_frames: int, size: tuple[int, int],
           generator=None):
    """(online_map, final_map) of ``frames()`` mapped with ``config``. With a ``states`` folder: the maps
    of a state kept there by an earlier run whose settings differ from ``config`` at most in ``refine``
    (the global pass alone is re-run: ``Mapper.from_state``), else a full mapping that keeps its state
    and online map there for the next runs."""
    from benchmarks.suites.common import map_sequence
    from scene.mapper_state import MapperStateError
    from scene.storage import MapStore

    name = f"{sequence.name}-{mapping_key(config, num_frames, size)}"
    state, online = (None, None) if states is None else (states / f"{name}.state", states / f"{name}.sqlite")
    if state is not None and state.is_file() and online.is_file():
        from scene.pipeline import Mapper

        try:
            final_map = Mapper.from_state(state, config, generator).finalize()
            with MapStore(online, read_only=True) as store:
                return SimpleNamespace(online_map=store.load(), final_map=final_map)
        except MapperStateError as exc:
            print(f"  {sequence.name}: mapped afresh ({exc})", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = map_sequence(sequence.name, frames(), config, log=lambda s: None, generator=generator, keep_state=state)
    if online is not None:
        online.unlink(missing_ok=True)
        with MapStore(online) as store:
            store.save(run.online_map)
    return run


def mapping_key(config, num_frames: int, size: tuple[int, int]) -> str:
    """Digest of everything that decides a sequence's online map and tracker: the settings but ``refine``,
    and the synthetic frames' count and size."""
    settings = {k: v for k, v in config.to_dict().items() if k != "refine"}
    text = json.dumps([settings, num_frames, list(size)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def report_lines(label: str, scored: dict[Sequence, dict]) -> list[str]:
    """One line per map: ScanNet box AP25 / AP50 per scene and pooled; synthetic AP / AP50 per preset and
    seed group."""
    from scene.eval import evaluate_box_scenes, evaluate_scenes

    lines = []
    for mode in ("refined", "online"):
        cells = [f"{label} {mode}"]
        scannet = [s for s in scored if s.group == "scannet"]
        for s in scannet:
            r = evaluate_box_scenes([scored[s][mode]])
            cells.append(f"{s.name.removeprefix('scannet_')} {r.ap25:.3f}/{r.ap50:.3f}")
        if len(scannet) > 1:
            r = evaluate_box_scenes([scored[s][mode] for s in scannet])
            cells.append(f"pooled {r.ap25:.3f}/{r.ap50:.3f}")
        for group in ("tuned", "heldout"):
            for preset in PRESETS:
                members = [scored[s][mode] for s in scored if s.group == group and s.preset == preset]
                if members:
                    r = evaluate_scenes(members).as_dict()
                    cells.append(f"{preset} {'0-1' if group == 'tuned' else '2-5'} {r['ap']:.3f}/{r['ap50']:.3f}")
        lines.append(" | ".join(cells))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.variants", description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a MapperConfig setting, dotted (repeatable)")
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS),
                        help="sequence groups (default: all)")
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS))
    parser.add_argument("--frames", type=int, default=48, help="synthetic frames (default 48, as the sections)")
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--data", type=Path, default=None, help="shared real data (default: %s)" % DEFAULT_DATA)
    parser.add_argument("--states", type=Path, default=None, metavar="DIR",
                        help="keep each sequence's mapper state here, and re-run only the global pass when "
                             "the settings differ from a kept state's at most in [refine] (~150 MB a map)")
    parser.add_argument("--costs", type=int, default=0, metavar="N",
                        help="after the scores, the N highest-ranked false positives and the N costliest misses "
                             "of each refined group, with what each costs the pooled AP50 (benchmarks.costs)")
    args = parser.parse_args(argv)
    from scene.config import ConfigError

    from segment2d.factory import make_generator

    try:
        config = variant_config(args.settings)
        generator = make_generator(config.segmenter, **config.generator_options())
    except (ConfigError, ValueError, TypeError, OSError) as error:  # CheckpointError is a ValueError
        parser.exit(2, f"benchmarks.variants: {error}\n")
    data = args.data or DEFAULT_DATA
    chosen = sequences(args.only, args.presets)
    if getattr(generator, "needs_instance_ids", False) and any(s.preset is None for s in chosen):
        print(f"skipped: the ScanNet scenes (the {generator.name} generator needs per-pixel instance ids; their "
              "frames carry none)")
        chosen = [s for s in chosen if s.preset is not None]
    missing = [s.name for s in chosen if s.preset is None and not (data / s.name / "gt_boxes.json").is_file()]
    if missing:
        print(f"skipped (no {data}/NAME/gt_boxes.json): {', '.join(missing)}")
    chosen = [s for s in chosen if s.name not in missing]
    if args.states is not None:
        args.states.mkdir(parents=True, exist_ok=True)
    label = ", ".join(args.settings) or "defaults"
    scored = {}
    for k, sequence in enumerate(chosen, 1):
        scored[sequence] = score(sequence, config, data, args.frames, tuple(args.size), args.states, args.costs > 0,
                                 generator)
        print(f"  {k}/{len(chosen)} {sequence.name} mapped", flush=True)
    print("ScanNet: non-structure box AP25/AP50; synthetic (noisy): instance AP/AP50, seeds 0-1 tuned on, "
          "2-5 held out")
    for line in report_lines(label, scored):
        print(line)
    if args.costs > 0:
        for line in cost_report(scored, args.costs):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
