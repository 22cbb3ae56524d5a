"""ROS bags: ROS 1 ``.bag``, ROS 2 ``.db3`` and ``.mcap`` (a bag folder with ``metadata.yaml`` or one storage
file), read with the pure-Python ``rosbags`` package (no ROS install).

Each depth message is one frame. Its colour image is the colour message nearest in time (header stamps)
within ``max_dt``; its pose is the camera's pose at the depth stamp, from either

- ``/tf`` + ``/tf_static``: the chain of transforms from ``world_frame`` to the camera's optical frame
  (``camera_frame``, default the depth image's ``header.frame_id``; ``world_frame`` defaults to the root of
  the camera's tf tree). Each moving transform is interpolated (linear position, slerp rotation) between
  the samples around the stamp when they are at most ``max_pose_gap`` apart, else the nearest sample within
  ``max_dt`` is used; or
- a ``geometry_msgs/PoseStamped``, ``PoseWithCovarianceStamped`` or ``nav_msgs/Odometry`` topic
  (``pose_topic``), interpolated the same way. Its pose is the pose of ``pose_frame`` (Odometry's
  ``child_frame_id``; for PoseStamped the camera's optical frame unless named) in the message's frame;
  when that is not the camera's optical frame, the /tf chain between the two is appended.

Depth frames without a colour partner or a pose are left out and counted (``unmatched``, reported once
as a warning). Intrinsics come from a ``CameraInfo`` topic (the depth camera's; scaled to the depth size
when it describes another resolution) unless ``K`` is given. Encodings: colour ``rgb8 bgr8 rgba8 bgra8
mono8`` and compressed JPEG/PNG; depth ``16UC1``/``mono16`` (``value / depth_scale``, millimetres by
default) and ``32FC1`` metres, raw or compressed (PNG, ``compressedDepth``). Poses are camera-to-world
with OpenCV axes, which is what a ROS optical frame is (x right, y down, z forward).

Topics left as None are proposed from the bag (``propose_topics``): image topics are classified by
their first message's encoding; among several, raw images beat their ``/compressed`` twins and a depth
image in the colour image's optical frame (registered depth) beats one in another frame; a CameraInfo
next to the depth topic beats others. Anything still ambiguous is a DatasetError that lists the
candidates and names the option to choose with.
"""
from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..base import FrameSource
from ..frame import DatasetError, Frame
from ..io import check_intrinsics, depth_to_metres, resize_color_to, scale_intrinsics

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped",
              "nav_msgs/msg/Odometry")
TF_TOPICS = ("/tf", "/tf_static")
BAG_SUFFIXES = (".bag", ".db3", ".mcap")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC3")


def is_rosbag(path: str | Path) -> bool:
    """A ROS 1 ``.bag`` or ROS 2 ``.db3`` / ``.mcap`` file, or a ROS 2 bag folder (``metadata.yaml``)."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in BAG_SUFFIXES
    return path.is_dir() and (path / "metadata.yaml").is_file()


# --------------------------------------------------------------------------------------------------
# opening a bag and reading headers


def open_bag(path: Path):
    """An opened ``rosbags`` AnyReader; DatasetError naming the file when it is not a readable bag."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    if not path.exists():
        raise DatasetError(f"{path}: no such bag file or folder")
    store = Stores.ROS1_NOETIC if path.suffix.lower() == ".bag" else Stores.ROS2_HUMBLE
    try:
        reader = AnyReader([path], default_typestore=get_typestore(store))
        reader.open()
    except Exception as exc:  # rosbags raises several unrelated types for damaged files
        raise DatasetError(f"{path}: not a readable ROS bag ({type(exc).__name__}: {exc})") from None
    return reader


def header_stamp(raw: bytes | memoryview, ros2: bool) -> int:
    """Header stamp (ns) of a serialized message whose first field is a ``std_msgs/Header``.

    Read from the bytes without deserializing the image: ROS 1 puts ``seq`` before the stamp, CDR a
    4-byte encapsulation header whose second byte says the byte order, so both stamps sit at bytes 4-11.
    """
    order = "<" if not ros2 or raw[1] == 1 else ">"
    sec, nsec = struct.unpack_from(f"{order}iI" if ros2 else "<II", raw, 4)
    return int(sec) * 1_000_000_000 + int(nsec)


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _field(msg, name: str):
    """A field under its ROS 2 (lower-case) or ROS 1 (upper-case, e.g. CameraInfo.K) name."""
    return getattr(msg, name) if hasattr(msg, name) else getattr(msg, name.upper())


