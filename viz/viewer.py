"""Interactive web viewer of an ``InstanceMap`` (viser): instance-coloured points, an object list with
attributes, selection with box and best-view image, toggles for structure and the camera path.

``serve_map(map_or_path)`` shows a finished map; ``LiveViewer().update(map)`` shows a map while it grows
(only objects that changed since the last update are re-sent). Open the printed URL in a browser.
Metres, world frame; poses camera-to-world with OpenCV axes (viser uses the same camera convention).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scene.map import InstanceMap, MapObject
from viz.camera import OverviewConfig, overview_camera, robust_bounds, unit_up
from viz.crops import BestViewCrops
from viz.overlay import id_color
from viz.render import point_spacing

NONE_SELECTED = "(none)"
BOX_KINDS = ("oriented", "axis-aligned")
COLOR_MODES = ("instance", "rgb")


@dataclass
class ViewerConfig:
    """``point_size`` metres (default per object: twice the median spacing of the points sent, at least
    the map's voxel size, so sparse objects still look closed); objects above
    ``max_points_per_object`` points are thinned (every k-th point) before sending; unselected objects
    keep ``dim`` of their colour (the rest is light grey) while one is selected; structure is always
    faded ``structure_fade`` of the way to light grey so objects stand out; ceilings (horizontal
    structure above the map's middle height) start hidden so the default view from above sees in; at most
    ``max_frustums`` camera frustums are drawn along the trajectory."""

    point_size: float | None = None
    max_points_per_object: int = 40000
    dim: float = 0.2
    structure_fade: float = 0.6
    show_structure: bool = True
    show_ceiling: bool = False
    show_trajectory: bool = True
    max_frustums: int = 30
    color_mode: str = "instance"
    title: str = "scene map"

    def __post_init__(self) -> None:
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"ViewerConfig: color_mode must be one of {COLOR_MODES}, got {self.color_mode!r}")
        if not 0.0 <= self.dim <= 1.0:
            raise ValueError(f"ViewerConfig: dim must be in [0, 1], got {self.dim}")


class ViewerHandle:
    """A running viser server showing one map. ``update(map)`` re-sends changed objects, ``select(id)``
    highlights one (None clears), ``stop()`` shuts the server down. ``url`` is where to point a browser."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, config: ViewerConfig | None = None) -> None:
        import viser

        check_port(port)
        self.config = config or ViewerConfig()
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self._lock = threading.RLock()
        self._map: InstanceMap | None = None
        self._sent: dict[int, MapObject] = {}
        self._clouds: dict[int, object] = {}
        self._selected: int | None = None
        self._box = None
        self._path = None
        self._frustums: dict[int, object] = {}
        self._trajectory_frames = -1
        self._camera_set = False
        self._middle_height = 0.0
        self._crops = BestViewCrops()
        self._build_gui()

    # ---- public ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self.server.get_port())

    @property
    def url(self) -> str:
        return f"http://{self.server.get_host()}:{self.port}"

    @property
    def selected(self) -> int | None:
        return self._selected

    def update(self, instance_map: InstanceMap) -> int:
        """Show ``instance_map``: objects replaced since the last call (compared by identity: the map
        replaces objects instead of mutating them) are re-sent, removed ones deleted; returns how many
        objects were sent."""
        if not isinstance(instance_map, InstanceMap):
            raise TypeError(f"update() takes an InstanceMap, got {type(instance_map).__name__}")
        with self._lock, self.server.atomic():
            self._map = instance_map
            current = {o.id: o for o in instance_map}
            self._middle_height = _middle_height(instance_map)
            for gone in [i for i in self._sent if i not in current]:
                self._clouds.pop(gone).remove()
                del self._sent[gone]
            changed = [o for i, o in current.items() if self._sent.get(i) is not o]
            for obj in changed:
                self._send_object(obj)
            self._refresh_trajectory(instance_map)
            self._refresh_list(instance_map)
            if self._selected is not None and self._selected not in current:
                self.select(None)  # the selected object is gone: undim the rest
            elif self._selected is not None and any(o.id == self._selected for o in changed):
                self._draw_box()  # re-sent clouds already carry the right (dimmed or not) colours
                self._show_details()
            self._place_camera_once(instance_map)
        return len(changed)

    def select(self, object_id: int | None) -> None:
        """Highlight object ``object_id`` (others dimmed, its box and best view shown); None clears."""
        with self._lock:
            if object_id is not None and (self._map is None or int(object_id) not in self._map):
                raise KeyError(f"select: no object with id {object_id} in the shown map")
            self._selected = None if object_id is None else int(object_id)
            label = NONE_SELECTED if object_id is None else self._option_of(self._map.get(int(object_id)))
            if self._dropdown.value != label:
                self._dropdown.value = label  # its callback calls back into select; the lock is re-entrant
            with self.server.atomic():
                self._apply_highlight()
                self._show_details()

    def stop(self) -> None:
        """Shut the server down (idempotent)."""
        self.server.stop()

    def serve_forever(self, poll_seconds: float = 0.5) -> None:
        """Block until Ctrl-C (for a command line ``view``), then stop the server."""
        try:
            while True:
                time.sleep(poll_seconds)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # ---- scene ----------------------------------------------------------------------------------

    def _send_object(self, obj: MapObject) -> None:
        step = max(1, -(-obj.num_points // self.config.max_points_per_object))
        points = obj.points[::step]
        handle = self.server.scene.add_point_cloud(
            f"/objects/{obj.id}", points, self._colors(obj, step), point_size=self._point_size(points),
            point_shape="square", point_shading="flat",
            visible=self._visible(obj),
        )
        self._clouds[obj.id] = handle
        self._sent[obj.id] = obj

    def _colors(self, obj: MapObject, step: int = 0) -> np.ndarray:
        step = step or max(1, -(-obj.num_points // self.config.max_points_per_object))
        n = len(obj.points[::step])
        base = (np.repeat(id_color(obj.id), n, axis=0) if self._color_mode.value == "instance"
                else obj.colors[::step])
        keep = 1.0
        if obj.is_structure:
            keep *= 1.0 - self.config.structure_fade
        if self._selected is not None and obj.id != self._selected:
            keep *= self.config.dim
        return base if keep == 1.0 else (base * np.float32(keep) + np.float32(225.0 * (1 - keep))).astype(np.uint8)

    def _point_size(self, points: np.ndarray) -> float:
        if self.config.point_size is not None:
            return float(self.config.point_size)
        voxel = self._map.metadata.voxel_size
        return float(np.clip(2.0 * point_spacing(points), voxel, 10.0 * voxel))

    def _apply_highlight(self) -> None:
        for object_id, handle in self._clouds.items():
            handle.colors = self._colors(self._sent[object_id])
        self._draw_box()

    def _draw_box(self) -> None:
        if self._box is not None:
            self._box.remove()
            self._box = None
        if self._selected is not None:
            obj = self._map.get(self._selected)
            segments = box_segments(obj, oriented=self._box_kind.value == "oriented")
            self._box = self.server.scene.add_line_segments(
                "/selection/box", segments, tuple(int(c) for c in id_color(obj.id)[0]), thickness=3.0,
                thickness_units="screen",
            )

    def _refresh_trajectory(self, instance_map: InstanceMap) -> None:
        """Redraw the camera path when frames were added; frustums (every k-th frame, at most
        ``max_frustums``) are added or removed one by one, so a growing map costs a few messages."""
        frames, poses = instance_map.trajectory
        if len(frames) == self._trajectory_frames:
            return
        self._trajectory_frames = len(frames)
        visible = self._trajectory_toggle.value
        if self._path is not None:
            self._path.remove()
            self._path = None
        centres = poses[:, :3, 3]
        if len(frames) >= 2:
            self._path = self.server.scene.add_line_segments(
                "/trajectory/path", np.stack([centres[:-1], centres[1:]], axis=1), (30, 30, 30), thickness=2.0,
                thickness_units="screen", visible=visible)
        step = max(1, -(-len(frames) // self.config.max_frustums))
        wanted = {int(frames[k]): k for k in range(0, len(frames), step)}
        for frame in [f for f in self._frustums if f not in wanted]:
            self._frustums.pop(frame).remove()
        fov, aspect = _camera_shape(instance_map)
        # about 2 % of the path's extent: visible in a house, not a thicket in a bathroom
        size = float(np.clip(0.02 * np.ptp(centres, axis=0).max(), 0.04, 0.25)) if len(centres) else 0.1
        for frame, k in wanted.items():
            if frame not in self._frustums:
                self._frustums[frame] = self.server.scene.add_camera_frustum(
                    f"/trajectory/frustum_{frame}", fov, aspect, scale=size, thickness=1.5, thickness_units="screen",
                    color=(60, 60, 60), wxyz=_quaternion_wxyz(poses[k, :3, :3]), position=centres[k], visible=visible)

    @property
    def _trajectory_nodes(self) -> list:
        return ([self._path] if self._path is not None else []) + list(self._frustums.values())

    def _place_camera_once(self, instance_map: InstanceMap) -> None:
        if self._camera_set or instance_map.num_points == 0:
            return
        up = unit_up(instance_map.metadata.up)
        self.server.scene.set_up_direction(tuple(float(v) for v in up))
        sample = np.concatenate([o.points[:: max(1, o.num_points // 2000)] for o in instance_map])
        # steeper than the offscreen overview: there are no cut-away walls in the browser
        view = OverviewConfig(elevation_deg=65.0, vertical_fov_deg=np.degrees(self.server.initial_camera.fov), fill=0.8)
        _, pose = overview_camera(sample, 800, 600, up, view)
        centre, _ = robust_bounds(sample)
        self.server.initial_camera.position = tuple(float(v) for v in pose[:3, 3])
        self.server.initial_camera.look_at = tuple(float(v) for v in centre)
        self.server.initial_camera.up = tuple(float(v) for v in up)
        self._camera_set = True

    # ---- GUI ------------------------------------------------------------------------------------

    def _build_gui(self) -> None:
        gui = self.server.gui
        self._summary = gui.add_markdown(f"**{self.config.title}**: waiting for a map")
        self._dropdown = gui.add_dropdown("Object", (NONE_SELECTED,), initial_value=NONE_SELECTED)
        self._details = gui.add_markdown("Pick an object to see its attributes.")
        self._crop = gui.add_image(np.full((8, 8, 3), 240, np.uint8), label="best view", visible=False)
        self._color_mode = gui.add_dropdown("Colours", COLOR_MODES, initial_value=self.config.color_mode)
        self._box_kind = gui.add_dropdown("Box", BOX_KINDS, initial_value=BOX_KINDS[0])
        self._structure_toggle = gui.add_checkbox("Structure (floor, walls)", self.config.show_structure)
        self._ceiling_toggle = gui.add_checkbox("Ceiling", self.config.show_ceiling)
        self._trajectory_toggle = gui.add_checkbox("Camera trajectory", self.config.show_trajectory)
        self._dropdown.on_update(lambda _: self._on_pick())
        self._color_mode.on_update(lambda _: self._locked(self._apply_highlight))
        self._box_kind.on_update(lambda _: self._locked(self._draw_box))
        self._structure_toggle.on_update(lambda _: self._locked(self._apply_structure))
        self._ceiling_toggle.on_update(lambda _: self._locked(self._apply_structure))
        self._trajectory_toggle.on_update(lambda _: self._locked(self._apply_trajectory))

    def _locked(self, action) -> None:
        with self._lock:
            action()

    def _on_pick(self) -> None:
        value = self._dropdown.value
        picked = None if value == NONE_SELECTED else int(value.split(":", 1)[0])
        if picked != self._selected and (picked is None or (self._map is not None and picked in self._map)):
            self.select(picked)

    def _apply_structure(self) -> None:
        for object_id, handle in self._clouds.items():
            handle.visible = self._visible(self._sent[object_id])

    def _visible(self, obj: MapObject) -> bool:
        if not obj.is_structure:
            return True
        if is_ceiling(obj, self._map.metadata.up, self._middle_height):
            return self._ceiling_toggle.value
        return self._structure_toggle.value

    def _apply_trajectory(self) -> None:
        for node in self._trajectory_nodes:
            node.visible = self._trajectory_toggle.value

    def _refresh_list(self, instance_map: InstanceMap) -> None:
        options = (NONE_SELECTED,) + tuple(self._option_of(o) for o in instance_map)
        if tuple(self._dropdown.options) != options:
            self._dropdown.options = options
        structure = sum(o.is_structure for o in instance_map)
        self._summary.content = (
            f"**{self.config.title}**: {len(instance_map)} objects ({structure} structure), "
            f"{instance_map.num_points:,} points, {instance_map.num_frames} frames"
        )

    @staticmethod
    def _option_of(obj: MapObject) -> str:
        kind = "structure" if obj.is_structure else "object"
        name = obj.attributes.get("label") or obj.attributes.get("kind") or kind
        return f"{obj.id}: {name} ({obj.num_points} pts)"

    def _show_details(self) -> None:
        if self._selected is None:
            self._details.content = "Pick an object to see its attributes."
            self._crop.visible = False
            return
        obj = self._map.get(self._selected)
        self._details.content = object_details(obj)
        crop = self._crops.crop(self._map.metadata, obj)
        if crop is not None:
            self._crop.image = crop
        self._crop.visible = crop is not None


class LiveViewer(ViewerHandle):
    """A viewer that starts empty and follows a map being built: call ``update(map)`` after each frame
    (cheap: only replaced objects are re-sent) and ``stop()`` at the end."""


def check_port(port) -> int:
    """``port`` as an int when it is a TCP port (1-65535); a ValueError otherwise. Checked before the
    server starts: viser's thread dies on an out-of-range port and leaves the caller waiting forever."""
    if isinstance(port, bool) or not isinstance(port, (int, np.integer)) or not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be a whole number from 1 to 65535, got {port!r}")
    return int(port)


def serve_map(
    map_or_path: InstanceMap | str | Path, host: str = "127.0.0.1", port: int = 8080,
    config: ViewerConfig | None = None,
) -> ViewerHandle:
    """Start a viewer of a map (an ``InstanceMap`` or the path of a SQLite map file) and return its handle."""
    if isinstance(map_or_path, InstanceMap):
        instance_map = map_or_path
    else:
        from scene.storage import MapStore

        path = Path(map_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"serve_map: {path}: no map file there")
        with MapStore(path, read_only=True) as store:
            instance_map = store.load()
    handle = ViewerHandle(host, port, config)
    try:
        handle.update(instance_map)
    except Exception:
        handle.stop()
        raise
    return handle


def object_details(obj: MapObject) -> str:
    """Markdown table of an object's attributes (sizes in metres)."""
    seen = f"{obj.first_frame} .. {obj.last_frame}" if obj.first_frame >= 0 else "unknown"
    size = " x ".join(f"{v:.2f}" for v in obj.obb_extents)
    rows = [
        ("id", str(obj.id)), ("points", f"{obj.num_points:,}"), ("observations", str(obj.num_observations)),
        ("frames seen", seen), ("confidence", f"{obj.confidence:.2f}"), ("box size (m)", size),
        ("centre (m)", ", ".join(f"{v:.2f}" for v in obj.centroid)), ("structure", "yes" if obj.is_structure else "no"),
    ]
    rows += [(str(k), str(v)) for k, v in sorted(obj.attributes.items())]
    return "| attribute | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def is_ceiling(obj: MapObject, up: np.ndarray | None, middle_height: float) -> bool:
    """A structure object that is a horizontal plate (thinnest box axis along ``up``) whose centre lies
    above ``middle_height`` (metres along up)."""
    if not obj.is_structure:
        return False
    up = unit_up(up)
    thin = int(np.argmin(obj.obb_extents))
    flat = obj.obb_extents[thin] < 0.15 * obj.obb_extents.max() and abs(float(obj.obb_rotation[:, thin] @ up)) > 0.9
    return bool(flat and float(obj.obb_center @ up) > middle_height)


def _middle_height(instance_map: InstanceMap) -> float:
    """Middle of the map's extent along up (metres), from the objects' boxes."""
    if len(instance_map) == 0:
        return 0.0
    up = unit_up(instance_map.metadata.up)
    lows = [float(o.aabb_min @ up) for o in instance_map]
    highs = [float(o.aabb_max @ up) for o in instance_map]
    return (min(lows) + max(highs)) / 2.0


def box_segments(obj: MapObject, oriented: bool = True) -> np.ndarray:
    """12 x 2 x 3 float32 edges of an object's oriented (or axis-aligned) box, world frame (metres)."""
    if oriented:
        corners = obj.obb_corners
    else:
        signs = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float64)
        corners = obj.aabb_min + signs * (obj.aabb_max - obj.aabb_min)
    # corner k has bits (x, y, z) = (k >> 2, k >> 1, k) & 1: an edge joins corners differing in one bit
    edges = [(a, a | bit) for bit in (1, 2, 4) for a in range(8) if not a & bit]
    return np.array([[corners[a], corners[b]] for a, b in edges], np.float32)


def _camera_shape(instance_map: InstanceMap) -> tuple[float, float]:
    """(vertical field of view in radians, width / height) of the map's camera, or a typical one."""
    K, size = instance_map.metadata.K, instance_map.metadata.image_size
    if K is None or size is None:
        return np.radians(45.0), 4.0 / 3.0
    height, width = size
    return float(2.0 * np.arctan(height / (2.0 * K[1, 1]))), float(width / height)


def _quaternion_wxyz(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a 3 x 3 rotation matrix."""
    import viser.transforms as tf

    return tf.SO3.from_matrix(np.asarray(rotation, np.float64)).wxyz
