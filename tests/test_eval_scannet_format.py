import numpy as np
import pytest

from scene.eval.instance_ap import evaluate_scenes, ScenePredictions
from scene.eval.scannet_format import class_agnostic_gt, read_gt_ids, read_predictions, write_predictions


def random_predictions(n_vertices=500, n_masks=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n_masks, n_vertices)) < 0.3, rng.random(n_masks).astype(np.float32)


def test_round_trip(tmp_path):
    masks, scores = random_predictions()
    scene_file = write_predictions(tmp_path / "out", "scene0448_01", masks, scores, label_ids=[3, 4, 5, 39])
    assert scene_file == tmp_path / "out" / "scene0448_01.txt"
    first = scene_file.read_text().splitlines()[0].split()
    assert first[0] == "pred_mask/scene0448_01_000.txt" and first[1] == "3"
    assert (tmp_path / "out" / "pred_mask" / "scene0448_01_003.txt").read_text().count("\n") == 500
    back = read_predictions(scene_file, 500)
    np.testing.assert_array_equal(back.masks, masks)
    np.testing.assert_array_equal(back.scores, scores.astype(np.float64))  # float32 survives exactly
    np.testing.assert_array_equal(back.label_ids, [3, 4, 5, 39])
    assert [p.name for p in back.mask_files] == [f"scene0448_01_{k:03d}.txt" for k in range(4)]


def test_reader_accepts_the_scripts_own_files(tmp_path):
    # As ScanNet's export_instance_ids_for_eval writes them: '%s %d %f', masks with any non-zero integer.
    (tmp_path / "pred_mask").mkdir()
    (tmp_path / "pred_mask" / "s_1.txt").write_text("0\n7\n0\n1\n")
    (tmp_path / "s.txt").write_text("pred_mask/s_1.txt 5 1.000000\n")
    back = read_predictions(tmp_path / "s.txt", 4)
    np.testing.assert_array_equal(back.masks, [[False, True, False, True]])
    assert back.scores[0] == 1.0 and back.label_ids[0] == 5


def test_wrong_vertex_count_names_the_file(tmp_path):
    masks, scores = random_predictions()
    scene_file = write_predictions(tmp_path, "s", masks, scores)
    with pytest.raises(ValueError, match=r"s_000\.txt.*500 values, expected 501"):
        read_predictions(scene_file, 501)


def test_missing_mask_file_names_it(tmp_path):
    masks, scores = random_predictions()
    scene_file = write_predictions(tmp_path, "s", masks, scores)
    (tmp_path / "pred_mask" / "s_002.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"s_002\.txt"):
        read_predictions(scene_file, 500)


def test_malformed_lines_are_named(tmp_path):
    (tmp_path / "bad.txt").write_text("pred_mask/a.txt 1\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 1"):
        read_predictions(tmp_path / "bad.txt", 10)
    (tmp_path / "abs.txt").write_text("/etc/passwd 1 0.5\n")
    with pytest.raises(ValueError, match="must be relative"):
        read_predictions(tmp_path / "abs.txt", 10)
    (tmp_path / "pred_mask").mkdir()
    (tmp_path / "pred_mask" / "x.txt").write_text("0\n1\nyes\n")
    (tmp_path / "x.txt").write_text("pred_mask/x.txt 1 0.5\n")
    with pytest.raises(ValueError, match=r"x\.txt.*not an integer"):
        read_predictions(tmp_path / "x.txt", 3)


def test_class_agnostic_gt_follows_the_script(tmp_path):
    # 3001: chair-class id 3 instance 1 -> instance; 3: class 3 without instance -> void;
    # 1001: wall instance (not a benchmark class) -> background; 0: unannotated -> background.
    (tmp_path / "gt.txt").write_text("3001\n3\n1001\n0\n39002\n")
    ids = read_gt_ids(tmp_path / "gt.txt", 5)
    np.testing.assert_array_equal(class_agnostic_gt(ids), [3001, 0, -1, -1, 39002])


def test_round_trip_gives_the_same_ap(tmp_path):
    rng = np.random.default_rng(1)
    gt = np.repeat(np.arange(1, 6), 200)
    masks = (gt[None] == np.arange(1, 6)[:, None]) ^ (rng.random((5, 1000)) < 0.2)
    scores = rng.random(5)
    direct = evaluate_scenes([ScenePredictions(gt, masks, scores)]).ap_per_overlap
    back = read_predictions(write_predictions(tmp_path, "s", masks, scores), 1000)
    via_files = evaluate_scenes([ScenePredictions(gt, back.masks, back.scores)]).ap_per_overlap
    np.testing.assert_array_equal(direct, via_files)
