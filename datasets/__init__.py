"""Frame sources: readers for real RGB-D formats and the synthetic generator (imported as ``scene.datasets``)."""
from .frame import DatasetError, Frame, is_valid_pose
from .base import FrameSource
from .readers import (
    GTObject, GTPoints, ProjectSource, RedwoodSource, ReplicaSource, ScanNetPosedImagesSource, ScanNetSource,
    SevenScenesSource, TUMSource,
)
from .detect import detect_format, open_dataset

__all__ = [
    "DatasetError", "Frame", "FrameSource", "is_valid_pose",
    "GTObject", "GTPoints", "ProjectSource", "RedwoodSource", "ReplicaSource", "ScanNetPosedImagesSource",
    "ScanNetSource", "SevenScenesSource", "TUMSource",
    "detect_format", "open_dataset",
]
