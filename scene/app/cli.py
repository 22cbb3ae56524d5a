"""The ``scene`` command line: one sub-command per job; errors are one clear line and a non-zero exit.

    scene run DATA --out MAP.sqlite      map a dataset (progress on stderr, summary at the end)
    scene run DATA --scan SCAN --out MAP.sqlite   label the user's own scan's vertices (scene.scan)
    scene run DATA --depth stereo --out MAP.sqlite   posed RGB without depth: two-view stereo depth
    scene info MAP                       what a map file holds
    scene query MAP --at X Y Z | --radius X Y Z R | --nearest X Y Z K | --ray OX OY OZ DX DY DZ
    scene export MAP --ply OUT.ply | --scannet DIR --vertices FILE | --json OUT.json
    scene eval MAP --gt PATH             instance AP (synthetic GT or per-point ids) or box AP (gt_boxes.json)
    scene batch INPUTS... --out DIR      many scenes on a Dask cluster; `scene eval DIR` pools their AP
    scene demo                           everything on a generated scene, no data needed
    scene inspect DATA                   detect and summarise a dataset
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path


class CLIError(Exception):
    """An error to show the user as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage text stays behind ``--help``)."""

    def error(self, message: str) -> None:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


# --------------------------------------------------------------------------------------------------
# inspect, demo


def _cmd_inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from scene.datasets import detect_format, open_dataset

    if (args.format or detect_format(args.data)) in ("rosbag", "bag", "ros") and not _print_bag_topics(args):
        return 2
    source = open_dataset(args.data, format=args.format, stride=args.stride, **_bag_options(args))
    print(f"{args.data}: format {source.format_name}, {len(source)} frames", end="")
    if getattr(source, "skipped_invalid_pose", 0):
        print(f" ({source.skipped_invalid_pose} skipped for invalid poses)", end="")
    print()
    if len(source):
        frame = source[0]
        valid = frame.depth > 0
        print(f"  image {frame.width}x{frame.height}, fx {frame.K[0, 0]:.2f} fy {frame.K[1, 1]:.2f} "
              f"cx {frame.K[0, 2]:.2f} cy {frame.K[1, 2]:.2f}")
        print(f"  first frame: valid depth {valid.mean():.1%}, depth {frame.depth[valid].min():.2f}-"
              f"{frame.depth[valid].max():.2f} m" if valid.any() else "  first frame: no valid depth")
        centres = source.poses[:, :3, 3]
        print(f"  trajectory length {float(np.linalg.norm(centres[1:] - centres[:-1], axis=1).sum()):.2f} m")
    return 0


def _print_bag_topics(args: argparse.Namespace) -> bool:
    """List a bag's topics and the ones proposed for mapping; False when the choice is ambiguous."""
    from scene.datasets.readers.rosbag import open_bag, propose_topics, summarize_topics

    reader = open_bag(Path(args.data))
    try:
        topics = summarize_topics(reader)
    finally:
        reader.close()
    print(f"{args.data}: ROS bag, {len(topics)} topics")
    for t in topics:
        image = f"  {t.encoding or ''} {f'{t.width}x{t.height}' if t.width else ''} {t.frame_id}".rstrip()
        print(f"  {t.name:<56} {t.msgtype:<36} {t.count:>6}  [{t.kind}]{image}")
    options = _bag_options(args)
    choice = propose_topics(topics, *(options.get(f"{k}_topic") for k in ("color", "depth", "info", "pose")))
    poses = "/tf + /tf_static" if choice.use_tf else choice.pose
    print(f"proposed: --color-topic {choice.color} --depth-topic {choice.depth} --info-topic {choice.info}"
          f" poses from {poses}")
    for problem in choice.problems:
        print(f"  problem: {problem}")
    return not choice.problems


_BAG_OPTIONS = ("color_topic", "depth_topic", "info_topic", "pose_topic", "world_frame", "camera_frame", "pose_frame")


def _bag_options(args: argparse.Namespace) -> dict:
    """The ROS bag options given on the command line (only for bags; an error for other formats)."""
    from scene.datasets.readers.rosbag import is_rosbag

    options = {k: getattr(args, k) for k in _BAG_OPTIONS if getattr(args, k, None) is not None}
    if options and not is_rosbag(args.data) and args.format not in ("rosbag", "bag", "ros"):
        flags = ", ".join("--" + k.replace("_", "-") for k in options)
        raise CLIError(f"{flags}: only for ROS bags, and {args.data} is not one")
    return options


def _reader_options(args: argparse.Namespace) -> dict:
    """The reader options given on the command line: a bag's topics, a posed-RGB folder's pose scale."""
    options = _bag_options(args)
    scale = getattr(args, "pose_scale", None)
    if scale is not None:
        from scene.datasets import detect_format

        if not scale > 0 or not math.isfinite(scale):
            raise CLIError(f"--pose-scale must be a positive number of metres per unit, got {scale}")
        if (args.format or detect_format(args.data)) not in ("posed-rgb", "colmap", "nerfstudio", "posed_rgb"):
            raise CLIError(f"--pose-scale: only for posed RGB without depth (transforms.json, COLMAP), and "
                           f"{args.data} is not one (its depth sets the scale)")
        options["scale"] = scale
    return options


