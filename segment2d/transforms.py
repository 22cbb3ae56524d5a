"""SAM's input geometry: resize an image so its longest side is ``target_length`` (1024), and map
pixel coordinates and boxes from the original image into that resized frame.

Coordinates are pixels (x, y); sizes are (H, W). No torchvision: images are resized with Pillow's
bilinear filter, which is exactly what the official code does (torchvision's resize on a PIL image).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


def preprocess_shape(height: int, width: int, target_length: int) -> tuple[int, int]:
    """(h, w) of an H x W image scaled so its longest side is ``target_length`` (rounded half up)."""
    scale = target_length * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


@dataclass(frozen=True)
class ResizeLongestSide:
    target_length: int = 1024

    def new_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        return preprocess_shape(int(original_size[0]), int(original_size[1]), self.target_length)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 -> h x w x 3 uint8 with max(h, w) == target_length (bilinear, antialiased)."""
        h, w = self.new_size(image.shape[:2])
        return np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))

    def _scale_xy(self, original_size: tuple[int, int]) -> tuple[float, float]:
        h, w = self.new_size(original_size)
        return w / original_size[1], h / original_size[0]

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """... x 2 pixel (x, y) in the original image -> float64 in the resized image."""
        sx, sy = self._scale_xy(original_size)
        return np.asarray(coords, dtype=np.float64) * np.array([sx, sy])

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """B x 4 xyxy pixel boxes in the original image -> float64 in the resized image."""
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """... x 2 pixel (x, y) tensor in the original image -> float32 in the resized image."""
        sx, sy = self._scale_xy(original_size)
        # float64 product, as the numpy path, so both give identical float32 coordinates
        scale = torch.tensor([sx, sy], dtype=torch.float64, device=coords.device)
        return (coords.to(torch.float64) * scale).to(torch.float32)

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """B x 4 xyxy pixel boxes tensor in the original image -> float32 in the resized image."""
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)
