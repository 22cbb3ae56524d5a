"""The ``sam2`` mask generator for the mapping pipeline: SAM 2's automatic mask generator on keyframes,
SAM 2's video memory in between.

Every ``keyframe_every``-th frame (and the first) gets the automatic mask generator (a point grid through
the image predictor, SAM's filters); each kept mask starts a track, prompted as a mask on that frame.
The frames in between are segmented by propagating those tracks with the video predictor (no grid, one
memory-attention pass per frame), so every mask carries ``extra["track_id"]``: the same id on every frame
where the track is seen. At the next keyframe the tracks are propagated there too and each new automatic
mask that overlaps a propagated one (mask IoU >= ``match_iou``) keeps that track's id; the video memory then
restarts from the keyframe's masks (memory bounded by the keyframe interval).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from ..automatic import AMGConfig, AutomaticMaskGenerator, _as_image, resolve_device, resolve_encoder_dtype
from ..types import MaskSet, boxes_from_masks
from .build import load_sam2
from .predictor import Sam2ImagePredictor
from .video import Sam2VideoPredictor

# SAM 2's automatic generator defaults where they differ from SAM's
SAM2_AMG_DEFAULTS = {"pred_iou_thresh": 0.8}


@dataclass(frozen=True)
class KeyframeConfig:
    """``keyframe_every``: frames per automatic-mask keyframe (1: every frame, no propagation);
    ``match_iou``: mask IoU for a keyframe mask to continue a propagated track."""

    keyframe_every: int = 5
    match_iou: float = 0.5

    def __post_init__(self) -> None:
        if int(self.keyframe_every) < 1:
            raise ValueError(f"keyframe_every must be >= 1, got {self.keyframe_every}")
        if not 0.0 < float(self.match_iou) <= 1.0:
            raise ValueError(f"match_iou must be in (0, 1], got {self.match_iou}")


KEYFRAME_OPTION_NAMES = tuple(f.name for f in fields(KeyframeConfig))


class Sam2MaskGenerator:
    """``checkpoint``: a ``sam2.1_hiera_*.pt`` file; ``model_type``: hiera_t | hiera_s | hiera_b+ | hiera_l or
    None to infer; ``device``: "cuda" when available unless given; ``encoder_dtype``: float32 | bfloat16 |
    float16 (image encoder under autocast), or "auto": bfloat16 on CUDA (float16 where the GPU lacks it),
    float32 on the CPU. Further keywords: ``KeyframeConfig`` and ``AMGConfig`` fields."""

    name = "sam2"

    def __init__(self, checkpoint, model_type: str | None = None, device: str | None = None,
                 encoder_dtype: str | torch.dtype = "auto", config: AMGConfig | None = None, **options) -> None:
        device = resolve_device(device or "auto")
        keyframe_options = {k: options.pop(k) for k in KEYFRAME_OPTION_NAMES if k in options}
        self.keyframes = KeyframeConfig(**keyframe_options)
        model = load_sam2(checkpoint, model_type=model_type, device=device)
        dtype = resolve_encoder_dtype(encoder_dtype, device)
        self.image_predictor = Sam2ImagePredictor(model, device=device, encoder_dtype=dtype)
        amg_options = {**SAM2_AMG_DEFAULTS, **options} if config is None else options
        self.amg = AutomaticMaskGenerator(self.image_predictor, config, **amg_options)
        self.video = Sam2VideoPredictor(model, device=device, encoder_dtype=dtype)
        self.frames_seen = 0
        self.next_track_id = 0
        self.track_scores: dict[int, float] = {}

    def generate(self, image_or_frame) -> MaskSet:
        image = _as_image(image_or_frame)
        size = (int(image.shape[0]), int(image.shape[1]))
        keyframe = self.frames_seen % self.keyframes.keyframe_every == 0 or not self.video.obj_ids
        if self.video.video_size is not None and self.video.video_size != size:
            self.video.reset()  # a new image size cannot continue the memory
            keyframe = True
        self.frames_seen += 1
        if keyframe:
            return self._keyframe(image, size)
        self.video.add_frame(image)
        return self._propagated(self.video.track())

    @torch.inference_mode()
    def _keyframe(self, image: np.ndarray, size: tuple[int, int]) -> MaskSet:
        masks = self.amg.generate(image)
        self.image_predictor.set_image(image)  # the same image: reuses the AMG's encoding
        features = self.image_predictor.features
        previous = None
        if self.video.obj_ids and self.video.video_size == size:
            self.video.add_features(features, size)
            previous = self._propagated(self.video.track())
        track_ids = self._track_ids(masks, previous)
        self.video.reset()
        self.video.add_features(features, size)
        for mask, track_id, score in zip(masks.masks, track_ids, masks.scores):
            self.video.add_mask(int(track_id), mask)
            self.track_scores[int(track_id)] = float(score)
        self.image_predictor.reset_image()
        return MaskSet(masks.masks, masks.scores, masks.boxes, {**masks.extra, "track_id": track_ids})

    def _track_ids(self, masks: MaskSet, previous: MaskSet | None) -> np.ndarray:
        """Each keyframe mask's track: the best-overlapping propagated track (greedy, IoU >= match_iou), else new."""
        ids = np.full(len(masks), -1, np.int64)
        if previous is not None and len(previous) and len(masks):
            iou = mask_iou(masks.masks, previous.masks)
            for flat in np.argsort(-iou, axis=None):
                i, j = np.unravel_index(flat, iou.shape)
                if iou[i, j] < self.keyframes.match_iou:
                    break
                if ids[i] < 0 and previous.extra["track_id"][j] not in ids:
                    ids[i] = previous.extra["track_id"][j]
        for i in np.flatnonzero(ids < 0):
            ids[i], self.next_track_id = self.next_track_id, self.next_track_id + 1
        self.next_track_id = max(self.next_track_id, int(ids.max(initial=-1)) + 1)
        return ids

    def _propagated(self, tracked) -> MaskSet:
        """The tracked objects that are visible and non-empty, as a MaskSet with their track ids."""
        masks = tracked.masks()
        visible = (tracked.object_score[:, 0] > 0).cpu().numpy() & masks.any(axis=(1, 2))
        ids = np.asarray(tracked.obj_ids, np.int64)[visible]
        masks = masks[visible]
        scores = np.array([self.track_scores.get(int(i), 1.0) for i in ids], np.float32)
        return MaskSet(masks, np.clip(scores, 0.0, 1.0), boxes_from_masks(masks), {"track_id": ids})


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """N x M IoU of two stacks of H x W bool masks."""
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)