def _add_bag_options(parser: argparse.ArgumentParser) -> None:
    bag = parser.add_argument_group("ROS bags (proposed from the bag when not given; see `scene inspect BAG`)")
    bag.add_argument("--color-topic", default=None, help="sensor_msgs/Image or CompressedImage colour topic")
    bag.add_argument("--depth-topic", default=None, help="depth topic (16UC1 mm or 32FC1 m)")
    bag.add_argument("--info-topic", default=None, help="sensor_msgs/CameraInfo topic for the intrinsics")
    bag.add_argument("--pose-topic", default=None, help="PoseStamped / Odometry topic instead of /tf")
    bag.add_argument("--world-frame", default=None, help="/tf: world frame (default: the root of the camera's tree)")
    bag.add_argument("--camera-frame", default=None, help="camera optical frame (default: the depth image's frame)")
    bag.add_argument("--pose-frame", default=None, help="frame a PoseStamped topic describes (default: the camera's)")


def _cmd_demo(args: argparse.Namespace) -> int:
    from scene.app.demo import MIN_IMAGE_SIZE, run_demo

    if args.width < MIN_IMAGE_SIZE[0] or args.height < MIN_IMAGE_SIZE[1]:
        raise CLIError(f"--width/--height: the demo needs images of at least {MIN_IMAGE_SIZE[0]}x{MIN_IMAGE_SIZE[1]} "
                       f"pixels (got {args.width}x{args.height}); smaller ones hold too few pixels per object")
    run_demo(Path(args.out), preset=args.preset, seed=args.seed, num_frames=args.frames,
             width=args.width, height=args.height)
    return 0


# --------------------------------------------------------------------------------------------------
# run


def _cmd_run(args: argparse.Namespace) -> int:
    if args.scan is not None:
        return _cmd_run_scan(args)
    worker = _segmenter_ahead(args)
    try:
        return _map_sequence(args, worker)
    finally:
        if worker is not None:
            worker.close()  # a no-op once the run took it


def _segmenter_ahead(args: argparse.Namespace):
    """A segmenter process started before the mapping modules are imported (``WaitingWorker``): its start
    (~0.3 s) overlaps theirs (~0.6 s) instead of following it, and it is ready, warmed up with the
    segmenter asked for, for the first frames. Only for a pipelined run on two cores or more; a generator
    that does not run in a process leaves it unused."""
    from segment2d.factory import DEFAULT_GENERATOR
    from segment2d.worker import WaitingWorker, usable_cores

    if args.sequential or usable_cores() < 2:
        return None
    return WaitingWorker(warm_up=args.segmenter or DEFAULT_GENERATOR)


def _map_sequence(args: argparse.Namespace, worker) -> int:
    from scene.datasets import DatasetError, open_dataset
    from scene.pipeline import Mapper, SegmentationError, run

    out = Path(args.out)
    config = _run_config(args)
    source = _with_depth_source(open_dataset(args.data, format=args.format, stride=args.stride, **_reader_options(args)),
                                args.depth)
    if args.resume:
        if not out.exists():
            raise CLIError(f"--resume: no map file {out} to resume")
        mapper = Mapper.resume(out, config)
        config = mapper.config
        try:
            mapper.check_sequence(source)
        except ValueError:
            mapper.close()
            raise
        ending = ("the tracker's state was kept beside it, so the run ends in the global refinement" if mapper.refinable
                  else "a resumed map stays online (the global refinement needs the tracker's state, which a run "
                       "leaves only when it stops on Ctrl-C or an error: map from scratch for a refined map)")
        print(f"resuming {out}: {mapper.num_objects} objects, last frame {mapper.last_frame}; {ending}", file=sys.stderr)
    else:
        _prepare_output(out, args.overwrite)
        mapper = Mapper(config, out, metadata=_metadata(source, config), overwrite=args.overwrite)
    if config.save_every == 0:
        print("scene run: --save-every 0: no incremental saves, the map is written at the end (or on Ctrl-C); "
              "a killed run keeps nothing", file=sys.stderr)
    total = len(source) if args.max_frames is None else min(len(source), args.max_frames)
    progress = _Progress(total, args.quiet)
    viewer = _start_viewer(mapper, args.port) if args.view else None
    start = time.perf_counter()
    try:
        imap = run(source, config, progress=_chain(progress, viewer), mapper=mapper, max_frames=total,
                   pipelined=not args.sequential, save_process=_save_process(args.save_writer), worker=worker)
    except KeyboardInterrupt:
        progress.close()
        print(f"scene run: interrupted after {progress.done} frames of this run: {_kept(mapper, out)}", file=sys.stderr)
        return 130
    except (DatasetError, SegmentationError) as exc:
        progress.close()
        print(f"scene run: error: {' '.join(str(exc).split())}", file=sys.stderr)
        print(f"scene run: stopped after {progress.done} frames of this run: {_kept(mapper, out)}", file=sys.stderr)
        return 2
    progress.close()
    _print_run_summary(imap, progress, time.perf_counter() - start, out, mapper.resumed)
    if args.timings:
        _write_timings(Path(args.timings), progress, mapper, imap, time.perf_counter() - start, not args.sequential)
    if viewer is not None:
        viewer.show_until_interrupted(imap)
    return 0


