"""Tracking: fuse per-frame 3D segments into persistent 3D objects (online association + global refinement).

    tracker = OnlineTracker(TrackerConfig())              # voxel size / surface stride = the lift's
    for frame in source:
        result = track_frame(tracker, frame, generator.generate(frame))   # or tracker.step(frame, segments)
    online = tracker.object_map()                          # ObjectMap: object per voxel, confidences
    refined = refine(tracker, RefineConfig())              # RefineResult: .object_map, .remap, ...

Units: metres, world frame of the frames' camera-to-world poses; voxel keys as ``lift3d.voxels``.
"""
from .config import AssociationConfig, RefineConfig, TrackerConfig
from .consensus import ConsensusInput, ConsensusResult, view_consensus
from .export import ObjectMap, observation_confidence
from .objects import ObjectTable
from .online import OnlineTracker, StepResult
from .pipeline import FramePipelineConfig, PartitionConfig, exclusive_masks, track_frame
from .records import SegmentRecords, SurfaceRecords
from .refine import RefineResult, refine

__all__ = [
    "AssociationConfig", "ConsensusInput", "ConsensusResult", "FramePipelineConfig", "ObjectMap", "ObjectTable",
    "OnlineTracker", "PartitionConfig", "RefineConfig", "RefineResult", "SegmentRecords", "StepResult",
    "SurfaceRecords", "TrackerConfig", "exclusive_masks", "observation_confidence", "refine", "track_frame",
    "view_consensus",
]
