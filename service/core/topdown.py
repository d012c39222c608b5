"""Top-down crop geometry (mmpose ``bbox_xyxy2cs`` + ``TopdownAffine``, no UDP, no rotation).

The box is centred and padded (1.25), widened or heightened to the model's aspect ratio, then
warped with a 3-point affine transform computed in float32 like the MMDeploy SDK.
Boxes are not clipped to the image: the warp fills outside pixels with 0.
"""

from __future__ import annotations

import cv2
import numpy as np

from .normalize import to_input_tensor
from .specs import PoseSpec


def box_to_center_scale(
    boxes: np.ndarray, input_size: tuple[int, int], padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """(N, >=4) xyxy boxes -> centers (N, 2) and aspect-fixed, padded scales (N, 2) in pixels."""
    b = np.asarray(boxes, np.float32).reshape(-1, np.shape(boxes)[-1])[:, :4]
    center = np.stack([(b[:, 0] + b[:, 2]) * 0.5, (b[:, 1] + b[:, 3]) * 0.5], axis=1)
    w = (b[:, 2] - b[:, 0]) * np.float32(padding)
    h = (b[:, 3] - b[:, 1]) * np.float32(padding)
    aspect = np.float32(input_size[0] / input_size[1])
    wide = w > aspect * h
    scale = np.stack([np.where(wide, w, h * aspect), np.where(wide, w / aspect, h)], axis=1)
    return center.astype(np.float32), scale.astype(np.float32)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], np.float32)


def warp_matrix(center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """2x3 affine matrix mapping the scaled box onto the (width, height) model input."""
    c = np.asarray(center, np.float32)
    src_dir = np.array([0.0, scale[0] * -0.5], np.float32)
    dst_w, dst_h = input_size
    dst_c = np.array([dst_w * 0.5, dst_h * 0.5], np.float32)
    dst_dir = np.array([0.0, dst_w * -0.5], np.float32)
    src = np.stack([c, c + src_dir, _third_point(c, c + src_dir)]).astype(np.float32)
    dst = np.stack([dst_c, dst_c + dst_dir, _third_point(dst_c, dst_c + dst_dir)]).astype(
        np.float32
    )
    return cv2.getAffineTransform(src, dst)


def crop(
    image: np.ndarray, center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]
) -> np.ndarray:
    m = warp_matrix(center, scale, input_size)
    return cv2.warpAffine(image, m, input_size, flags=cv2.INTER_LINEAR)


def pose_input(
    image: np.ndarray, boxes: np.ndarray, spec: PoseSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops for every box -> (N, 3, H, W) float32 input, centers (N, 2), scales (N, 2)."""
    centers, scales = box_to_center_scale(boxes, spec.input_size, spec.bbox_padding)
    w, h = spec.input_size
    crops = np.empty((len(centers), h, w, 3), np.uint8)
    for i, (c, s) in enumerate(zip(centers, scales, strict=True)):
        crops[i] = crop(image, c, s, spec.input_size)
    return to_input_tensor(crops, spec.mean, spec.std, spec.to_rgb), centers, scales