def _save_process(choice: str | None) -> bool | None:
    return None if choice is None else choice == "process"


def _write_timings(path: Path, progress: "_Progress", mapper, imap, seconds: float, pipelined: bool) -> None:
    """``--timings``: per frame its stage seconds ("read", "segment", "lift_associate", "map_update", "save",
    "latency"), then finalize's ("global_pass", "final_save"), the run's seconds, the map's size, and the
    peak resident memory (bytes) of this process and of its largest finished child (the segmenter or
    the writer process of a pipelined run), and the writer process's CPU seconds and peak resident memory
    ("writer_process": "cpu_s", "peak_rss_bytes"; empty without one)."""
    import resource

    report = {"frames": progress.timings, "finalize": mapper.finalize_timings, "run_s": seconds,
              "pipelined": pipelined, "objects": len(imap), "points": int(imap.num_points),
              "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "worker_peak_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
              "writer_process": getattr(mapper, "writer_process_stats", {})}
    try:
        path.write_text(json.dumps(report, indent=1))
    except OSError as exc:
        raise CLIError(f"--timings: cannot write {path} ({exc.strerror or exc})") from None


def _kept(mapper, out: Path) -> str:
    """What the map file holds after a run stopped early (the pipeline saved what it had)."""
    frames = mapper.num_frames
    if frames == 0:
        return f"no frame was mapped, nothing saved ({out} {'kept as it was' if out.exists() else 'not written'})"
    kept = f"the map so far ({frames} frames, online, not refined) is saved in {out}"
    if mapper.kept_state is not None:
        return f"{kept}, the tracker's state in {mapper.kept_state}; continue with --resume (it ends refined)"
    return f"{kept}; continue with --resume"


def _with_depth_source(source, depth: str):
    """``--depth stereo``, or ``auto`` on a source without depth (posed RGB): the frames' depth comes
    from two-view stereo between posed frames."""
    has_depth = getattr(source, "has_depth", True)
    if depth == "sensor" and not has_depth:
        raise CLIError(f"{source.root}: these frames have no depth ({source.format_name}); use --depth stereo, or "
                       f"--scan MESH to render depth from a mesh")
    if depth != "stereo" and (depth != "auto" or has_depth):
        return source
    from lift3d.stereo import StereoDepthSource

    if depth == "auto":
        print(f"{source.root}: no depth in these frames ({source.format_name}); depth by two-view stereo "
              f"between posed frames (--depth stereo)", file=sys.stderr)
    return StereoDepthSource(source)


def _cmd_run_scan(args: argparse.Namespace) -> int:
    """``scene run DATA --scan SCAN|auto``: label the user's scan; writes the map file (--out), and beside
    it ``<out>_scan/<scene>.ply`` (the scan coloured by instance, ids as the ``instance`` property) and
    ``<out>_scan/scannet/`` (ScanNet instance predictions, the scan's vertex order)."""
    from lift3d.scan_io import find_scan
    from scene.datasets import open_dataset
    from scene.scan import ScanConfig, ScanMapper, write_scan_outputs

    if args.resume:
        raise CLIError("--resume does not apply to --scan (a scan run is one pass)")
    out = Path(args.out)
    _prepare_output(out, args.overwrite)
    scan_path = find_scan(args.data) if args.scan == "auto" else Path(args.scan)
    if scan_path is None:
        raise CLIError(f"--scan auto: no *_vh_clean_2.ply or points/*.bin next to {args.data}")
    if args.depth == "stereo":
        raise CLIError("--depth stereo is for mapping without a scan; with --scan use --depth sensor, mesh or auto")
    source = open_dataset(args.data, format=args.format, stride=args.stride, **_reader_options(args))
    mapper_config = _run_config(args)
    config = ScanConfig(depth=args.depth, segmenter=mapper_config.segmenter,
                        segmenter_options=mapper_config.segmenter_options, mapper=mapper_config,
                        labels=args.scan_labels)
    mapper = ScanMapper(scan_path, config, metadata=_metadata(source, mapper_config))
    print(f"scan {scan_path}: {mapper.scan.num_vertices:,} vertices, {'mesh' if mapper.scan.is_mesh else 'point cloud'}",
          file=sys.stderr)
    total = len(source) if args.max_frames is None else min(len(source), args.max_frames)
    start = time.perf_counter()
    interrupted = _integrate_scan_frames(mapper, source, total, args.quiet)
    if not args.quiet:
        print(f"{mapper.num_frames} frames fused; global pass and labelling the scan's vertices ...", file=sys.stderr)
    result = mapper.finalize()
    folder = out.with_name(out.stem + "_scan")
    scene_name = scan_path.name.split(".")[0].replace("_vh_clean_2", "")
    written = write_scan_outputs(result, folder, scene_name, map_path=out)
    labelled = float((result.vertex_ids >= 0).mean())
    print(f"{result.frames} frames in {time.perf_counter() - start:.1f} s{' (interrupted: outputs hold the frames so far)' if interrupted else ''}: "
          f"{len(result.instance_ids)} instances, {labelled:.1%} of the vertices labelled"
          f"{'' if result.superpoints is None else f' ({result.superpoints.count:,} superpoints)'}\n"
          f"  map {written['map']}\n  labelled scan {written['ply']}\n  ScanNet predictions {written['scannet']}")
    return 130 if interrupted else 0


