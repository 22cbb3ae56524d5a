"""One reader per RGB-D format; each is a :class:`~scene.datasets.base.FrameSource`."""
from .posed_rgb import PosedRGBSource
from .project import GTObject, GTPoints, ProjectSource
from .redwood import RedwoodSource
from .replica import ReplicaSource
from .rosbag import RosBagSource
from .scannet import ScanNetSource
from .scannet_posed import ScanNetPosedImagesSource
from .sevenscenes import SevenScenesSource
from .tum import TUMSource

__all__ = [
    "GTObject", "GTPoints", "PosedRGBSource", "ProjectSource", "RedwoodSource", "ReplicaSource", "RosBagSource", "ScanNetPosedImagesSource",
    "ScanNetSource", "SevenScenesSource", "TUMSource",
]
