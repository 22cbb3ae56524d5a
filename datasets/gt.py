"""Ground-truth types shared by the synthetic generator and the readers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GTPoints:
    """World-frame ground-truth points: ``xyz`` N x 3 float32 metres, ``ids`` N int32 instance ids
    (0 = void), ``colors`` N x 3 uint8 RGB. Unpacks as ``xyz, ids, colors``."""

    xyz: np.ndarray
    ids: np.ndarray
    colors: np.ndarray

    def __iter__(self):
        return iter((self.xyz, self.ids, self.colors))

    def __len__(self) -> int:
        return len(self.xyz)