def _integrate_scan_frames(mapper, source, total: int, quiet: bool) -> bool:
    """Feed frames with a progress bar (the next frame read and segmented while this one is integrated);
    True when Ctrl-C stopped it (the frames so far are kept)."""
    from tqdm import tqdm

    from scene.scan import integrate_frames

    bar = tqdm(total=total, unit="frame", file=sys.stderr, disable=quiet, dynamic_ncols=True)
    try:
        integrate_frames(mapper, source, total, lambda done, _: bar.update(1))
    except KeyboardInterrupt:
        if not mapper.num_frames:
            raise
        return True
    finally:
        bar.close()
    return False


def _run_config(args: argparse.Namespace):
    from dataclasses import replace

    from scene.config import MapperConfig, load_config

    config = load_config(args.config) if args.config else MapperConfig()
    changes = {}
    if args.segmenter is not None:
        changes["segmenter"] = args.segmenter
    if args.checkpoint is not None:
        changes["segmenter_options"] = {**config.segmenter_options, "checkpoint": args.checkpoint}
    if args.online_only:
        changes["online_only"] = True
    if args.save_every is not None:
        changes["save_every"] = args.save_every
    return replace(config, **changes) if changes else config


def _prepare_output(out: Path, overwrite: bool) -> None:
    if not out.parent.is_dir():
        raise CLIError(f"--out {out}: folder {out.parent} does not exist")
    if out.exists() and not overwrite:
        raise CLIError(f"--out {out} already exists (use --overwrite to replace it, --resume to continue it)")
    # --overwrite: the Mapper replaces it under the writer lock, at its first save (never before)


def _metadata(source, config):
    from scene.map import MapMetadata

    return MapMetadata(voxel_size=config.voxel_size, source_path=str(Path(source.root).resolve()),
                       source_format=source.format_name)