# --------------------------------------------------------------------------------------------------
# topic proposal


@dataclass
class TopicSummary:
    """One topic: name, message type, message count; for images the first message's encoding
    (``encoding``), ``frame_id`` and size (``width`` x ``height``, 0 when compressed)."""

    name: str
    msgtype: str
    count: int
    encoding: str = ""
    frame_id: str = ""
    width: int = 0
    height: int = 0

    @property
    def kind(self) -> str:
        """'color', 'depth', 'info', 'pose', 'tf' or 'other'."""
        if self.msgtype in IMAGE_TYPES:
            return "depth" if _is_depth_encoding(self.encoding) else "color"
        if self.msgtype == INFO_TYPE:
            return "info"
        if self.msgtype == TF_TYPE:
            return "tf"
        return "pose" if self.msgtype in POSE_TYPES else "other"


@dataclass
class TopicChoice:
    """The topics a RosBagSource reads: proposed ones are filled in, ``problems`` lists what is ambiguous
    or missing (empty when the bag can be mapped without options)."""

    color: str | None = None
    depth: str | None = None
    info: str | None = None
    pose: str | None = None
    use_tf: bool = False
    problems: list[str] = field(default_factory=list)


def _is_depth_encoding(encoding: str) -> bool:
    text = encoding.lower()
    return any(e.lower() in text for e in DEPTH_ENCODINGS) or "compresseddepth" in text


def summarize_topics(reader) -> list[TopicSummary]:
    """Every topic of an opened bag, images with their first message's encoding, frame and size."""
    summaries = []
    for name, info in sorted(reader.topics.items()):
        summary = TopicSummary(name, info.msgtype or "?", int(info.msgcount))
        if info.msgtype in IMAGE_TYPES + (INFO_TYPE,) and info.msgcount:
            for conn, _, raw in reader.messages(connections=info.connections):
                msg = reader.deserialize(raw, conn.msgtype)
                summary.frame_id = msg.header.frame_id
                if info.msgtype == "sensor_msgs/msg/Image":
                    summary.encoding, summary.width, summary.height = msg.encoding, msg.width, msg.height
                elif info.msgtype == INFO_TYPE:
                    summary.width, summary.height = msg.width, msg.height
                else:
                    summary.encoding = msg.format
                break
        summaries.append(summary)
    return summaries


def propose_topics(topics: list[TopicSummary], color: str | None = None, depth: str | None = None,
                   info: str | None = None, pose: str | None = None) -> TopicChoice:
    """Fill in the topics not given (see the module docstring for the rules)."""
    by_name = {t.name: t for t in topics}
    choice = TopicChoice(color, depth, info, pose)
    for given, kinds in ((color, ("color",)), (depth, ("depth",)), (info, ("info",)), (pose, ("pose",))):
        if given is not None and (given not in by_name or by_name[given].kind not in kinds):
            found = f"a {by_name[given].msgtype}" if given in by_name else "not in the bag"
            choice.problems.append(f"topic {given} is {found}, not a {kinds[0]} topic; "
                                   f"{kinds[0]} topics: {_names(topics, kinds[0]) or 'none'}")
    if choice.color is None:
        choice.color = _pick(_prefer_raw(_of_kind(topics, "color")), "colour", "--color-topic", choice.problems)
    if choice.depth is None:
        depths = _prefer_raw(_of_kind(topics, "depth"))
        color_frame = by_name[choice.color].frame_id if choice.color in by_name else None
        registered = [t for t in depths if t.frame_id and t.frame_id == color_frame]
        choice.depth = _pick(registered if len(registered) == 1 else depths, "depth", "--depth-topic",
                             choice.problems)
    if choice.info is None:
        infos = _of_kind(topics, "info")
        near = [t for t in infos if choice.depth and _parent(t.name) == _parent(_raw_name(choice.depth))]
        same_frame = [t for t in infos if choice.depth in by_name and t.frame_id == by_name[choice.depth].frame_id]
        choice.info = _pick(near if len(near) == 1 else same_frame if len(same_frame) == 1 else infos,
                            "CameraInfo", "--info-topic", choice.problems, required=False)
    # /tf_static alone cannot move the camera: it only links a pose topic's frame to the camera's.
    choice.use_tf = choice.pose is None and any(t.kind == "tf" and t.name == "/tf" and t.count for t in topics)
    if choice.pose is None and not choice.use_tf:
        choice.pose = _pick(_of_kind(topics, "pose"), "pose (no /tf either)", "--pose-topic", choice.problems)
    return choice


