"""Seeing the map: offscreen renders, 2D overlays and videos, and an interactive web viewer.

``viz`` reads from every layer below it and nothing imports it except the application layer (``scene.app``:
the CLI and the demo).
"""
from .camera import OverviewConfig, look_at, overview_camera, pinhole
from .overlay import id_color, overlay_masks
from .render import RenderConfig, render_perspective, render_top_down, save_png
from .video import masks_from_id_image, overlay_sequence, write_video
from .viewer import LiveViewer, ViewerConfig, ViewerHandle, serve_map

__all__ = [
    "LiveViewer", "OverviewConfig", "RenderConfig", "ViewerConfig", "ViewerHandle", "id_color", "look_at",
    "masks_from_id_image", "overlay_masks", "overlay_sequence", "overview_camera", "pinhole",
    "render_perspective", "render_top_down", "save_png", "serve_map", "write_video",
]
