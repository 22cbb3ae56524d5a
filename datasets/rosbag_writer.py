"""Write posed RGB-D frames as a ROS bag (``rosbags``' own writers): for tests, benchmarks and sharing
synthetic scenes with ROS tools.

Layout, as a RealSense driver publishes it: ``/camera/color/image_raw`` (or ``.../compressed``),
``/camera/aligned_depth_to_color/image_raw`` (depth registered to colour, same optical frame),
``/camera/color/camera_info``. Poses, by ``poses``:

- "tf": ``/tf`` map -> base_link per frame, ``/tf_static`` base_link -> camera_link -> the optical frame
  (ROS's body-to-optical rotation), so the reader must compose a chain of three transforms;
- "pose": ``/camera/pose``, a PoseStamped of the optical frame in ``map``;
- "odometry": ``/odom``, an Odometry of base_link in ``map``, plus the static chain to the camera.

Frame ``k`` is stamped ``t0 + k / fps``; colour is stamped ``color_offset`` seconds later than depth.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from .frame import Frame

WORLD, BODY, CAMERA_LINK, OPTICAL = "map", "base_link", "camera_link", "camera_color_optical_frame"
COLOR_TOPIC, INFO_TOPIC = "/camera/color/image_raw", "/camera/color/camera_info"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"
POSE_TOPIC, ODOM_TOPIC = "/camera/pose", "/odom"
FORMATS = ("bag", "db3", "mcap")

# camera_link (x forward, y left, z up) -> optical frame (x right, y down, z forward)
T_LINK_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
T_BODY_LINK = np.array([[1.0, 0.0, 0.0, 0.10], [0.0, 1.0, 0.0, 0.02], [0.0, 0.0, 1.0, 0.45], [0.0, 0.0, 0.0, 1.0]])
T_BODY_OPTICAL = T_BODY_LINK @ T_LINK_OPTICAL

_TF_MSG = "geometry_msgs/TransformStamped[] transforms"


def write_rosbag(frames: Iterable[Frame], path: str | Path, format: str = "mcap", poses: str = "tf",
                 color: str = "rgb8", depth: str = "16UC1", fps: float = 10.0, t0: float = 1.7e9,
                 color_offset: float = 0.004, drop_color: Iterable[int] = (), drop_pose: Iterable[int] = (),
                 camera_info: bool = True) -> Path:
    """Write ``frames`` to a new bag at ``path`` (``format``: "bag" = ROS 1 file, "db3" / "mcap" = ROS 2
    bag folder). ``color``: "rgb8", "bgr8" or "jpeg" (CompressedImage); ``depth``: "16UC1" (millimetres),
    "32FC1" (metres) or "compressedDepth" (16UC1 PNG in image_transport's format). ``drop_color`` /
    ``drop_pose``: frame numbers whose colour image / pose message is not written (as a lossy recording
    loses them); ``camera_info``: write the CameraInfo. Returns ``path``."""
    drop_color, drop_pose = set(drop_color), set(drop_pose)
    if format not in FORMATS or poses not in ("tf", "pose", "odometry"):
        raise ValueError(f"format must be one of {FORMATS} and poses one of tf/pose/odometry")
    path = Path(path)
    with _BagWriter(path, format) as bag:
        for k, frame in enumerate(frames):
            stamp = t0 + k / fps
            if k == 0 and camera_info:
                bag.write(INFO_TOPIC, "sensor_msgs/msg/CameraInfo", stamp, bag.camera_info(frame, stamp))
            if k == 0 and poses != "pose":
                bag.write("/tf_static", "tf2_msgs/msg/TFMessage", stamp, bag.tf([
                    (BODY, CAMERA_LINK, T_BODY_LINK), (CAMERA_LINK, OPTICAL, T_LINK_OPTICAL)], stamp))
            if k not in drop_pose:
                _write_pose(bag, poses, frame.pose, stamp)
            depth_type, depth_msg = bag.depth_image(frame.depth, stamp, depth)
            bag.write(DEPTH_TOPIC + ("/compressedDepth" if depth == "compressedDepth" else ""), depth_type, stamp,
                      depth_msg)
            if k in drop_color:
                continue
            color_type, color_msg = bag.color_image(frame.color, stamp + color_offset, color)
            bag.write(COLOR_TOPIC + ("/compressed" if color == "jpeg" else ""), color_type, stamp + color_offset,
                      color_msg)
    return path


def _write_pose(bag: "_BagWriter", poses: str, camera_pose: np.ndarray, stamp: float) -> None:
    body_pose = camera_pose @ np.linalg.inv(T_BODY_OPTICAL)
    if poses == "tf":
        bag.write("/tf", "tf2_msgs/msg/TFMessage", stamp, bag.tf([(WORLD, BODY, body_pose)], stamp))
    elif poses == "pose":
        bag.write(POSE_TOPIC, "geometry_msgs/msg/PoseStamped", stamp, bag.pose_stamped(camera_pose, stamp))
    else:
        bag.write(ODOM_TOPIC, "nav_msgs/msg/Odometry", stamp, bag.odometry(body_pose, stamp))


class _BagWriter:
    """One bag being written: message construction for ROS 1 or ROS 2 and lazily added connections."""

    def __init__(self, path: Path, format: str) -> None:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore

        self.ros2 = format != "bag"
        self.store = get_typestore(Stores.ROS2_HUMBLE if self.ros2 else Stores.ROS1_NOETIC)
        if "tf2_msgs/msg/TFMessage" not in self.store.fielddefs:
            self.store.register(get_types_from_msg(_TF_MSG, "tf2_msgs/msg/TFMessage"))
        if self.ros2:
            from rosbags.rosbag2 import StoragePlugin, Writer

            plugin = StoragePlugin.MCAP if format == "mcap" else StoragePlugin.SQLITE3
            self.writer = Writer(path, version=9, storage_plugin=plugin)
        else:
            from rosbags.rosbag1 import Writer

            self.writer = Writer(path)
        self.connections: dict[str, object] = {}
        self.seq = 0

    def __enter__(self) -> "_BagWriter":
        self.writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self.writer.close()

    def write(self, topic: str, msgtype: str, stamp: float, msg) -> None:
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)
        data = self.store.serialize_cdr(msg, msgtype) if self.ros2 else self.store.serialize_ros1(msg, msgtype)
        self.writer.write(self.connections[topic], int(round(stamp * 1e9)), data)

    # -- messages ---------------------------------------------------------------------------------------
    def _t(self, name: str):
        return self.store.types[name]

    def header(self, stamp: float, frame_id: str):
        ns = int(round(stamp * 1e9))
        time = self._t("builtin_interfaces/msg/Time")(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        Header = self._t("std_msgs/msg/Header")
        if self.ros2:
            return Header(stamp=time, frame_id=frame_id)
        self.seq += 1
        return Header(seq=self.seq, stamp=time, frame_id=frame_id)

    def camera_info(self, frame: Frame, stamp: float):
        P = np.zeros((3, 4))
        P[:, :3] = frame.K
        fields = {"d": np.zeros(5), "k": frame.K.reshape(-1).astype(np.float64), "r": np.eye(3).reshape(-1),
                  "p": P.reshape(-1)}
        if not self.ros2:
            fields = {name.upper(): value for name, value in fields.items()}
        roi = self._t("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self._t("sensor_msgs/msg/CameraInfo")(
            header=self.header(stamp, OPTICAL), height=frame.height, width=frame.width, distortion_model="plumb_bob",
            binning_x=0, binning_y=0, roi=roi, **fields)

    def _pose_parts(self, T: np.ndarray):
        q = Rotation.from_matrix(T[:3, :3]).as_quat()
        quat = self._t("geometry_msgs/msg/Quaternion")(x=q[0], y=q[1], z=q[2], w=q[3])
        return T[:3, 3], quat

    def tf(self, links: list[tuple[str, str, np.ndarray]], stamp: float):
        transforms = []
        for parent, child, T in links:
            t, quat = self._pose_parts(T)
            transform = self._t("geometry_msgs/msg/Transform")(
                translation=self._t("geometry_msgs/msg/Vector3")(x=t[0], y=t[1], z=t[2]), rotation=quat)
            transforms.append(self._t("geometry_msgs/msg/TransformStamped")(
                header=self.header(stamp, parent), child_frame_id=child, transform=transform))
        return self._t("tf2_msgs/msg/TFMessage")(transforms=transforms)

    def _pose(self, T: np.ndarray):
        t, quat = self._pose_parts(T)
        return self._t("geometry_msgs/msg/Pose")(
            position=self._t("geometry_msgs/msg/Point")(x=t[0], y=t[1], z=t[2]), orientation=quat)

    def pose_stamped(self, T: np.ndarray, stamp: float):
        return self._t("geometry_msgs/msg/PoseStamped")(header=self.header(stamp, WORLD), pose=self._pose(T))

    def odometry(self, T: np.ndarray, stamp: float):
        cov = np.zeros(36)
        pose = self._t("geometry_msgs/msg/PoseWithCovariance")(pose=self._pose(T), covariance=cov)
        zero = self._t("geometry_msgs/msg/Vector3")(x=0.0, y=0.0, z=0.0)
        twist = self._t("geometry_msgs/msg/TwistWithCovariance")(
            twist=self._t("geometry_msgs/msg/Twist")(linear=zero, angular=zero), covariance=cov)
        return self._t("nav_msgs/msg/Odometry")(header=self.header(stamp, WORLD), child_frame_id=BODY, pose=pose,
                                                twist=twist)

    def _image(self, pixels: np.ndarray, encoding: str, stamp: float):
        h, w = pixels.shape[:2]
        data = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1)
        return self._t("sensor_msgs/msg/Image")(header=self.header(stamp, OPTICAL), height=h, width=w,
                                                encoding=encoding, is_bigendian=0, step=data.size // h, data=data)

    def _compressed(self, data: np.ndarray, fmt: str, stamp: float):
        return self._t("sensor_msgs/msg/CompressedImage")(header=self.header(stamp, OPTICAL), format=fmt,
                                                          data=np.asarray(data, np.uint8).reshape(-1))

    def color_image(self, rgb: np.ndarray, stamp: float, encoding: str):
        if encoding == "jpeg":
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            return "sensor_msgs/msg/CompressedImage", self._compressed(data, "rgb8; jpeg compressed bgr8", stamp)
        pixels = rgb if encoding == "rgb8" else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        return "sensor_msgs/msg/Image", self._image(pixels, encoding, stamp)

    def depth_image(self, metres: np.ndarray, stamp: float, encoding: str):
        millimetres = np.clip(np.round(metres * 1000.0), 0, 65534).astype("<u2")
        if encoding == "32FC1":
            return "sensor_msgs/msg/Image", self._image(metres.astype("<f4"), "32FC1", stamp)
        if encoding == "compressedDepth":
            ok, png = cv2.imencode(".png", millimetres)
            header = np.frombuffer(np.array([0], "<i4").tobytes() + np.zeros(2, "<f4").tobytes(), np.uint8)
            return "sensor_msgs/msg/CompressedImage", self._compressed(
                np.concatenate([header, png.reshape(-1)]), "16UC1; compressedDepth png", stamp)
        return "sensor_msgs/msg/Image", self._image(millimetres, "16UC1", stamp)
