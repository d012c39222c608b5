"""Detector input and output geometry, exactly as the MMDeploy SDK does it.

Resize keeping the aspect ratio (``int(w * s + 0.5)`` in float32, bilinear), pad bottom/right
to the model size, and map ``dets`` back by dividing by the per-axis resize factor and clipping
to ``[0, W-1] x [0, H-1]`` (mmdeploy ``ResizeBBox`` / ``MapToOriginImage``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .normalize import to_input_tensor
from .specs import DetectorSpec


@dataclass(frozen=True)
class Letterbox:
    """What is needed to map detector boxes back to the original image."""

    scale_x: float
    scale_y: float
    width: int
    height: int


def letterbox(
    image: np.ndarray, size: tuple[int, int], pad_value: int
) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (H, W, 3 uint8) into a (width, height) canvas, top-left aligned."""
    h, w = image.shape[:2]
    long_edge, short_edge = max(size), min(size)
    s = np.float32(min(long_edge / max(h, w), short_edge / min(h, w)))
    # at least one pixel: a 1x2000 image would round to no row at all
    dst_w = max(1, int(np.float32(w) * s + np.float32(0.5)))
    dst_h = max(1, int(np.float32(h) * s + np.float32(0.5)))
    resized = image
    if (dst_w, dst_h) != (w, h):
        resized = cv2.resize(image, (dst_w, dst_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size[1], size[0], 3), pad_value, dtype=np.uint8)
    canvas[:dst_h, :dst_w] = resized[: size[1], : size[0]]
    return canvas, Letterbox(dst_w / w, dst_h / h, w, h)


def detector_input(image: np.ndarray, spec: DetectorSpec) -> tuple[np.ndarray, Letterbox]:
    canvas, box = letterbox(image, spec.input_size, spec.pad_value)
    return to_input_tensor(canvas, spec.mean, spec.std, spec.to_rgb), box


def detector_output(
    dets: np.ndarray, labels: np.ndarray, box: Letterbox, spec: DetectorSpec
) -> np.ndarray:
    """One image's ``dets`` (M, 5) + ``labels`` (M,) -> person boxes (P, 5) in image pixels.

    Keeps the model's order (score-descending after in-graph NMS).
    """
    dets = np.asarray(dets, np.float32).reshape(-1, 5)
    labels = np.asarray(labels).reshape(-1)
    keep = (dets[:, 4] > np.float32(spec.score_thr)) & (labels == spec.person_label)
    d = dets[keep]
    sx, sy = np.float32(box.scale_x), np.float32(box.scale_y)
    out = np.empty_like(d)
    out[:, 0] = np.maximum(d[:, 0] / sx, np.float32(0))
    out[:, 1] = np.maximum(d[:, 1] / sy, np.float32(0))
    out[:, 2] = np.minimum(d[:, 2] / sx, np.float32(box.width - 1))
    out[:, 3] = np.minimum(d[:, 3] / sy, np.float32(box.height - 1))
    out[:, 4] = d[:, 4]
    return out
