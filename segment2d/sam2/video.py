"""SAM 2.1 video predictor, streaming: frames arrive one at a time, prompts (points, a box or a mask)
start or re-condition an object on the current frame, and ``track`` segments every object on it from its
memory, the same way as the official ``SAM2VideoPredictor.propagate_in_video`` (forward direction).

Memory per object, as the original: the prompted ("conditioning") frames, the last ``num_maskmem - 1``
tracked frames and the object pointers of the last ``max_obj_ptrs - 1`` frames; older tracked frames are
dropped, so the memory is bounded however long the stream is. Spatial memories are kept in bfloat16 as the
official predictor stores them. Objects whose memories have the same frames are tracked as one batch.

Usage::

    video = Sam2VideoPredictor(model)
    video.add_frame(rgb0)                      # H x W x 3 uint8
    video.add_points(obj_id=1, points=[[x, y]], labels=[1])
    video.add_mask(obj_id=2, mask=bool_mask)   # H x W
    first = video.track()                      # TrackedFrame for frame 0
    for rgb in rest:
        video.add_frame(rgb)
        out = video.track()                    # out.masks(): N x H x W bool, out.obj_ids
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from .model import FrameFeatures, HeadOutput, Sam2Model
from .position import sine_code_1d, sine_code_2d
from .predictor import encode_features


@dataclass
class FrameMemory:
    """What one object keeps of one frame: ``maskmem`` 1 x mem_dim x h x w (bfloat16; None until
    encoded), ``obj_ptr`` 1 x C, ``low_res`` 1 x 1 x 4h x 4w logits, ``object_score`` 1 x 1 logit."""

    low_res: torch.Tensor
    obj_ptr: torch.Tensor
    object_score: torch.Tensor
    maskmem: torch.Tensor | None = None


@dataclass
class ObjectTrack:
    cond: dict[int, FrameMemory] = field(default_factory=dict)
    tracked: dict[int, FrameMemory] = field(default_factory=dict)


@dataclass
class TrackedFrame:
    """All objects on one frame, in ``obj_ids`` order: ``low_res`` N x 1 x 4h x 4w logits (model-input
    frame), ``obj_ptr`` N x C, ``object_score`` N x 1 (> 0: visible); ``video_size`` (H, W) of the frames."""

    frame_idx: int
    obj_ids: list[int]
    low_res: torch.Tensor
    obj_ptr: torch.Tensor
    object_score: torch.Tensor
    video_size: tuple[int, int]

    def logits(self) -> torch.Tensor:
        """N x 1 x H x W logits at the frames' size (bilinear, as the official predictor)."""
        if len(self.obj_ids) == 0:
            return self.low_res.new_zeros((0, 1, *self.video_size))
        return F.interpolate(self.low_res, size=self.video_size, mode="bilinear", align_corners=False)

    def masks(self) -> np.ndarray:
        """N x H x W bool masks (logit > 0)."""
        return (self.logits()[:, 0] > 0).cpu().numpy()


