"""Frame sources: readers for real RGB-D formats and the synthetic generator (imported as ``scene.datasets``)."""
from .frame import DatasetError, Frame, is_valid_pose
from .base import FrameSource
from .readers import (
    GTObject, GTPoints, ProjectSource, RedwoodSource, ReplicaSource, RosBagSource, ScanNetPosedImagesSource,
    ScanNetSource, SevenScenesSource, TUMSource,
)
from .detect import detect_format, open_dataset

__all__ = [
    "DatasetError", "Frame", "FrameSource", "is_valid_pose",
    "GTObject", "GTPoints", "ProjectSource", "RedwoodSource", "ReplicaSource", "RosBagSource", "ScanNetPosedImagesSource",
    "ScanNetSource", "SevenScenesSource", "TUMSource",
    "detect_format", "open_dataset",
]

_SYNTHETIC = {"make_scene", "write_scene", "SyntheticSource", "SyntheticScene", "render_contact_sheet"}


def __getattr__(name: str):
    # The synthetic generator pulls in Open3D: import it only when asked for.
    if name in _SYNTHETIC:
        from . import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module 'scene.datasets' has no attribute {name!r}")
