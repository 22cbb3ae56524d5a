"""Evaluation metrics: 2D mask recall, ScanNet-style class-agnostic 3D instance AP, 3D box AP, ScanNet files,
and scoring a whole map against ground truth (``scene.eval.maps``)."""
from scene.eval.box_ap import BOX_OVERLAPS, BoxAP, SceneBoxes, box_ap, box_iou_3d, evaluate_box_scenes, voc_ap
from scene.eval.instance_ap import (
    SCANNET_OVERLAPS,
    InstanceAP,
    InstanceAPConfig,
    ScenePredictions,
    evaluate_scenes,
    instance_ap,
    instance_ious,
    masks_from_labels,
    objects_only,
)
from scene.eval.maps import (
    EvaluationError,
    evaluate_boxes,
    evaluate_on_point_ids,
    evaluate_on_project_gt,
    evaluate_pooled,
    instance_predictions,
    map_instance_ap,
    read_gt_boxes,
    scene_boxes,
)
from scene.eval.masks2d import DEFAULT_THRESHOLDS, MaskRecall, mask_recall
from scene.eval.scannet_format import (
    SCANNET_VALID_CLASS_IDS,
    ScanNetPredictions,
    class_agnostic_gt,
    read_gt_ids,
    read_predictions,
    write_predictions,
)

__all__ = [
    "BOX_OVERLAPS", "BoxAP", "SceneBoxes", "box_ap", "box_iou_3d", "evaluate_box_scenes", "voc_ap",
    "SCANNET_OVERLAPS", "InstanceAP", "InstanceAPConfig", "ScenePredictions", "evaluate_scenes", "instance_ap",
    "instance_ious", "masks_from_labels", "objects_only",
    "EvaluationError", "evaluate_boxes", "evaluate_on_point_ids", "evaluate_on_project_gt", "evaluate_pooled",
    "instance_predictions", "map_instance_ap", "read_gt_boxes", "scene_boxes",
    "DEFAULT_THRESHOLDS", "MaskRecall", "mask_recall",
    "SCANNET_VALID_CLASS_IDS", "ScanNetPredictions", "class_agnostic_gt", "read_gt_ids", "read_predictions",
    "write_predictions",
]
