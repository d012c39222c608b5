"""RTMO input and output geometry, as mmpose does it.

Input: mmpose's ``BottomupResize`` (the RTMO test pipeline): the whole image, centred in the
640x640 input by one affine warp that keeps its aspect ratio, bilinear, border 114; raw BGR
pixels (mean 0, std 1). Output: the export's ``dets``/``keypoints`` rows above the score
threshold, boxes clamped to the input as mmpose's head does, then both mapped back with
mmpose's ``keypoints / input_size * input_scale + input_center - input_scale / 2``. (rtmlib
pads top-left instead and maps back by dividing by the ratio; its keypoints differ from
mmpose's by up to half the padding.) The MMDeploy SDK cannot run RTMO (its pipeline has no
``BottomupResize`` transform), so mmpose is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .normalize import to_input_tensor
from .specs import OneStageSpec
from .topdown import warp_matrix

F32 = np.float32


@dataclass(frozen=True)
class Placement:
    """Where the image sits in the model input: mmpose's ``input_center``/``input_scale``."""

    center: np.ndarray  # (2,) image pixels
    scale: np.ndarray  # (2,) image pixels the input spans


def onestage_input(image: np.ndarray, spec: OneStageSpec) -> tuple[np.ndarray, Placement]:
    """(1, 3, H, W) float32 and the placement to map results back."""
    h, w = image.shape[:2]
    pad_w, pad_h = spec.input_size
    ratio = w / h
    rsz_w, rsz_h = min(pad_w, pad_h * ratio), min(pad_h, pad_w / ratio)
    center = np.array([w / 2, h / 2], F32)
    scale = np.array([w * pad_w / rsz_w, h * pad_h / rsz_h], F32)
    warp = warp_matrix(center, scale, (pad_w, pad_h))
    canvas = cv2.warpAffine(image, warp, (pad_w, pad_h), flags=cv2.INTER_LINEAR,
                            borderValue=(spec.pad_value,) * 3)  # fmt: skip
    return to_input_tensor(canvas, spec.mean, spec.std, spec.to_rgb), Placement(center, scale)


def onestage_output(
    dets: np.ndarray,
    keypoints: np.ndarray,
    placement: Placement,
    spec: OneStageSpec,
    score_threshold: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One image's rows -> (boxes (P, 5), keypoints (P, K, 3)) in image pixels, by descending
    score. Rows at or below the model's threshold are dropped (an export pads its output with
    such rows), and so are those at or below ``score_threshold``."""
    dets = np.asarray(dets, F32).reshape(-1, 5)
    kpts = np.asarray(keypoints, F32).reshape(len(dets), -1, 3)
    keep = dets[:, 4] > F32(max(spec.score_thr, score_threshold))
    dets, kpts = dets[keep], kpts[keep]
    order = np.argsort(-dets[:, 4], kind="stable")
    dets, kpts = dets[order], kpts[order]
    size = np.array(spec.input_size, F32)
    corners = np.clip(dets[:, :4].reshape(-1, 2, 2), 0, size)  # mmpose clamps boxes only

    def to_image(points: np.ndarray) -> np.ndarray:
        return points / size * placement.scale + placement.center - F32(0.5) * placement.scale

    boxes = np.concatenate([to_image(corners).reshape(-1, 4), dets[:, 4:5]], 1)
    out = np.concatenate([to_image(kpts[..., :2]), kpts[..., 2:3]], -1)
    return boxes.astype(F32), out.astype(F32)