class Sam2VideoPredictor:
    def __init__(
        self,
        model: Sam2Model,
        device: str | torch.device | None = None,
        encoder_dtype: torch.dtype = torch.float32,
        num_frames: int | None = None,
    ) -> None:
        """``num_frames``: the stream's length when known (the official predictor attends to
        min(num_frames, 16) object pointers and scales their time code by it); None for an open stream."""
        self.device = torch.device(device) if device is not None else model.device
        self.model = model.to(self.device).eval()
        self.encoder_dtype = encoder_dtype
        self.num_frames = num_frames
        self.reset()

    def reset(self) -> None:
        self.frame_idx = -1
        self.features: FrameFeatures | None = None
        self.video_size: tuple[int, int] | None = None
        self.objects: dict[int, ObjectTrack] = {}
        self.pending: dict[int, FrameMemory] = {}  # prompted on the current frame, memory not yet encoded
        self._maskmem_pos: torch.Tensor | None = None

    @property
    def obj_ids(self) -> list[int]:
        return list(self.objects)

    # frames -------------------------------------------------------------------------------------------

    def add_frame(self, image: np.ndarray) -> int:
        """Encode the next H x W x 3 uint8 RGB frame (all frames the same size); returns its index."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frame: expected H x W x 3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
        pixels = torch.as_tensor(np.ascontiguousarray(image), device=self.device).permute(2, 0, 1)[None]
        return self.add_input(self.model.preprocess(pixels), (int(image.shape[0]), int(image.shape[1])))

    @torch.inference_mode()
    def add_input(self, normalised: torch.Tensor, video_size: tuple[int, int]) -> int:
        """Encode the next frame given as a normalised 1 x 3 x S x S input showing a (H, W) frame."""
        return self.add_features(encode_features(self.model, normalised.to(self.device), self.encoder_dtype), video_size)

    @torch.inference_mode()
    def add_features(self, features: FrameFeatures, video_size: tuple[int, int]) -> int:
        """The next frame given by its encoder features (e.g. from ``Sam2ImagePredictor.features``)."""
        if self.video_size is not None and tuple(video_size) != self.video_size:
            raise ValueError(f"frame size {tuple(video_size)} differs from the stream's {self.video_size}")
        self._encode_pending_memories()
        self.video_size = (int(video_size[0]), int(video_size[1]))
        self.features = features
        self.frame_idx += 1
        return self.frame_idx

    # prompts ------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def add_points(self, obj_id: int, points=None, labels=None, box=None) -> torch.Tensor:
        """Prompt object ``obj_id`` on the current frame with clicks (N x 2 (x, y) frame pixels, labels 1
        fg / 0 bg) and/or a box (x0, y0, x1, y1); the box goes first, as the original. The object then
        restarts from this frame as a prompted frame. Returns its 1 x 1 x H x W logits."""
        self._require_frame()
        coords, codes = [], []
        if box is not None:
            coords.append(np.asarray(box, np.float32).reshape(2, 2))
            codes.append(np.array([2, 3]))
        if points is not None:
            pts = np.asarray(points, np.float32).reshape(-1, 2)
            lbl = np.asarray(labels).reshape(-1)
            if len(lbl) != len(pts):
                raise ValueError(f"{len(pts)} points but {len(lbl)} labels")
            coords.append(pts)
            codes.append(lbl)
        if not coords:
            raise ValueError("add_points: give points (with labels) and/or a box")
        xy = torch.as_tensor(np.concatenate(coords), device=self.device)[None]
        h, w = self.video_size
        xy = xy / torch.tensor([w, h], dtype=torch.float32, device=self.device) * self.model.image_size
        lab = torch.as_tensor(np.concatenate(codes), dtype=torch.int64, device=self.device)[None]
        multimask = lab.shape[1] <= 1  # the original answers a single click with its best of 3 masks
        embed = self.model.image_only_embedding(self.features)
        out = self.model.prompt_heads(embed, self.features.high_res, points=(xy, lab), multimask=multimask)
        return self._set_prompt(obj_id, out)

    @torch.inference_mode()
    def add_mask(self, obj_id: int, mask: np.ndarray) -> torch.Tensor:
        """Prompt object ``obj_id`` on the current frame with an H x W mask (taken as the output)."""
        self._require_frame()
        mask = torch.as_tensor(np.asarray(mask, dtype=bool), device=self.device)
        if mask.ndim != 2:
            raise ValueError(f"mask: expected H x W, got shape {tuple(mask.shape)}")
        size = self.model.image_size
        masks = mask[None, None].float()
        if masks.shape[-2:] != (size, size):
            masks = F.interpolate(masks, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            masks = (masks >= 0.5).float()
        out = self.model.mask_as_output(self.features.image_embed, self.features.high_res, masks)
        return self._set_prompt(obj_id, out)

    def _set_prompt(self, obj_id: int, out: HeadOutput) -> torch.Tensor:
        self.objects.setdefault(int(obj_id), ObjectTrack())
        self.pending[int(obj_id)] = FrameMemory(out.low_res, out.obj_ptr, out.object_score)
        return F.interpolate(out.low_res, size=self.video_size, mode="bilinear", align_corners=False)

    def remove_object(self, obj_id: int) -> None:
        self.objects.pop(int(obj_id), None)
        self.pending.pop(int(obj_id), None)

    # tracking -----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def track(self) -> TrackedFrame:
        """Every object on the current frame: prompted ones as prompted, the others from their memory."""
        self._require_frame()
        t = self.frame_idx
        self._encode_pending_memories()
        results: dict[int, FrameMemory] = {}
        for obj_id, track in self.objects.items():
            if t in track.cond:
                results[obj_id] = track.cond[t]
        to_track = [i for i in self.objects if i not in results and self.objects[i].cond]
        for group in self._groups(to_track).values():
            results.update(self._track_group(group))
        for obj_id in to_track:
            self._prune(self.objects[obj_id])
        ids = [i for i in self.objects if i in results]
        if not ids:
            empty = self.features.image_embed.new_zeros
            grid = 4 * self.model.config.embedding_size
            return TrackedFrame(t, [], empty((0, 1, grid, grid)), empty((0, self.model.config.d_model)), empty((0, 1)), self.video_size)
        cat = lambda name: torch.cat([getattr(results[i], name) for i in ids])
        return TrackedFrame(t, ids, cat("low_res"), cat("obj_ptr"), cat("object_score"), self.video_size)

    def _encode_pending_memories(self) -> None:
        """Prompted outputs become conditioning memories (binarised masks, as the original on clicked frames)."""
        if not self.pending:
            return
        for obj_id, memory in self.pending.items():
            high = F.interpolate(memory.low_res, size=(self.model.image_size,) * 2, mode="bilinear", align_corners=False)
            maskmem, _ = self.model.encode_memory(self.features.image_embed, high, memory.object_score, binarize=True)
            memory.maskmem = maskmem.to(torch.bfloat16)
            track = self.objects[obj_id]
            track.cond[self.frame_idx] = memory
            track.tracked.pop(self.frame_idx, None)
        self.pending = {}

    def _groups(self, obj_ids: list[int]) -> dict[tuple, list[int]]:
        """Objects whose memory banks have the same layout (so they can be stacked)."""
        groups: dict[tuple, list[int]] = {}
        for obj_id in obj_ids:
            spatial, pointers = self._memory_frames(self.objects[obj_id])
            key = (tuple(t_pos for t_pos, _ in spatial), tuple(pos for pos, _ in pointers))
            groups.setdefault(key, []).append(obj_id)
        return groups

    def _max_pointers(self) -> int:
        limit = self.model.config.max_obj_ptrs
        return limit if self.num_frames is None else min(self.num_frames, limit)

    def _memory_frames(self, track: ObjectTrack) -> tuple[list[tuple[int, FrameMemory]], list[tuple[int, FrameMemory]]]:
        """(spatial memories as (t_pos, memory), object pointers as (signed frame distance, memory)):
        the prompted frames (t_pos 0), then the last num_maskmem - 1 tracked frames; pointers of the past
        prompted frames and of the tracked frames up to max_obj_ptrs - 1 back."""
        t, n_mem = self.frame_idx, self.model.config.num_maskmem
        spatial = [(0, m) for m in track.cond.values()]
        for t_pos in range(1, n_mem):
            memory = track.tracked.get(t - (n_mem - t_pos))
            if memory is not None:
                spatial.append((t_pos, memory))
        pointers = [(t - tc, m) for tc, m in track.cond.items() if tc <= t]
        for distance in range(1, self._max_pointers()):
            if t - distance < 0:
                break
            memory = track.tracked.get(t - distance)
            if memory is not None:
                pointers.append((distance, memory))
        return spatial, pointers

    def _track_group(self, obj_ids: list[int]) -> dict[int, FrameMemory]:
        model, config = self.model, self.model.config
        banks = [self._memory_frames(self.objects[i]) for i in obj_ids]
        spatial_pos = self._spatial_code()
        memory, memory_pos = [], []
        for k, (t_pos, _) in enumerate(banks[0][0]):  # grouped objects share the layout, entry by entry
            feats = torch.cat([bank[0][k][1].maskmem for bank in banks]).float()
            memory.append(feats.flatten(2).transpose(1, 2))
            code = spatial_pos + model.maskmem_tpos_enc[config.num_maskmem - t_pos - 1].view(1, -1)
            memory_pos.append(code[None].expand(len(obj_ids), -1, -1))
        n_pointer_tokens = 0
        if banks[0][1]:
            distances = torch.tensor([d for d, _ in banks[0][1]], dtype=torch.float32, device=self.device)
            pointers = torch.stack([torch.cat([m.obj_ptr for _, m in bank[1]]) for bank in banks])  # B x P x C
            time_code = model.obj_ptr_tpos_proj(sine_code_1d(distances / (self._max_pointers() - 1), config.d_model))
            split = config.d_model // config.mem_dim
            b, p, _ = pointers.shape
            memory.append(pointers.reshape(b, p * split, config.mem_dim))
            memory_pos.append(time_code.repeat_interleave(split, dim=0)[None].expand(b, -1, -1))
            n_pointer_tokens = p * split
        conditioned = model.condition_on_memory(self.features, torch.cat(memory, 1), torch.cat(memory_pos, 1), n_pointer_tokens)
        out = model.prompt_heads(conditioned, self.features.high_res, multimask=True)
        maskmem, _ = model.encode_memory(self.features.image_embed, out.high_res, out.object_score, binarize=False)
        results = {}
        for row, obj_id in enumerate(obj_ids):
            memory_row = FrameMemory(out.low_res[row : row + 1], out.obj_ptr[row : row + 1], out.object_score[row : row + 1],
                                     maskmem[row : row + 1].to(torch.bfloat16))
            self.objects[obj_id].tracked[self.frame_idx] = memory_row
            results[obj_id] = memory_row
        return results

    def _spatial_code(self) -> torch.Tensor:
        """HW x mem_dim sine code of the memory grid (the same for every frame)."""
        if self._maskmem_pos is None:
            side = self.model.config.embedding_size
            code = sine_code_2d(side, side, self.model.config.mem_dim, self.device)
            self._maskmem_pos = code.flatten(1).transpose(0, 1)
        return self._maskmem_pos

    def _prune(self, track: ObjectTrack) -> None:
        """Drop tracked frames the next frame will not attend to (neither as memory nor as pointer)."""
        keep = max(self.model.config.num_maskmem - 1, self._max_pointers() - 1)
        for t in [t for t in track.tracked if t <= self.frame_idx - keep]:
            del track.tracked[t]

    def _require_frame(self) -> None:
        if self.features is None:
            raise RuntimeError("Sam2VideoPredictor: add a frame (add_frame) first")