class _Progress:
    """A tqdm bar on stderr (frames/s, objects) that also keeps every frame's stage timings."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="frame", file=sys.stderr, disable=quiet, dynamic_ncols=True)
        self.timings: list[dict] = []
        self.done = 0

    def __call__(self, result, done: int, total: int) -> None:
        self.timings.append(result.timings)
        self.done += 1
        self.bar.set_postfix(objects=result.num_objects, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()

    def stage_medians(self) -> dict:
        import numpy as np

        if not self.timings:
            return {}
        return {stage: float(np.median([t[stage] for t in self.timings])) for stage in self.timings[0]}


def _chain(*callbacks):
    live = [c for c in callbacks if c is not None]

    def call(result, done, total):
        for c in live:
            c(result, done, total)

    return call


class _Viewer:
    """viz's LiveViewer following the map while it grows (at most one update a second: each update
    rebuilds the objects touched since the last one)."""

    def __init__(self, mapper, port: int) -> None:
        from viz.viewer import LiveViewer

        self.mapper = mapper
        self.handle = LiveViewer(port=port)
        self._last = 0.0
        print(f"scene run: viewer at {self.handle.url}", file=sys.stderr)

    def __call__(self, result, done: int, total: int) -> None:
        if time.perf_counter() - self._last >= 1.0 or done == total:
            self.handle.update(self.mapper.map)
            self._last = time.perf_counter()

    def show_until_interrupted(self, imap) -> None:
        self.handle.update(imap)
        print(f"scene run: showing the final map at {self.handle.url}; Ctrl-C to quit", file=sys.stderr)
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.handle.stop()


def _start_viewer(mapper, port: int):
    try:
        return _Viewer(mapper, port)
    except ImportError as exc:
        print(f"scene run: --view needs viz.viewer and viser ({exc}); continuing without a viewer", file=sys.stderr)
        return None


def _print_run_summary(imap, progress: _Progress, seconds: float, out: Path, resumed: bool = False) -> None:
    medians = progress.stage_medians()
    stages = ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in medians.items())
    rate = progress.done / seconds if seconds > 0 else 0.0
    refined = "refined" if imap.metadata.extra.get("refined") else (
        "online only: resumed, no global refinement" if resumed else "online only")
    print(f"mapped {progress.done} frames in {seconds:.1f} s ({rate:.2f} frames/s): {len(imap)} objects "
          f"({refined}), {imap.num_points} points")
    if len(imap) == 0:
        print(f"  the map is empty: no object was found in its {imap.num_frames} frames (check the depth images "
              f"and the segmenter)")
    if stages:
        print(f"  per frame (median): {stages}")
    saves = [t["save"] for t in progress.timings if t["save"] > 0]
    if saves:
        import numpy as np

        print(f"  incremental saves: {len(saves)}, {1000 * float(np.median(saves)):.0f} ms each (median)")
    print(f"  map: {out}")


# --------------------------------------------------------------------------------------------------
# batch


def _cmd_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from scene.batch import BatchConfig, run_batch

    options = {k: getattr(args, k) for k in _BAG_OPTIONS if getattr(args, k, None) is not None}
    memory = int(args.memory_limit) if args.memory_limit.isdigit() else args.memory_limit
    config = BatchConfig(workers=args.workers or 2, scheduler=args.scheduler, memory_limit=memory,
                         mapper=_run_config(args), format=args.format, stride=args.stride,
                         max_frames=args.max_frames, options=options)
    bar = tqdm(total=len(args.inputs), unit="scene", file=sys.stderr, disable=args.quiet, dynamic_ncols=True)

    def progress(result) -> None:
        bar.set_postfix_str(f"{result.name} {result.status}", refresh=False)
        bar.update(1)
        if result.status == "failed":
            bar.write(f"scene batch: {result.name} failed: {result.error}", file=sys.stderr)

    where = args.scheduler or f"a local cluster of {config.workers} workers ({config.memory_limit} each)"
    print(f"scene batch: {len(args.inputs)} scenes on {where}, maps in {args.out}", file=sys.stderr)
    try:
        report = run_batch(args.inputs, args.out, config, on_result=progress)
    except KeyboardInterrupt:
        bar.close()
        print(f"scene batch: interrupted; finished maps are kept in {args.out}: run the same command to "
              f"continue", file=sys.stderr)
        return 130
    bar.close()
    print(f"batch: {report.count('done')} mapped, {report.count('skipped')} already done, "
          f"{report.count('failed')} failed, {report.seconds:.1f} s; report {Path(args.out) / 'batch.json'}")
    for scene in report.scenes:
        detail = scene.error if scene.status == "failed" else (
            f"{scene.frames} frames, {scene.objects} objects, {scene.seconds:.1f} s, worker peak "
            f"{scene.peak_rss_mib:.0f} MiB" if scene.status == "done" else "kept from an earlier run")
        print(f"  {scene.name:<32} {scene.status:<8} {detail}")
    return 1 if report.failed else 0


# --------------------------------------------------------------------------------------------------
# info, query, export


def _load_map(path: str):
    from scene.storage import MapStore

    with MapStore(path, read_only=True) as store:
        return store.load(), store.schema_version


def _cmd_view(args: argparse.Namespace) -> int:
    imap, _ = _load_map(args.map)
    try:
        from viz.viewer import serve_map
    except ImportError as exc:
        raise CLIError(f"the viewer needs viser ({exc}); run scripts/setup.sh") from None
    try:
        handle = serve_map(imap, host=args.host, port=args.port)
    except OSError as exc:
        raise CLIError(f"cannot serve on {args.host}:{args.port} ({exc}); try another --port") from None
    print(f"scene view: {len(imap)} objects at {handle.url} (Ctrl-C to stop)", file=sys.stderr)
    handle.serve_forever()
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    imap, schema = _load_map(args.map)
    meta = imap.metadata
    structure = sum(o.is_structure for o in imap)
    print(f"{args.map}: schema version {schema}")
    print(f"  objects {len(imap)} ({structure} structure), points {imap.num_points}, frames {imap.num_frames}, "
          f"voxel size {meta.voxel_size:g} m, refined {meta.extra.get('refined', 'unknown')}")
    print(f"  source {meta.source_path or '?'} (format {meta.source_format or '?'}), "
          f"{len(imap.id_remap)} remapped ids")
    largest = sorted(imap, key=lambda o: -o.num_points)[: args.top]
    if largest:
        print(f"  {'id':>5} {'points':>7} {'obs':>4} {'frames':>11} {'conf':>5} {'struct':>6}  "
              f"{'centroid (m)':>22}  {'size (m)':>18}")
    for o in largest:
        size = o.aabb_max - o.aabb_min
        print(f"  {o.id:>5} {o.num_points:>7} {o.num_observations:>4} {o.first_frame:>5}-{o.last_frame:<5} "
              f"{o.confidence:>5.2f} {'yes' if o.is_structure else '':>6}  {_vec(o.centroid):>22}  {_vec(size):>18}")
    return 0


def _vec(v) -> str:
    return " ".join(f"{float(x):6.2f}" for x in v)


def _cmd_query(args: argparse.Namespace) -> int:
    imap, _ = _load_map(args.map)
    if args.at is not None:
        found = imap.object_at(args.at, args.max_distance)
        rows = [] if found is None else [(found, float(imap.within_radius(args.at, args.max_distance)[1][0]))]
    elif args.radius is not None:
        if not args.radius[3] >= 0:
            raise CLIError(f"--radius: R must be a distance >= 0 in metres, got {args.radius[3]:g}")
        ids, distances = imap.within_radius(args.radius[:3], args.radius[3])
        rows = list(zip(ids.tolist(), distances.tolist()))
    elif args.nearest is not None:
        k = args.nearest[3]
        if k != int(k) or k < 1:
            raise CLIError(f"--nearest: K must be a whole number >= 1, got {k:g}")
        ids, distances = imap.nearest(args.nearest[:3], int(k))
        rows = list(zip(ids.tolist(), distances.tolist()))
    else:
        hit = imap.ray_pick(args.ray[:3], args.ray[3:])
        rows = [] if hit is None else [(hit.id, hit.depth)]
    what = "depth along ray" if args.ray is not None else "distance"
    if not rows:
        print("no object")
        return 0
    print(f"{'id':>5} {what + ' (m)':>20}  {'aabb min (m)':>20}  {'aabb max (m)':>20}  points")
    for object_id, distance in rows:
        o = imap.get(object_id)
        print(f"{object_id:>5} {distance:>20.3f}  {_vec(o.aabb_min):>20}  {_vec(o.aabb_max):>20}  {o.num_points}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from scene.export import export_scannet, read_vertices, write_instance_ply, write_summary_json

    if not (args.ply or args.scannet or args.json):
        raise CLIError("give at least one of --ply, --scannet, --json")
    if args.scannet and not args.vertices:
        raise CLIError("--scannet needs --vertices FILE (the scan's vertices: PLY or .bin)")
    imap, _ = _load_map(args.map)
    if args.ply:
        print(f"wrote {write_instance_ply(imap, args.ply, color_by=args.color_by)} ({imap.num_points} points)")
    if args.scannet:
        xyz, _ = read_vertices(args.vertices)
        name = args.name or Path(args.vertices).stem
        distance = args.max_distance if args.max_distance is not None else 2 * imap.metadata.voxel_size
        scene_file = export_scannet(imap, xyz, args.scannet, name, max_distance=distance)
        print(f"wrote {scene_file} ({len(xyz)} vertices)")
    if args.json:
        print(f"wrote {write_summary_json(imap, args.json)} ({len(imap)} objects)")
    return 0


# --------------------------------------------------------------------------------------------------
# eval


def _cmd_eval(args: argparse.Namespace) -> int:
    from scene.eval import evaluate_boxes, evaluate_on_point_ids, evaluate_on_project_gt

    if Path(args.map).is_dir():
        return _print_eval(evaluate_batch(Path(args.map), args.max_distance, args.include_structure), args.json)
    if args.gt is None:
        raise CLIError("--gt is required for a map file (only a batch folder finds its scenes' ground truth)")
    imap, _ = _load_map(args.map)
    gt = Path(args.gt)
    distance = args.max_distance if args.max_distance is not None else 2 * imap.metadata.voxel_size
    if gt.is_dir():
        results = evaluate_on_project_gt(imap, gt, distance)
    elif gt.suffix.lower() == ".json":
        results = evaluate_boxes(imap, gt, include_structure=args.include_structure)
    elif gt.suffix.lower() in (".npy", ".txt"):
        if not args.vertices:
            raise CLIError(f"--gt {gt}: per-point ids need --vertices FILE (the points they label)")
        results = evaluate_on_point_ids(imap, gt, Path(args.vertices), distance)
    else:
        raise CLIError(f"--gt {gt}: expected a project-layout folder (gt/points.npz), gt_boxes.json, "
                       f"or per-point ids (.npy/.txt)")
    return _print_eval(results, args.json)


def _print_eval(results: dict, json_path: str | None) -> int:
    for name, values in results.items():
        if isinstance(values, dict):
            # Instance AP: the summary keys only (its per-overlap "ap@..." values are in --json).
            shown = ", ".join(f"{k} {_fmt(v)}" for k, v in values.items() if "ap" not in values or "@" not in k)
            print(f"{name}: {shown}")
        else:
            print(f"{name}: {values}")
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=1))
        print(f"wrote {json_path}")
    return 0


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def evaluate_batch(folder: Path, max_distance: float | None, include_structure: bool = False) -> dict:
    """Pooled AP over the finished scenes of a ``scene batch`` folder (``scene.eval.evaluate_pooled``)."""
    from scene.batch import read_report
    from scene.eval import evaluate_pooled

    report = read_report(folder)
    finished = [(s.name, Path(s.map), Path(s.input)) for s in report.scenes if s.status in ("done", "skipped")]
    unfinished = [s.name for s in report.scenes if s.status not in ("done", "skipped")]
    results = evaluate_pooled(finished, max_distance, include_structure)
    results["protocol"] += f"; not finished: {unfinished or 'none'}"
    return results


# --------------------------------------------------------------------------------------------------
# parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scene", description="3D scene segmentation and instance mapping")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_info(sub)
    _add_view(sub)
    _add_query(sub)
    _add_export(sub)
    _add_eval(sub)
    _add_batch(sub)

    demo = sub.add_parser("demo", help="generate a synthetic scene, map and evaluate it, write pictures (no data needed)")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--preset", default="room-noisy", help="synthetic preset (default: room-noisy)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--frames", type=_positive_int, default=60, help="number of frames to generate (default: 60)")
    demo.add_argument("--width", type=_positive_int, default=640, help="image width in pixels (default: 640)")
    demo.add_argument("--height", type=_positive_int, default=480, help="image height in pixels (default: 480)")
    demo.set_defaults(func=_cmd_demo)

    inspect = sub.add_parser("inspect", help="detect a dataset's format and summarise it")
    inspect.add_argument("data", help="dataset folder or ROS bag")
    inspect.add_argument("--format", default=None, help="force a format instead of detecting it")
    inspect.add_argument("--stride", type=int, default=1)
    _add_bag_options(inspect)
    inspect.set_defaults(func=_cmd_inspect)
    return parser


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``, or a message naming what was given."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _distance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a distance in metres, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite distance >= 0 in metres, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {value}")
    return value


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="map a dataset into an instance map file")
    run.add_argument("data", help="dataset folder (any supported format) or ROS bag (.bag, .db3, .mcap, bag folder)")
    run.add_argument("--out", required=True, help="map file to write (SQLite, e.g. map.sqlite)")
    run.add_argument("--format", default=None, help="force a dataset format instead of detecting it")
    run.add_argument("--segmenter", default=None, help="mask generator: geometric (default), sam, sam-hq, sam2 (keyframe masks + video propagation), or ground-truth (synthetic data with instance ids)")
    run.add_argument("--checkpoint", default=None, help="checkpoint for --segmenter sam (sam_vit_*.pth, mobile_sam.pt), sam-hq (sam_hq_vit_*.pth) or sam2 (sam2.1_hiera_*.pt)")
    run.add_argument("--stride", type=_positive_int, default=1, help="use every N-th frame")
    run.add_argument("--max-frames", type=_positive_int, default=None, help="stop after N frames")
    run.add_argument("--online-only", action="store_true", help="skip the global refinement")
    run.add_argument("--save-every", type=_nonnegative_int, default=None,
                     help="incremental save every N frames (default 10; 0: only the final save)")
    run.add_argument("--config", default=None, help="TOML config (see docs/config.example.toml)")
    run.add_argument("--view", action="store_true", help="show the map live in a browser (viz.viewer)")
    run.add_argument("--port", type=_port, default=8080, help="--view: viewer port on 127.0.0.1 (default 8080)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    run.add_argument("--resume", action="store_true", help="continue the map in --out after its last frame")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--sequential", action="store_true",
                     help="read, segment, map and save on one thread (default: the next frame is read and segmented, "
                          "and the incremental saves written, on worker threads; the map is the same)")
    run.add_argument("--save-writer", choices=("thread", "process"), default=None,
                     help="pipelined: write the incremental saves on a writer thread or in a writer process of "
                          "their own (default: thread, scene.pipeline.SAVE_IN_PROCESS; the maps are the same)")
    run.add_argument("--timings", default=None, metavar="JSON",
                     help="write every frame's stage timings and the run's totals (seconds) to this JSON file")
    run.add_argument("--scan", default=None, metavar="SCAN",
                     help="label this scan's vertices (.ply mesh or points, ScanNet points/*.bin, .obj); 'auto': "
                          "the *_vh_clean_2.ply or points/*.bin stored with DATA")
    run.add_argument("--scan-labels", choices=("map", "graph", "consensus"), default="map",
                     help="--scan: instances from the voxel map snapped to the scan (map), or superpoints "
                          "clustered on the multi-view graph (graph) or by view consensus (consensus)")
    run.add_argument("--pose-scale", type=float, default=None, metavar="METRES",
                     help="posed RGB without depth: metres per unit of the poses (COLMAP and NeRF models are up to scale)")
    run.add_argument("--depth", choices=("auto", "sensor", "mesh", "stereo"), default="auto",
                     help="depth per frame: the sensor's, rendered from the --scan mesh, auto (sensor, else mesh), "
                          "or stereo (two-view stereo between posed frames; no scan)")
    _add_bag_options(run)
    run.set_defaults(func=_cmd_run)


def _add_batch(sub) -> None:
    batch = sub.add_parser("batch", help="map many scenes on a Dask cluster, one map file per scene (resumable)")
    batch.add_argument("inputs", nargs="+", help="dataset folders and/or ROS bags, one scene each")
    batch.add_argument("--out", required=True, help="folder for the maps (NAME.sqlite) and batch.json")
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, default=None,
                       help="local cluster: worker processes, one thread each (default 2)")
    where.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:8786)")
    batch.add_argument("--memory-limit", default="4GiB", help="per worker, e.g. 4GiB (default); over it the worker "
                                                              "is restarted and its scene reported failed")
    batch.add_argument("--format", default=None, help="force a dataset format for every input")
    batch.add_argument("--stride", type=_positive_int, default=1, help="use every N-th frame")
    batch.add_argument("--max-frames", type=_positive_int, default=None, help="at most N frames per scene")
    batch.add_argument("--segmenter", default=None, help="mask generator (default geometric)")
    batch.add_argument("--checkpoint", default=None, help="SAM checkpoint for --segmenter sam")
    batch.add_argument("--online-only", action="store_true", help="skip the global refinement")
    batch.add_argument("--save-every", type=int, default=None, help="incremental save every N frames")
    batch.add_argument("--config", default=None, help="TOML config (see docs/config.example.toml)")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_bag_options(batch)
    batch.set_defaults(func=_cmd_batch)


def _add_view(sub) -> None:
    view = sub.add_parser("view", help="serve an interactive 3D viewer of a map in the browser")
    view.add_argument("map", help="map file (.sqlite)")
    view.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    view.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    view.set_defaults(func=_cmd_view)


def _add_info(sub) -> None:
    info = sub.add_parser("info", help="summarise a map file")
    info.add_argument("map", help="map file (.sqlite)")
    info.add_argument("--top", type=_positive_int, default=10, help="largest objects to list (default 10)")
    info.set_defaults(func=_cmd_info)


def _add_query(sub) -> None:
    query = sub.add_parser("query", help="spatial queries on a map (metres, world frame)")
    query.add_argument("map", help="map file (.sqlite)")
    kind = query.add_mutually_exclusive_group(required=True)
    kind.add_argument("--at", nargs=3, type=float, metavar=("X", "Y", "Z"), help="the object at a point")
    kind.add_argument("--radius", nargs=4, type=float, metavar=("X", "Y", "Z", "R"), help="objects within R m")
    kind.add_argument("--nearest", nargs=4, type=float, metavar=("X", "Y", "Z", "K"), help="the K nearest objects")
    kind.add_argument("--ray", nargs=6, type=float, metavar=("OX", "OY", "OZ", "DX", "DY", "DZ"),
                      help="the first object along a ray")
    query.add_argument("--max-distance", type=_distance, default=0.05, help="--at: search distance in m (default 0.05)")
    query.set_defaults(func=_cmd_query)


def _add_export(sub) -> None:
    export = sub.add_parser("export", help="write a map as PLY, ScanNet predictions or JSON")
    export.add_argument("map", help="map file (.sqlite)")
    export.add_argument("--ply", default=None, help="instance point cloud PLY to write")
    export.add_argument("--color-by", choices=("instance", "rgb"), default="instance", help="PLY colours")
    export.add_argument("--scannet", default=None, help="folder for ScanNet instance predictions")
    export.add_argument("--vertices", default=None, help="the scan's vertices (PLY, or .bin float32 N x 6 / N x 3)")
    export.add_argument("--name", default=None, help="scene name for --scannet (default: the vertices file's stem)")
    export.add_argument("--max-distance", type=_distance, default=None,
                        help="--scannet: vertex-to-map distance in m (default 2 voxels)")
    export.add_argument("--json", default=None, help="JSON summary to write")
    export.set_defaults(func=_cmd_export)


def _add_eval(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate a map against ground truth")
    ev.add_argument("map", help="map file (.sqlite), or a `scene batch` folder (pooled AP over its scenes)")
    ev.add_argument("--gt", default=None,
                    help="project-layout folder with gt/points.npz, gt_boxes.json, or per-point ids (.npy/.txt); "
                         "a batch folder finds each scene's own")
    ev.add_argument("--vertices", default=None, help="points the per-point ids label (PLY or .bin)")
    ev.add_argument("--max-distance", type=_distance, default=None, help="point-to-map distance in m (default 2 voxels)")
    ev.add_argument("--include-structure", action="store_true", help="box AP: also score structure objects")
    ev.add_argument("--json", default=None, help="write the results as JSON")
    ev.set_defaults(func=_cmd_eval)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a one-line usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader went away (scene info MAP | head -1): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"scene {args.command}: error: {' '.join(str(message).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scene {args.command}: interrupted", file=sys.stderr)
        return 130


def _user_errors() -> tuple[type[Exception], ...]:
    """The errors a command reports as one line. Imported only when one is raised: the modules defining
    them import the mapping layers (scipy among them), which ``scene run`` would otherwise load before it
    starts its segmenter process (``_segmenter_ahead``)."""
    from scene.config import ConfigError
    from scene.datasets import DatasetError
    from scene.storage import MapStorageError

    return CLIError, ConfigError, DatasetError, MapStorageError, FileNotFoundError, KeyError, ValueError, OSError


def entry() -> None:
    """The ``scene`` command (``python -m scene.app``, ``python -m scene``): ``main``, then the exit. After
    ``scene run``, whose map file is written and closed before it returns, the process ends at once
    (``os._exit`` once stdout and stderr are flushed) instead of tearing the interpreter down: freeing
    every module, the map's arrays and the libraries' thread pools one by one took ~0.2 s of a 7-Scenes
    run's wall and nothing reads them. Only when no other thread is still running (a library's worker
    would be cut off; daemon threads such as tqdm's monitor are abandoned at exit anyway); other commands
    exit as usual (their libraries' atexit hooks may matter: Dask's cluster, the viewer's server)."""
    code = main()
    if _ends_at_once(sys.argv[1:]):
        _exit_now(code)
    sys.exit(code)


def _ends_at_once(argv: list[str]) -> bool:
    """Whether the command ``argv`` ran may skip the interpreter's teardown: ``scene run``, once no
    thread that Python would wait for at exit is left (daemon threads are abandoned at exit anyway)."""
    import threading

    waited_for = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    return bool(argv) and argv[0] == "run" and not waited_for


def _exit_now(code: int) -> None:
    """End the process with ``code`` now: flush what Python buffered for stdout and stderr, skip the rest
    of the interpreter's teardown (atexit hooks, module and object finalisation)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to say there
            pass
    os._exit(code)


def _one_line_warning(command: str):
    """``warnings.showwarning`` replacement: "scene CMD: warning: MESSAGE" on stderr, without Python's
    source-line echo."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"scene {command}: warning: {' '.join(str(message).split())}", file=file or sys.stderr)

    return show


if __name__ == "__main__":
    entry()
