"""ROS bags: a synthetic scene written with rosbags' own writers (ROS 1 .bag, ROS 2 .db3 and .mcap) reads
back frame for frame (images, depth in metres, K, pose from /tf chains and from pose topics); pairing,
interpolation, errors and topic proposal; `scene inspect` / `scene run` on bags."""
from __future__ import annotations

import numpy as np
import pytest

from scene.app.cli import main
from scene.datasets import DatasetError, detect_format, open_dataset
from scene.datasets.readers.rosbag import (
    RosBagSource, TopicSummary, decode_color, decode_depth, interpolate_poses, propose_topics,
)
from scene.datasets.rosbag_writer import write_rosbag
from scene.datasets.synthetic import make_scene
from scene.storage import MapStore

FRAMES = 6


@pytest.fixture(scope="module")
def frames():
    scene = make_scene("room", seed=3, noisy=True, num_frames=FRAMES, width=160, height=120)
    return [scene.frame(i) for i in range(FRAMES)]


@pytest.fixture(scope="module")
def scene_frames():
    """8 neighbouring views of a 100-frame loop (small steps, as a real camera moves)."""
    dense = make_scene("room", seed=3, noisy=True, num_frames=100, width=320, height=240)
    return [dense.frame(i) for i in range(8)]


def _bag_path(root, name: str, fmt: str):
    return root / (f"{name}.bag" if fmt == "bag" else f"{name}_{fmt}")


# Every format with every pose source and a different encoding pair each time.
CASES = [
    (fmt, poses, color, depth)
    for fmt in ("bag", "db3", "mcap")
    for poses, color, depth in (("tf", "rgb8", "16UC1"), ("pose", "jpeg", "32FC1"), ("odometry", "bgr8", "compressedDepth"))
]


@pytest.mark.parametrize("fmt,poses,color,depth", CASES)
def test_frames_read_back_as_written(tmp_path, frames, fmt, poses, color, depth):
    path = write_rosbag(frames, _bag_path(tmp_path, "s", fmt), format=fmt, poses=poses, color=color, depth=depth)
    assert detect_format(path) == "rosbag"
    source = open_dataset(path)
    assert len(source) == FRAMES and source.unmatched == {"without colour within max_dt": 0, "without pose": 0}
    for written, read in zip(frames, source):
        if color == "jpeg":
            assert np.abs(read.color.astype(int) - written.color).mean() < 4
        else:
            assert np.array_equal(read.color, written.color)
        expected = written.depth if depth == "32FC1" else np.round(written.depth * 1000) / 1000
        np.testing.assert_allclose(read.depth, expected, atol=1e-6)
        np.testing.assert_allclose(read.K, written.K)
        np.testing.assert_allclose(read.pose, written.pose, atol=1e-9)
    assert source.world_frame_used == "map" and source.camera_frame_used == "camera_color_optical_frame"


def test_a_bare_storage_file_reads_like_its_bag_folder(tmp_path, frames):
    folder = write_rosbag(frames, tmp_path / "b", format="mcap")
    (mcap,) = folder.glob("*.mcap")
    assert len(open_dataset(mcap)) == FRAMES
    np.testing.assert_allclose(open_dataset(mcap).poses, open_dataset(folder).poses)


def test_unmatched_frames_are_left_out_and_counted(tmp_path, frames):
    path = write_rosbag(frames, tmp_path / "lossy.bag", format="bag", drop_color=[1], drop_pose=[3, 4], fps=10)
    with pytest.warns(UserWarning, match="left out depth frames"):
        source = RosBagSource(path, max_pose_gap=0.05)
    assert source.unmatched == {"without colour within max_dt": 1, "without pose": 2}
    assert [f.timestamp for f in source] == pytest.approx([1.7e9 + k / 10 for k in (0, 2, 5)])
    np.testing.assert_allclose(source[2].pose, frames[5].pose, atol=1e-9)


