"""2D masks to 3D: back-projection, mask cleaning, sparse voxel keys and label store, visibility, TSDF.

Units: metres; poses camera-to-world, OpenCV axes. A frame's flow into tracking:

    segments = lift_frame(frame, masks, LiftConfig())        # list[Segment3D], 2 cm voxel keys
    keys, groups = stack_voxel_keys(segments)
    seg, label, count = store.overlaps(keys, groups)         # voxels each segment shares with each label
    store.add(keys, label_of_segment[groups])                # after association
    vis = classify_voxels(store.keys_of(label), 0.02, frame.depth, frame.K, frame.pose)

``LabelStore.index`` (a ``VoxelIndex``) gives every voxel a stable row, so per-voxel data of a later
layer (times seen, colour sums) can live in arrays indexed by ``store.index.lookup(keys)``.
"""
from .backproject import backproject, backproject_masks, backproject_pixels, project
from .clean import CleanConfig, clean_mask_pixels, depth_discontinuities
from .labels import LabelStore, LabelStoreConfig
from .lift import LiftConfig, lift_frame, lift_masks, lift_partition
from .split import grouped_cell_components
from .types import Segment3D, stack_voxel_keys
from .visibility import (
    FREE,
    NO_DEPTH,
    OCCLUDED,
    OUT_OF_VIEW,
    SURFACE,
    Visibility,
    VisibilityConfig,
    classify_points,
    classify_voxels,
)
from .voxels import VoxelIndex, cells_of_points, keys_of_points, pack_keys, unpack_keys, voxel_centers


def __getattr__(name: str):
    # The TSDF needs Open3D (seconds to import): loaded on first use, so lifting and the map stay light.
    if name in ("TSDFConfig", "TSDFFusion"):
        from . import tsdf

        return getattr(tsdf, name)
    raise AttributeError(f"module 'lift3d' has no attribute {name!r}")


__all__ = [
    "CleanConfig", "FREE", "LabelStore", "LabelStoreConfig", "LiftConfig", "NO_DEPTH", "OCCLUDED",
    "OUT_OF_VIEW", "SURFACE", "Segment3D", "TSDFConfig", "TSDFFusion", "Visibility", "VisibilityConfig",
    "VoxelIndex", "backproject", "backproject_masks", "backproject_pixels", "cells_of_points",
    "classify_points", "classify_voxels", "clean_mask_pixels", "depth_discontinuities",
    "grouped_cell_components", "keys_of_points", "lift_frame", "lift_masks", "lift_partition", "pack_keys",
    "project", "stack_voxel_keys", "unpack_keys", "voxel_centers",
]
