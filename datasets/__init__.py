"""Frame sources: readers for real RGB-D formats and the synthetic generator (imported as ``scene.datasets``)."""
from .frame import DatasetError, Frame, is_valid_pose
from .base import FrameSource

__all__ = ["DatasetError", "Frame", "FrameSource", "is_valid_pose"]
