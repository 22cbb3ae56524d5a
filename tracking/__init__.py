"""Tracking: fuse per-frame 3D segments into persistent 3D objects (online association + global refinement).

    tracker = OnlineTracker(TrackerConfig(), LiftConfig())  # the lift sets voxel size, stride, depth range
    for frame in source:
        tracked = track_frame(tracker, frame, generator.generate(frame))   # the path scene.pipeline.Mapper runs
    online = tracker.object_map()                          # ObjectMap: object per voxel, confidences
    refined = refine(tracker, RefineConfig())              # RefineResult: .object_map, .remap, ...

Units: metres, world frame of the frames' camera-to-world poses; voxel keys as ``lift3d.voxels``.
"""
from .config import AssociationConfig, RefineConfig, TrackerConfig
from .consensus import ConsensusInput, ConsensusResult, view_consensus
from .export import ObjectMap, observation_confidence
from .objects import ObjectTable
from .online import OnlineTracker, StepResult
from .pipeline import (FrameLifter, LiftedFrame, PartitionConfig, TrackedFrame, exclusive_masks, lift_frame_masks,
                       track_frame)
from .records import SegmentRecords, SurfaceRecords
from .refine import RefineResult, refine

__all__ = [
    "AssociationConfig", "ConsensusInput", "ConsensusResult", "FrameLifter", "LiftedFrame", "ObjectMap",
    "ObjectTable", "OnlineTracker", "PartitionConfig", "RefineConfig", "RefineResult", "SegmentRecords",
    "StepResult", "SurfaceRecords", "TrackedFrame", "TrackerConfig", "exclusive_masks", "lift_frame_masks",
    "observation_confidence", "refine", "track_frame", "view_consensus",
]
