"""Megvii YOLOX exports with the raw head (no decode, no NMS in the graph): what a COCO-80
detector needs around it, as Megvii's own demo does it (``yolox/data/data_augment.preproc``,
``yolox/utils/demo_utils.demo_postprocess`` and ``multiclass_nms``, class-agnostic by default).

Input: the image resized by ``r = min(H / h, W / w)`` to ``(int(w r), int(h r))``, top-left on
a 114-grey canvas, raw BGR 0-255 (no normalisation). Output [1, A, 5 + C]: per anchor of the
stride 8, 16, 32 grids (row-major, level by level), (x, y, log w, log h) offsets, objectness,
class scores; a box's score for a class is objectness x class score. Each anchor takes its
best class, boxes are divided by r, and one class-agnostic NMS (IoU > ``nms_thr`` suppresses,
with Megvii's +1 pixel areas) keeps the detections, as Megvii's ONNX demo does.
"""

from __future__ import annotations

import cv2
import numpy as np

from .specs import DetectorSpec

STRIDES = (8, 16, 32)


def yolox_input(image: np.ndarray, spec: DetectorSpec) -> tuple[np.ndarray, float]:
    """[1, 3, H, W] float32 and the resize ratio."""
    w_in, h_in = spec.input_size
    h, w = image.shape[:2]
    r = min(h_in / h, w_in / w)
    size = (max(1, int(w * r)), max(1, int(h * r)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    canvas = np.full((h_in, w_in, 3), spec.pad_value, np.uint8)
    canvas[: size[1], : size[0]] = resized
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], np.float32), r


def anchors(input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Grid cells (A, 2) and their strides (A, 1), level by level, row-major."""
    w, h = input_size
    grids, strides = [], []
    for s in STRIDES:
        xv, yv = np.meshgrid(np.arange(w // s), np.arange(h // s))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((grids[-1].shape[0], 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)


def decode(raw: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One image's head output (A, 5 + C) -> boxes (A, 4) xyxy in input pixels, scores (A, C)."""
    grid, stride = anchors(input_size)
    raw = np.asarray(raw, np.float32)
    xy = (raw[:, :2] + grid) * stride
    wh = np.exp(raw[:, 2:4]) * stride
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
    return boxes, raw[:, 4:5] * raw[:, 5:]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float) -> list[int]:
    """Greedy NMS by descending score; areas with Megvii's +1 pixel."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort(kind="stable")[::-1]
    keep = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou <= iou_thr]
    return keep


def yolox_output(
    raw: np.ndarray, ratio: float, spec: DetectorSpec
) -> tuple[np.ndarray, np.ndarray]:
    """One image's raw output -> boxes (P, 5) in image pixels, score-descending, and their
    COCO class ids (P,). Megvii's demo: each anchor's best class, boxes divided by the ratio,
    one class-agnostic NMS over every class; then the spec's classes are kept (``labels``;
    else ``person_label``), so an animal box that a person box suppressed stays suppressed."""
    boxes, scores = decode(raw, spec.input_size)
    boxes = boxes / ratio
    labels = scores.argmax(1)
    best = scores[np.arange(len(labels)), labels]
    valid = best > spec.score_thr
    boxes, best, labels = boxes[valid], best[valid], labels[valid]
    keep = nms(boxes, best, spec.nms_thr)
    dets = np.concatenate([boxes[keep], best[keep, None]], 1).astype(np.float32).reshape(-1, 5)
    labels = labels[keep].astype(np.int64)
    wanted = np.isin(labels, spec.labels or (spec.person_label,))
    return dets[wanted], labels[wanted]
