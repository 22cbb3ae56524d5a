"""The sequences the suites map, sized for a full or a ``--quick`` run, each mapped at most once per run
(memoised in ``BenchContext.cache``: the ScanNet pass serves the box AP, speed and frame-scaling
sections; the synthetic passes serve accuracy and object-scaling)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

from benchmarks.suites.common import BenchContext, SequenceRun, SuiteSkipped, map_sequence, require_pipeline

PRESETS = ("tabletop", "room", "cluttered")
SCANNET = "scannet_scene0448_01"
# ScanNet scenes with GT boxes, scored per scene and pooled (scene0448_01: 11 boxes, scene0113_00: 4)
SCANNET_SCENES = (SCANNET, "scannet_scene0113_00")
SEVENSCENES = "7scenes_redkitchen"


@dataclass(frozen=True)
class Sizes:
    """How big the runs are: synthetic frames per sequence, resolution (pixels), seeds, the accuracy
    grid's presets and noise variants; real-data frame caps and the frame-count checkpoints; the seed
    groups the accuracy and robustness sections report apart (seeds 0-1 were tuned on, 2-5 held out)
    and the (preset, noisy) scenes of the robustness section."""

    synthetic_frames: int
    width: int
    height: int
    seeds: tuple
    accuracy_presets: tuple
    accuracy_noise: tuple
    real_frames: int | None
    frame_checkpoints: tuple
    recall_frames: int
    accuracy_seed_groups: tuple
    robustness_scenes: tuple
    robustness_seed_groups: tuple


TUNED_SEEDS, HELD_OUT_SEEDS = (0, 1), (2, 3, 4, 5)
FULL = Sizes(48, 640, 480, (0, 1), PRESETS, (False, True), None, (50, 100, 200, 300), 6,
             (TUNED_SEEDS, HELD_OUT_SEEDS), (("room", True), ("cluttered", True)), (TUNED_SEEDS, HELD_OUT_SEEDS))
QUICK = Sizes(4, 320, 240, (0,), ("tabletop",), (False,), 6, (3, 6), 1, ((0,),), (("tabletop", True),), ((0,),))


def sizes(ctx: BenchContext) -> Sizes:
    return QUICK if ctx.quick else FULL


@dataclass
class SyntheticRun:
    """A mapped synthetic sequence and its scene (for ground truth)."""

    scene: object
    run: SequenceRun


def synthetic_scene(ctx: BenchContext, preset: str, noisy: bool, seed: int):
    """The seeded synthetic scene at the run's size (``SuiteSkipped`` without the generator)."""
    try:
        from scene.datasets.synthetic import make_scene
    except ImportError as exc:
        raise SuiteSkipped(f"scene.datasets.synthetic is not available ({exc})") from None
    size = sizes(ctx)
    key = ("scene", preset, noisy, seed, size)
    if key not in ctx.cache:  # the robustness section maps one scene under several mask conditions
        ctx.cache[key] = make_scene(preset, seed=seed, noisy=noisy, num_frames=size.synthetic_frames,
                                    width=size.width, height=size.height)
    return ctx.cache[key]


def synthetic_run(ctx: BenchContext, preset: str, noisy: bool, seed: int, generator: str = "geometric",
                  degrade=None) -> SyntheticRun:
    """Map one synthetic sequence with the default config and the named mask generator ("geometric",
    the default, or "ground-truth": the frames' GT instance masks), memoised. ``degrade``: a
    ``segment2d.degrade.DegradeConfig`` applied to the generator's masks (seeded by the scene's seed
    and the frame index); None or all rates 0: the masks as generated."""
    if degrade is not None and degrade.is_identity:
        degrade = None
    key = ("synthetic", preset, noisy, seed, generator, sizes(ctx), degrade)
    if key not in ctx.cache:
        _, MapperConfig = require_pipeline()
        from segment2d.degrade import DegradedMaskGenerator
        from segment2d.factory import make_generator

        scene = synthetic_scene(ctx, preset, noisy, seed)
        name = f"{preset}-{'noisy' if noisy else 'clean'}-s{seed}" + ("" if generator == "geometric" else f" ({generator})")
        masks = make_generator(generator)
        if degrade is not None:
            masks, name = DegradedMaskGenerator(masks, degrade, seed=seed), name + " degraded"
        ctx.log(f"  mapping synthetic {name}: {len(scene)} frames {scene.width}x{scene.height}")
        run = map_sequence(name, scene.frames(), MapperConfig(), log=ctx.log, generator=masks)
        ctx.cache[key] = SyntheticRun(scene, run)
    return ctx.cache[key]


def real_source(ctx: BenchContext, name: str):
    """The shared real sequence ``name`` (capped at the run's size); ``SuiteSkipped`` when absent."""
    from scene.datasets import open_dataset

    path = ctx.data_set(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ScanNet's skipped non-finite poses: reported by the reader, expected
        return open_dataset(path, stop=sizes(ctx).real_frames)


def real_run(ctx: BenchContext, name: str) -> SequenceRun:
    """Map a shared real sequence with the default config, timing refinement at the frame checkpoints
    (clipped to the sequence length), memoised."""
    key = ("real", name, sizes(ctx))
    if key not in ctx.cache:
        _, MapperConfig = require_pipeline()
        source = real_source(ctx, name)
        marks = sorted({min(c, len(source)) for c in sizes(ctx).frame_checkpoints})
        ctx.log(f"  mapping {name}: {len(source)} frames")
        ctx.cache[key] = map_sequence(name, source, MapperConfig(), checkpoints=marks, log=ctx.log)
    return ctx.cache[key]
