"""Tracking: fuse per-frame 3D segments into persistent 3D objects (online association + global refinement)."""
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
