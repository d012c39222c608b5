"""Top-down training augmentation: RTMPose's two-stage recipe (mmpose + mmdet transforms).

Stage 1 (most epochs): horizontal flip with COCO flip pairs, half body, random shift/scale/
rotation of the box, affine crop, YOLOX HSV jitter, blur / median blur, one coarse dropout
hole. Stage 2 (the last epochs) is weaker: no shift, scale 0.75-1.25, rotation 60, dropout
half the time. The crop is ``service.core.topdown.warp_matrix`` (the serving convention with
rotation added) so training and serving share the geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from service.core.keypoints import COCO_FLIP_INDICES
from service.core.topdown import warp_matrix

UPPER_BODY = np.arange(0, 11)
LOWER_BODY = np.arange(11, 17)


@dataclass(frozen=True)
class Augment:
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    shift_factor: float = 0.16
    shift_prob: float = 0.3
    scale_factor: tuple[float, float] = (0.6, 1.4)
    rotate_factor: float = 80.0
    rotate_prob: float = 0.6
    hsv: bool = True
    blur_prob: float = 0.1
    median_blur_prob: float = 0.1
    dropout_prob: float = 1.0
    flip_indices: tuple[int, ...] = COCO_FLIP_INDICES  # the keypoint set's mirror pairs


STAGE1 = Augment()
STAGE2 = Augment(shift_factor=0.0, scale_factor=(0.75, 1.25), rotate_factor=60.0, dropout_prob=0.5)
NONE = Augment(0, 0, 0, 0, (1.0, 1.0), 0, 0, False, 0, 0, 0)


def truncnorm(rng: np.random.Generator, size=None) -> np.ndarray:
    """Standard normal truncated to [-1, 1] (mmpose's bbox-transform sampling)."""
    out = rng.standard_normal(size)
    bad = np.abs(out) > 1
    while np.any(bad):
        out = np.where(bad, rng.standard_normal(size), out)
        bad = np.abs(out) > 1
    return out


def _half_body(kpts: np.ndarray, vis: np.ndarray, rng: np.random.Generator):
    """Center/scale of the upper or lower body (mmpose RandomHalfBody), or None."""
    if vis.sum() < 9:
        return None
    upper = UPPER_BODY[vis[UPPER_BODY] > 0]
    lower = LOWER_BODY[vis[LOWER_BODY] > 0]
    if len(upper) < 2 and len(lower) < 3:
        return None
    if len(lower) < 3:
        ids = upper
    elif len(upper) < 2:
        ids = lower
    else:
        ids = upper if rng.random() < 0.7 else lower
    pts = kpts[ids]
    center = pts.mean(axis=0)
    scale = (pts.max(axis=0) - pts.min(axis=0)) * 1.5
    return center.astype(np.float32), scale.astype(np.float32)


def _fix_aspect(scale: np.ndarray, aspect: float) -> np.ndarray:
    w, h = scale
    return np.array([w, w / aspect] if w > aspect * h else [h * aspect, h], np.float32)


def _hsv(image: np.ndarray, rng: np.random.Generator) -> None:
    gains = rng.uniform(-1, 1, 3) * np.array([5, 30, 30]) * rng.integers(0, 2, 3)
    gains = gains.astype(np.int16)
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] + gains[1], 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + gains[2], 0, 255)
    cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR, dst=image)


def _dropout(image: np.ndarray, rng: np.random.Generator) -> None:
    h, w = image.shape[:2]
    hh = int(h * rng.uniform(0.2, 0.4))
    ww = int(w * rng.uniform(0.2, 0.4))
    y, x = rng.integers(0, h - hh + 1), rng.integers(0, w - ww + 1)
    image[y : y + hh, x : x + ww] = 0


def make_sample(
    image: np.ndarray,
    bbox: np.ndarray,
    keypoints: np.ndarray,
    input_size: tuple[int, int],
    aug: Augment,
    rng: np.random.Generator,
    padding: float = 1.25,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One person -> (crop HxWx3 uint8 BGR, keypoints (K, 2) in crop pixels, visibility (K,))."""
    kpts = keypoints[:, :2].astype(np.float32).copy()
    vis = (keypoints[:, 2] > 0).astype(np.float32)
    x1, y1, x2, y2 = bbox[:4]
    center = np.array([(x1 + x2) * 0.5, (y1 + y2) * 0.5], np.float32)
    scale = np.array([x2 - x1, y2 - y1], np.float32) * padding

    if aug.flip_prob and rng.random() < aug.flip_prob:
        width = image.shape[1]
        image = cv2.flip(image, 1)
        center[0] = width - center[0]
        kpts[:, 0] = width - 1 - kpts[:, 0]
        flip = np.asarray(aug.flip_indices)
        kpts, vis = kpts[flip], vis[flip]
    if aug.half_body_prob and rng.random() < aug.half_body_prob:
        half = _half_body(kpts, vis, rng)
        if half is not None:
            center, scale = half
    offset = truncnorm(rng, 2) * aug.shift_factor
    if rng.random() < aug.shift_prob:
        center = center + offset.astype(np.float32) * scale
    lo, hi = aug.scale_factor
    scale = scale * np.float32(truncnorm(rng) * (hi - lo) / 2 + (hi + lo) / 2)
    rotation = float(truncnorm(rng) * aug.rotate_factor) if rng.random() < aug.rotate_prob else 0.0

    scale = _fix_aspect(scale, input_size[0] / input_size[1])
    m = warp_matrix(center, scale, input_size, rotation)
    crop = cv2.warpAffine(image, m, input_size, flags=cv2.INTER_LINEAR)
    kpts = cv2.transform(kpts[None], m)[0]

    if aug.hsv:
        _hsv(crop, rng)
    if rng.random() < aug.blur_prob:
        k = int(rng.integers(3, 8))
        crop = cv2.blur(crop, (k, k))
    if rng.random() < aug.median_blur_prob:
        crop = cv2.medianBlur(crop, int(rng.choice([3, 5, 7])))
    if rng.random() < aug.dropout_prob:
        _dropout(crop, rng)
    return np.ascontiguousarray(crop), kpts.astype(np.float32), vis