def test_a_missing_tf_sample_is_interpolated_between_its_neighbours(tmp_path, scene_frames):
    path = write_rosbag(scene_frames, tmp_path / "gap_mcap", format="mcap", drop_pose=[2], fps=10)
    source = RosBagSource(path, max_pose_gap=0.25)
    assert len(source) == len(scene_frames)
    # the synthetic camera moves smoothly: the interpolated pose is near the true one, not equal to a neighbour
    error = np.linalg.norm(source.poses[2][:3, 3] - scene_frames[2].pose[:3, 3])
    step = np.linalg.norm(scene_frames[3].pose[:3, 3] - scene_frames[2].pose[:3, 3])
    assert 0 < error < 0.1 * step


def test_interpolation_is_exact_for_linear_motion():
    T0, T1 = np.eye(4), np.eye(4)
    T1[:3, 3] = [1.0, 2.0, 0.0]
    T1[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 degrees about z
    out = interpolate_poses(np.array([0.0, 1.0]), np.stack([T0, T1]), np.array([0.5, 2.0, 1.01]), 0.02, 2.0)
    np.testing.assert_allclose(out[0][:3, 3], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(np.degrees(np.arctan2(out[0][1, 0], out[0][0, 0])), 45.0)
    assert np.all(np.isnan(out[1]))  # 1 s past the last sample: no pose
    np.testing.assert_allclose(out[2], T1)  # 10 ms past it: the nearest


def test_bad_bags_raise_dataset_errors_naming_the_file(tmp_path, frames):
    garbage = tmp_path / "broken.bag"
    garbage.write_bytes(b"#ROSBAG V2.0\n" + bytes(range(256)) * 4)
    with pytest.raises(DatasetError, match="broken.bag: not a readable ROS bag"):
        open_dataset(garbage)
    good = write_rosbag(frames[:2], tmp_path / "good.bag", format="bag")
    with pytest.raises(DatasetError, match=r"good.bag: topic /nope is not in the bag.*color topics: /camera/color/image_raw"):
        RosBagSource(good, color_topic="/nope")
    no_info = write_rosbag(frames[:2], tmp_path / "noinfo.bag", format="bag", camera_info=False)
    with pytest.raises(DatasetError, match="noinfo.bag: no CameraInfo topic"):
        RosBagSource(no_info)
    assert len(RosBagSource(no_info, K=frames[0].K)) == 2
    with pytest.raises(DatasetError, match="no frames"):
        RosBagSource(good, max_dt=0.001)  # colour is 4 ms after depth: nothing pairs


def test_unsupported_encodings_are_named(frames):
    from rosbags.typesys import Stores, get_typestore

    types = get_typestore(Stores.ROS2_HUMBLE).types
    header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c")
    bayer = types["sensor_msgs/msg/Image"](header=header, height=2, width=2, encoding="bayer_rggb8", is_bigendian=0,
                                          step=2, data=np.zeros(4, np.uint8))
    with pytest.raises(DatasetError, match="x.bag: unsupported colour encoding 'bayer_rggb8'"):
        decode_color(bayer, "x.bag")
    with pytest.raises(DatasetError, match="unsupported depth encoding 'bayer_rggb8'"):
        decode_depth(bayer, 1000.0, "x.bag")
    short = types["sensor_msgs/msg/Image"](header=header, height=2, width=2, encoding="16UC1", is_bigendian=0,
                                          step=4, data=np.zeros(6, np.uint8))
    with pytest.raises(DatasetError, match="does not hold 2x2 16UC1 pixels"):
        decode_depth(short, 1000.0, "x.bag")
    big = types["sensor_msgs/msg/Image"](header=header, height=1, width=2, encoding="16UC1", is_bigendian=1, step=6,
                                        data=np.array([0x03, 0xE8, 0x07, 0xD0, 0, 0], np.uint8))  # padded rows
    np.testing.assert_allclose(decode_depth(big, 1000.0, "x"), [[1.0, 2.0]])


def _topic(name, msgtype="sensor_msgs/msg/Image", encoding="rgb8", frame="cam"):
    return TopicSummary(name, msgtype, 10, encoding=encoding, frame_id=frame)


def test_topic_proposal_prefers_raw_images_registered_depth_and_nearby_camera_info():
    topics = [
        _topic("/cam/color/image_raw"), _topic("/cam/color/image_raw/compressed", "sensor_msgs/msg/CompressedImage", "jpeg"),
        _topic("/cam/depth/image_rect_raw", encoding="16UC1", frame="depth_optical"),
        _topic("/cam/aligned_depth_to_color/image_raw", encoding="16UC1", frame="cam"),
        _topic("/cam/aligned_depth_to_color/camera_info", "sensor_msgs/msg/CameraInfo", "", "cam"),
        _topic("/cam/depth/camera_info", "sensor_msgs/msg/CameraInfo", "", "depth_optical"),
        _topic("/tf", "tf2_msgs/msg/TFMessage", ""),
    ]
    choice = propose_topics(topics)
    assert (choice.color, choice.depth, choice.info, choice.use_tf, choice.problems) == (
        "/cam/color/image_raw", "/cam/aligned_depth_to_color/image_raw", "/cam/aligned_depth_to_color/camera_info",
        True, [])
    two_cameras = propose_topics(topics + [_topic("/cam2/color/image_raw", frame="cam2")])
    assert two_cameras.color is None and "--color-topic" in two_cameras.problems[0]
    no_poses = propose_topics(topics[:-1])
    assert any("no pose (no /tf either) topic" in p for p in no_poses.problems)


@pytest.mark.parametrize("fmt,poses", [("mcap", "tf"), ("db3", "pose"), ("bag", "odometry")])
def test_cli_maps_a_bag_end_to_end(tmp_path, scene_frames, fmt, poses, capsys):
    path = write_rosbag(scene_frames, _bag_path(tmp_path, "scene", fmt), format=fmt, poses=poses, color="jpeg")
    assert main(["inspect", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "proposed: --color-topic /camera/color/image_raw/compressed" in shown and "8 frames" in shown
    out = tmp_path / "map.sqlite"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    with MapStore(out, read_only=True) as store:
        imap = store.load()
    assert imap.num_frames == 8 and len(imap) >= 5 and imap.metadata.source_format == "rosbag"
    np.testing.assert_allclose(imap.trajectory[1], np.stack([f.pose for f in scene_frames]), atol=1e-6)


def test_cli_reports_an_ambiguous_or_wrong_choice_in_one_line(tmp_path, frames, capsys):
    path = write_rosbag(frames[:2], tmp_path / "b.bag", format="bag")
    assert main(["run", str(path), "--out", str(tmp_path / "m.sqlite"), "--pose-topic", "/camera/color/image_raw"]) == 2
    assert "is a sensor_msgs/msg/Image, not a pose topic" in capsys.readouterr().err
    assert main(["run", str(tmp_path), "--out", str(tmp_path / "m.sqlite"), "--color-topic", "/x"]) == 2
    assert "--color-topic: only for ROS bags" in capsys.readouterr().err


def test_compressed_32bit_depth_is_dequantized():
    import struct

    import cv2
    from rosbags.typesys import Stores, get_typestore

    types = get_typestore(Stores.ROS2_HUMBLE).types
    metres = np.array([[0.5, 1.0], [2.5, 0.0]], np.float32)
    quant_a, quant_b = 2000.0, -1.0  # image_transport stores inverse depth: value = A / depth + B
    values = np.where(metres > 0, np.round(quant_a / np.maximum(metres, 1e-6) + quant_b), 0).astype(np.uint16)
    ok, png = cv2.imencode(".png", values)
    data = np.frombuffer(struct.pack("<iff", 0, quant_a, quant_b) + png.tobytes(), np.uint8)
    header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c")
    msg = types["sensor_msgs/msg/CompressedImage"](header=header, format="32FC1; compressedDepth png", data=data)
    np.testing.assert_allclose(decode_depth(msg, 1000.0, "x"), metres, atol=1e-3)
