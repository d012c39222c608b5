"""Top-down crop geometry: person box -> model-input crop -> back to image coordinates.

Two crops, both official:

- ``sdk`` (default): MMDeploy SDK 1.x ``TopDownAffine``. It does not warp; it rounds the padded
  box to an integer ROI, crops it, resizes it bilinearly into the model input (zero padding
  where the ROI leaves the image) and corrects center/scale so decoding maps keypoints back
  exactly. This is what ``mmdeploy_runtime.PoseDetector`` (the reference we test against) and
  the published MMDeploy pipelines run.
- ``affine``: mmpose ``TopdownAffine`` / rtmlib: one ``cv2.warpAffine`` of the padded box
  (3-point transform, bilinear, zero border). Training augmentation uses this warp.

Box to center/scale follows the SDK's float32 arithmetic (mmpose ``bbox_xyxy2cs`` with the
aspect fix, padding 1.25); boxes are not clipped.
"""

from __future__ import annotations

import cv2
import numpy as np

from .normalize import to_input_tensor
from .specs import PoseSpec

F32 = np.float32


def box_to_center_scale(
    boxes: np.ndarray, input_size: tuple[int, int], padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """(N, >=4) xyxy boxes -> centers (N, 2) and aspect-fixed, padded scales (N, 2) in pixels."""
    b = np.asarray(boxes, F32).reshape(-1, np.shape(boxes)[-1])[:, :4]
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    center = np.stack([b[:, 0] + w * 0.5, b[:, 1] + h * 0.5], axis=1).astype(F32)
    aspect = input_size[0] / input_size[1]
    wide = w.astype(np.float64) > aspect * h
    tall = w.astype(np.float64) < aspect * h
    w, h = np.where(tall, (h * aspect).astype(F32), w), np.where(wide, (w / aspect).astype(F32), h)
    # The SDK stores scale / 200 and multiplies back; keep its float32 rounding.
    scale = np.stack([w, h], axis=1) / F32(200) * F32(padding)
    return center, (scale.astype(F32) * F32(200)).astype(F32)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], F32)


def warp_matrix(
    center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int], rotation: float = 0.0
) -> np.ndarray:
    """2x3 affine matrix mapping the scaled box (rotated by ``rotation`` degrees, as mmpose's
    ``get_warp_matrix``; training augmentation rotates) onto the (width, height) model input."""
    c = np.asarray(center, F32)
    sn, cs = np.sin(np.deg2rad(rotation)), np.cos(np.deg2rad(rotation))
    half = scale[0] * -0.5
    src_dir = np.array([-sn * half, cs * half], F32)
    dst_w, dst_h = input_size
    dst_c = np.array([dst_w * 0.5, dst_h * 0.5], F32)
    dst_dir = np.array([0.0, dst_w * -0.5], F32)
    src = np.stack([c, c + src_dir, _third_point(c, c + src_dir)]).astype(F32)
    dst = np.stack([dst_c, dst_c + dst_dir, _third_point(dst_c, dst_c + dst_dir)]).astype(F32)
    return cv2.getAffineTransform(src, dst)


def affine_crop(
    image: np.ndarray, center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]
) -> np.ndarray:
    m = warp_matrix(center, scale, input_size)
    return cv2.warpAffine(image, m, input_size, flags=cv2.INTER_LINEAR)


def _round(values) -> np.ndarray:
    """C++ ``std::round`` (half away from zero), not numpy's half-to-even."""
    v = np.asarray(values, F32)
    return (np.sign(v) * np.floor(np.abs(v) + F32(0.5))).astype(np.int64)


def _intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """xywh integer boxes; None when empty."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    w = min(a[0] + a[2], b[0] + b[2]) - x1
    h = min(a[1] + a[3], b[1] + b[3]) - y1
    return None if w <= 0 or h <= 0 else np.array([x1, y1, w, h])


def sdk_crop(
    image: np.ndarray, center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MMDeploy's crop-resize-pad: returns the crop and the corrected center and scale."""
    tw, th = input_size
    out = np.zeros((th, tw, 3), np.uint8)
    c, s = np.asarray(center, F32), np.asarray(scale, F32)
    roi = _round([c[0] - s[0] / F32(2), c[1] - s[1] / F32(2), s[0], s[1]])
    src = _intersect(roi, np.array([0, 0, image.shape[1], image.shape[0]]))
    if src is None:  # the box lies outside the image: nothing to see
        return out, c, s
    factor = F32(tw) / s[0]
    dst = _round(
        [(src[0] - roi[0]) * factor, (src[1] - roi[1]) * factor, src[2] * factor, src[3] * factor]
    )
    dst = _intersect(dst, np.array([0, 0, tw, th]))
    if dst is None:
        return out, c, s
    f = np.array([dst[2] / src[2], dst[3] / src[3]], F32)
    c_src = src[:2].astype(F32) + (src[2:] - 1).astype(F32) / F32(2)
    c_dst = dst[:2].astype(F32) + (dst[2:] - 1).astype(F32) / F32(2)
    v_dst = np.array([tw / 2, th / 2], F32) - c_dst
    new_c = (c_src + v_dst / f).astype(F32)
    new_s = (np.array([tw, th], F32) / f / F32(200)).astype(F32) * F32(200)
    patch = image[src[1] : src[1] + src[3], src[0] : src[0] + src[2]]
    out[dst[1] : dst[1] + dst[3], dst[0] : dst[0] + dst[2]] = cv2.resize(
        patch, (int(dst[2]), int(dst[3])), interpolation=cv2.INTER_LINEAR
    )
    return out, new_c, new_s.astype(F32)


def pose_input(
    image: np.ndarray, boxes: np.ndarray, spec: PoseSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops for every box -> (N, 3, H, W) float32 input, centers (N, 2), scales (N, 2).

    The centers/scales returned are the ones decoding must use (the SDK crop corrects them).
    """
    centers, scales = box_to_center_scale(boxes, spec.input_size, spec.bbox_padding)
    w, h = spec.input_size
    crops = np.empty((len(centers), h, w, 3), np.uint8)
    for i in range(len(centers)):
        if spec.crop == "affine":
            crops[i] = affine_crop(image, centers[i], scales[i], spec.input_size)
        else:
            crops[i], centers[i], scales[i] = sdk_crop(
                image, centers[i], scales[i], spec.input_size
            )
    return to_input_tensor(crops, spec.mean, spec.std, spec.to_rgb), centers, scales