def _of_kind(topics: list[TopicSummary], kind: str) -> list[TopicSummary]:
    return [t for t in topics if t.kind == kind and t.count > 0]


def _names(topics: list[TopicSummary], kind: str) -> str:
    return ", ".join(t.name for t in topics if t.kind == kind)


def _raw_name(name: str) -> str:
    """image_transport publishes ``X/compressed`` and ``X/compressedDepth`` beside the raw ``X``."""
    for suffix in ("/compressedDepth", "/compressed"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _parent(name: str) -> str:
    return name.rsplit("/", 1)[0]


def _prefer_raw(candidates: list[TopicSummary]) -> list[TopicSummary]:
    raw = {t.name for t in candidates if t.msgtype == "sensor_msgs/msg/Image"}
    return [t for t in candidates if t.name in raw or _raw_name(t.name) not in raw]


def _pick(candidates: list[TopicSummary], what: str, option: str, problems: list[str],
          required: bool = True) -> str | None:
    if len(candidates) == 1:
        return candidates[0].name
    if candidates:
        problems.append(f"several {what} topics ({', '.join(t.name for t in candidates)}): choose one with {option}")
    elif required:
        problems.append(f"no {what} topic in the bag")
    return None


# --------------------------------------------------------------------------------------------------
# transforms


def transform_matrix(translation, rotation) -> np.ndarray:
    """4x4 from a ROS ``Vector3``/``Point`` and ``Quaternion`` (x, y, z, w)."""
    from scipy.spatial.transform import Rotation  # here: importing scipy.spatial costs every command's start-up

    T = np.eye(4)
    q = np.array([rotation.x, rotation.y, rotation.z, rotation.w], np.float64)
    if not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-9:
        return np.full((4, 4), np.nan)
    T[:3, :3] = Rotation.from_quat(q).as_matrix()
    T[:3, 3] = [translation.x, translation.y, translation.z]
    return T


def interpolate_poses(times: np.ndarray, poses: np.ndarray, queries: np.ndarray, max_dt: float,
                      max_gap: float) -> np.ndarray:
    """Poses (N x 4 x 4, ``times`` in seconds, sorted) at ``queries``: interpolated between the two samples
    around a query when they are at most ``max_gap`` apart, else the nearest sample within ``max_dt``,
    else NaN."""
    out = np.full((len(queries), 4, 4), np.nan)
    if len(times) == 0 or len(queries) == 0:
        return out
    right = np.clip(np.searchsorted(times, queries), 1, max(len(times) - 1, 1))
    left = np.maximum(right - 1, 0)
    right = np.minimum(right, len(times) - 1)
    nearest = np.where(np.abs(times[right] - queries) < np.abs(times[left] - queries), right, left)
    close = np.abs(times[nearest] - queries) <= max_dt
    out[close] = poses[nearest[close]]
    inside = ((times[left] <= queries) & (queries <= times[right]) & (right > left)
              & (times[right] - times[left] <= max_gap))
    if np.any(inside):
        from scipy.spatial.transform import Rotation

        l, r = left[inside], right[inside]
        w = (queries[inside] - times[l]) / np.maximum(times[r] - times[l], 1e-12)
        rot_l, rot_r = Rotation.from_matrix(poses[l, :3, :3]), Rotation.from_matrix(poses[r, :3, :3])
        rotations = rot_l * Rotation.from_rotvec((rot_l.inv() * rot_r).as_rotvec() * w[:, None])
        T = np.tile(np.eye(4), (len(w), 1, 1))
        T[:, :3, :3] = rotations.as_matrix()
        T[:, :3, 3] = (1 - w)[:, None] * poses[l, :3, 3] + w[:, None] * poses[r, :3, 3]
        out[inside] = T
    return out


class TransformTree:
    """/tf and /tf_static: per child frame its parent and either one static transform or a time series.
    ``T_parent_child`` maps child coordinates to the parent's (what a TransformStamped holds)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.static: dict[str, np.ndarray] = {}
        self._samples: dict[str, list[tuple[float, np.ndarray]]] = {}

    def add(self, transform, static: bool) -> None:
        child, parent = transform.child_frame_id.lstrip("/"), transform.header.frame_id.lstrip("/")
        self.parent[child] = parent
        T = transform_matrix(transform.transform.translation, transform.transform.rotation)
        if static:
            self.static[child] = T
        else:
            self._samples.setdefault(child, []).append((stamp_ns(transform.header.stamp) * 1e-9, T))

    @property
    def frames(self) -> set[str]:
        return set(self.parent) | set(self.parent.values())

    def ancestors(self, frame: str) -> list[str]:
        """``frame`` and its parents up to the root of its tree."""
        chain = [frame]
        while chain[-1] in self.parent and self.parent[chain[-1]] not in chain:
            chain.append(self.parent[chain[-1]])
        return chain

    def root_of(self, frame: str) -> str:
        return self.ancestors(frame)[-1]

    def chain(self, target: str, source: str, times: np.ndarray, max_dt: float, max_gap: float) -> np.ndarray:
        """T_target_source at each time (N x 4 x 4; NaN where a moving link has no sample near enough);
        None when the two frames are not connected."""
        up_source, up_target = self.ancestors(source), self.ancestors(target)
        common = next((f for f in up_source if f in up_target), None)
        if common is None:
            return None
        root_source = self._to_ancestor(up_source[: up_source.index(common)], times, max_dt, max_gap)
        root_target = self._to_ancestor(up_target[: up_target.index(common)], times, max_dt, max_gap)
        return np.linalg.inv(root_target) @ root_source

    def _to_ancestor(self, frames: list[str], times, max_dt, max_gap) -> np.ndarray:
        T = np.tile(np.eye(4), (len(times), 1, 1))
        for child in frames:
            T = self._link(child, times, max_dt, max_gap) @ T
        return T

    def _link(self, child: str, times: np.ndarray, max_dt: float, max_gap: float) -> np.ndarray:
        if child in self.static:
            return np.broadcast_to(self.static[child], (len(times), 4, 4))
        samples = sorted(self._samples[child], key=lambda s: s[0])
        stamps = np.array([s[0] for s in samples])
        return interpolate_poses(stamps, np.stack([s[1] for s in samples]), times, max_dt, max_gap)


# --------------------------------------------------------------------------------------------------
# image decoding


def decode_color(msg, where: str) -> np.ndarray:
    """H x W x 3 uint8 RGB from a sensor_msgs Image or CompressedImage."""
    if hasattr(msg, "format"):
        image = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR) if len(msg.data) else None
        if image is None:
            raise DatasetError(f"{where}: cannot decode the compressed colour image (format {msg.format!r})")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    channels = {"rgb8": 3, "bgr8": 3, "8UC3": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(msg.encoding)
    if channels is None:
        raise DatasetError(f"{where}: unsupported colour encoding {msg.encoding!r} "
                           f"(supported: {', '.join(COLOR_ENCODINGS)})")
    pixels = _rows(msg, np.uint8, channels, where)
    if channels == 1:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    code = {"rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "8UC3": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB,
            "bgra8": cv2.COLOR_BGRA2RGB}[msg.encoding]
    return np.ascontiguousarray(pixels) if code is None else cv2.cvtColor(pixels, code)


def decode_depth(msg, depth_scale: float, where: str) -> np.ndarray:
    """H x W float32 metres (0 invalid) from a sensor_msgs Image or CompressedImage."""
    if hasattr(msg, "format"):
        return _decode_compressed_depth(msg, depth_scale, where)
    if msg.encoding in ("16UC1", "mono16"):
        return depth_to_metres(_rows(msg, np.dtype(">u2" if msg.is_bigendian else "<u2"), 1, where), depth_scale)
    if msg.encoding == "32FC1":
        return depth_to_metres(_rows(msg, np.dtype(">f4" if msg.is_bigendian else "<f4"), 1, where), 1.0, ())
    raise DatasetError(f"{where}: unsupported depth encoding {msg.encoding!r} "
                       f"(supported: {', '.join(DEPTH_ENCODINGS)})")


def _rows(msg, dtype, channels: int, where: str) -> np.ndarray:
    """The image's pixels, honouring ``step`` (row padding)."""
    dtype = np.dtype(dtype)
    row_bytes = msg.width * channels * dtype.itemsize
    data = np.asarray(msg.data, np.uint8)
    if msg.step < row_bytes or data.size < msg.step * msg.height or msg.width * msg.height == 0:
        raise DatasetError(f"{where}: image data ({data.size} bytes, step {msg.step}) does not hold "
                           f"{msg.width}x{msg.height} {msg.encoding} pixels")
    rows = data[: msg.step * msg.height].reshape(msg.height, msg.step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width, channels)
    return pixels.astype(dtype.newbyteorder("="))[..., 0] if channels == 1 else pixels


def _decode_compressed_depth(msg, depth_scale: float, where: str) -> np.ndarray:
    data = np.frombuffer(msg.data, np.uint8)
    fmt = msg.format
    # image_transport's compressedDepth: a 12-byte header (int32 format, float32 quantisation A, B), then PNG.
    header = data[:12].tobytes() if "compresseddepth" in fmt.lower() else None
    png = data[12:] if header is not None else data
    raw = cv2.imdecode(png, cv2.IMREAD_UNCHANGED) if png.size else None
    if raw is None or raw.ndim != 2 or raw.dtype != np.uint16:
        raise DatasetError(f"{where}: cannot decode the compressed depth image (format {fmt!r}) as 16-bit PNG")
    if "32FC1" in fmt:
        if header is None:
            raise DatasetError(f"{where}: 32FC1 compressed depth without the compressedDepth header")
        _, quant_a, quant_b = struct.unpack("<iff", header)
        metres = np.zeros(raw.shape, np.float32)
        valid = raw > 0
        metres[valid] = quant_a / (raw[valid].astype(np.float32) - quant_b)
        return depth_to_metres(metres, 1.0, ())
    return depth_to_metres(raw, depth_scale)


# --------------------------------------------------------------------------------------------------
# the reader


@dataclass
class _Message:
    """Where one image message is: its topic and type, bag timestamp (ns) and header stamp (ns)."""

    topic: str
    msgtype: str
    bag_time: int
    stamp: int


class RosBagSource(FrameSource):
    """Reader for a ROS 1 / ROS 2 bag (see the module docstring).

    Options: ``color_topic``, ``depth_topic``, ``info_topic``, ``pose_topic`` (None = proposed),
    ``world_frame`` (None = the root of the camera's tf tree), ``camera_frame`` (None = the depth image's
    frame), ``pose_frame`` (the frame a PoseStamped topic describes; None = the camera's), ``max_dt``
    (0.02 s: colour and pose pairing), ``max_pose_gap`` (0.2 s: interpolation between samples at most that
    far apart), ``depth_scale`` (1000 stored units per metre for 16-bit depth), ``K`` (3x3 override when
    the bag has no CameraInfo). ``unmatched``: depth frames left out, by reason.
    """

    format_name = "rosbag"

    def __init__(self, root: str | Path, start: int = 0, stop: int | None = None, stride: int = 1, *,
                 color_topic: str | None = None, depth_topic: str | None = None, info_topic: str | None = None,
                 pose_topic: str | None = None, world_frame: str | None = None, camera_frame: str | None = None,
                 pose_frame: str | None = None, max_dt: float = 0.02, max_pose_gap: float = 0.2,
                 depth_scale: float = 1000.0, K: np.ndarray | None = None):
        self.options = dict(color=color_topic, depth=depth_topic, info=info_topic, pose=pose_topic)
        self.world_frame, self.camera_frame, self.pose_frame = world_frame, camera_frame, pose_frame
        self.max_dt, self.max_pose_gap, self.depth_scale = float(max_dt), float(max_pose_gap), float(depth_scale)
        self._K_override = None if K is None else check_intrinsics(K, "K argument")
        self.unmatched: dict[str, int] = {}
        self._reader = None
        super().__init__(root, start, stop, stride)
        if any(self.unmatched.values()):
            lost = ", ".join(f"{n} {reason}" for reason, n in self.unmatched.items() if n)
            warnings.warn(f"{self.root}: left out depth frames: {lost} (of {self.num_depth_messages})", stacklevel=2)

    # -- indexing ------------------------------------------------------------------------------------
    def _raw_count(self) -> int:
        if not is_rosbag(self.root):
            raise DatasetError(f"{self.root}: not a ROS bag (.bag, .db3, .mcap, or a folder with metadata.yaml)")
        reader = self._open()
        self.topics = summarize_topics(reader)
        choice = propose_topics(self.topics, **self.options)
        if self._K_override is not None and choice.info is None:
            choice.problems = [p for p in choice.problems if "CameraInfo" not in p]
        if choice.problems:
            raise DatasetError(f"{self.root}: " + "; ".join(choice.problems))
        self.choice = choice
        depth = self._index(choice.depth)
        color = self._index(choice.color)
        self.num_depth_messages = len(depth)
        if not depth or not color:
            raise DatasetError(f"{self.root}: topic {choice.depth if not depth else choice.color} has no messages")
        self._K, self._K_size = self._intrinsics(choice.info)
        depth_t = np.array([m.stamp for m in depth], np.int64) * 1e-9
        color_t = np.array([m.stamp for m in color], np.int64) * 1e-9
        order = np.argsort(color_t, kind="stable")
        right = np.clip(np.searchsorted(color_t[order], depth_t), 1, max(len(order) - 1, 1))
        left = np.maximum(right - 1, 0)
        right = np.minimum(right, len(order) - 1)
        pick = np.where(np.abs(color_t[order][right] - depth_t) < np.abs(color_t[order][left] - depth_t), right, left)
        has_color = np.abs(color_t[order][pick] - depth_t) <= self.max_dt
        poses = self._poses(depth_t, depth[0])
        has_pose = np.all(np.isfinite(poses.reshape(len(poses), -1)), axis=1)
        keep = np.flatnonzero(has_color & has_pose)
        keep = keep[np.argsort(depth_t[keep], kind="stable")]
        self.unmatched = {"without colour within max_dt": int((~has_color).sum()),
                          "without pose": int((has_color & ~has_pose).sum())}
        self._depth = [depth[k] for k in keep]
        self._color = [color[order[pick[k]]] for k in keep]
        self._pose_table = poses[keep]
        self._times = depth_t[keep]
        return len(keep)

    def _open(self):
        if self._reader is None:
            self._reader = open_bag(self.root)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_reader"] = None  # reopened lazily in another process
        return state

    def _connections(self, topic: str) -> list:
        """The topic's connections (never empty: rosbags reads every topic for an empty list)."""
        conns = [c for c in self._open().connections if c.topic == topic]
        if not conns:
            raise DatasetError(f"{self.root}: no topic {topic} in the bag")
        return conns

    def _index(self, topic: str) -> list[_Message]:
        reader = self._reader
        try:
            return [_Message(topic, c.msgtype, t, header_stamp(raw, reader.is2))
                    for c, t, raw in reader.messages(connections=self._connections(topic))]
        except Exception as exc:
            raise DatasetError(f"{self.root}: cannot read topic {topic} ({type(exc).__name__}: {exc})") from None

    def _first(self, topic: str):
        for conn, _, raw in self._reader.messages(connections=self._connections(topic)):
            return self._reader.deserialize(raw, conn.msgtype)
        raise DatasetError(f"{self.root}: topic {topic} has no messages")

    def _intrinsics(self, info_topic: str | None) -> tuple[np.ndarray, tuple[int, int] | None]:
        if self._K_override is not None:
            return self._K_override, None
        if info_topic is None:
            raise DatasetError(f"{self.root}: no CameraInfo topic for the intrinsics (pass K=... / --intrinsics)")
        msg = self._first(info_topic)
        K = np.asarray(_field(msg, "k"), np.float64).reshape(3, 3)
        return check_intrinsics(K, f"{self.root}: {info_topic}"), (int(msg.height), int(msg.width))

    def _poses(self, times: np.ndarray, first_depth: _Message) -> np.ndarray:
        camera = self.camera_frame or self._message(first_depth).header.frame_id
        camera = camera.lstrip("/")
        self.camera_frame_used = camera
        tree = self._transform_tree()
        if self.choice.use_tf:
            if camera not in tree.frames:
                raise DatasetError(f"{self.root}: camera frame {camera!r} is not in /tf (frames: "
                                   f"{', '.join(sorted(tree.frames)) or 'none'}); pass camera_frame / --camera-frame")
            world = (self.world_frame or tree.root_of(camera)).lstrip("/")
            self.world_frame_used = world
            poses = tree.chain(world, camera, times, self.max_dt, self.max_pose_gap)
            if poses is None:
                raise DatasetError(f"{self.root}: no /tf chain between world frame {world!r} and camera frame "
                                   f"{camera!r}")
            return poses
        return self._poses_from_topic(self.choice.pose, times, camera, tree)

    def _poses_from_topic(self, topic: str, times: np.ndarray, camera: str, tree: TransformTree) -> np.ndarray:
        stamps, samples, frame, child = [], [], "", ""
        for conn, _, raw in self._reader.messages(connections=self._connections(topic)):
            msg = self._reader.deserialize(raw, conn.msgtype)
            pose = msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
            stamps.append(stamp_ns(msg.header.stamp) * 1e-9)
            samples.append(transform_matrix(pose.position, pose.orientation))
            frame, child = msg.header.frame_id, getattr(msg, "child_frame_id", "")
        if not samples:
            raise DatasetError(f"{self.root}: pose topic {topic} has no messages")
        self.world_frame_used = frame.lstrip("/")
        order = np.argsort(stamps, kind="stable")
        poses = interpolate_poses(np.asarray(stamps)[order], np.stack(samples)[order], times, self.max_dt,
                                  self.max_pose_gap)
        body = (self.pose_frame or child or camera).lstrip("/")
        if body == camera:
            return poses
        link = tree.chain(body, camera, times, self.max_dt, self.max_pose_gap)
        if link is None:
            raise DatasetError(f"{self.root}: {topic} gives the pose of {body!r}, but no /tf chain links it to the "
                               f"camera frame {camera!r}; pass pose_frame / --pose-frame if it is the camera's")
        return poses @ link

    def _transform_tree(self) -> TransformTree:
        tree = TransformTree()
        conns = [c for c in self._reader.connections if c.topic in TF_TOPICS and c.msgtype == TF_TYPE]
        for conn, _, raw in self._reader.messages(connections=conns) if conns else ():
            for transform in self._reader.deserialize(raw, conn.msgtype).transforms:
                tree.add(transform, static=conn.topic == "/tf_static")
        return tree

    # -- frames ---------------------------------------------------------------------------------------
    def _raw(self, where: _Message) -> bytes:
        reader = self._open()
        for _, _, raw in reader.messages(connections=self._connections(where.topic), start=where.bag_time,
                                         stop=where.bag_time + 1):
            if header_stamp(raw, reader.is2) == where.stamp:
                return raw
        raise DatasetError(f"{self.root}: message of {where.topic} at {where.stamp * 1e-9:.6f} s is gone")

    def _message(self, where: _Message):
        raw = self._raw(where)
        return self._reader.deserialize(raw, where.msgtype)

    def _raw_pose(self, i: int) -> np.ndarray:
        return self._pose_table[i]

    def _raw_frame(self, i: int, pose: np.ndarray) -> Frame:
        depth_msg, color_msg = self._depth[i], self._color[i]
        where = f"{self.root}: {depth_msg.topic} at {depth_msg.stamp * 1e-9:.6f} s"
        color_where = f"{self.root}: {color_msg.topic} at {color_msg.stamp * 1e-9:.6f} s"
        try:
            depth = decode_depth(self._message(depth_msg), self.depth_scale, where)
            color = decode_color(self._message(color_msg), color_where)
        except DatasetError:
            raise
        except Exception as exc:
            raise DatasetError(f"{where}: cannot read the message ({type(exc).__name__}: {exc})") from None
        K = self._K if self._K_size in (None, depth.shape) else scale_intrinsics(self._K, self._K_size, depth.shape)
        return Frame(
            index=i, timestamp=float(self._times[i]), color=resize_color_to(color, depth.shape, where),
            depth=depth, K=K.copy(), pose=pose, source=where,
            meta={"color_topic": color_msg.topic, "depth_topic": depth_msg.topic,
                  "color_stamp": color_msg.stamp * 1e-9},
        )
