"""Megvii's YOLOX ONNX demo (``demo/ONNXRuntime/onnx_inference.py`` with
``yolox/data/data_augment.preproc`` and ``yolox/utils/demo_utils``), rewritten from it as the
independent reference ``service.core.yolox`` is tested against."""

from __future__ import annotations

import cv2
import numpy as np


def megvii_preproc(img, input_size):
    padded = np.ones((input_size[0], input_size[1], 3), dtype=np.uint8) * 114
    r = min(input_size[0] / img.shape[0], input_size[1] / img.shape[1])
    resized = cv2.resize(img, (int(img.shape[1] * r), int(img.shape[0] * r)),
                         interpolation=cv2.INTER_LINEAR).astype(np.uint8)  # fmt: skip
    padded[: int(img.shape[0] * r), : int(img.shape[1] * r)] = resized
    return np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32), r


def megvii_postprocess(outputs, img_size):
    grids, expanded = [], []
    for stride in (8, 16, 32):
        hsize, wsize = img_size[0] // stride, img_size[1] // stride
        xv, yv = np.meshgrid(np.arange(wsize), np.arange(hsize))
        grid = np.stack((xv, yv), 2).reshape(1, -1, 2)
        grids.append(grid)
        expanded.append(np.full((*grid.shape[:2], 1), stride))
    outputs = outputs.copy()
    outputs[..., :2] = (outputs[..., :2] + np.concatenate(grids, 1)) * np.concatenate(expanded, 1)
    outputs[..., 2:4] = np.exp(outputs[..., 2:4]) * np.concatenate(expanded, 1)
    return outputs


def megvii_nms(boxes, scores, nms_thr):
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= nms_thr)[0] + 1]
    return keep


def megvii_detect(sess, image, input_shape=(416, 416), nms_thr=0.45, score_thr=0.1):
    img, ratio = megvii_preproc(image, input_shape)
    output = sess.run(None, {sess.get_inputs()[0].name: img[None, :, :, :]})
    predictions = megvii_postprocess(output[0], input_shape)[0]
    boxes, scores = predictions[:, :4], predictions[:, 4:5] * predictions[:, 5:]
    xyxy = np.ones_like(boxes)
    xyxy[:, 0], xyxy[:, 1] = boxes[:, 0] - boxes[:, 2] / 2.0, boxes[:, 1] - boxes[:, 3] / 2.0
    xyxy[:, 2], xyxy[:, 3] = boxes[:, 0] + boxes[:, 2] / 2.0, boxes[:, 1] + boxes[:, 3] / 2.0
    xyxy /= ratio
    cls = scores.argmax(1)  # multiclass_nms_class_agnostic (the demo's default)
    cls_scores = scores[np.arange(len(cls)), cls]
    valid = cls_scores > score_thr
    if not valid.any():
        return np.zeros((0, 6))
    vb, vs, vc = xyxy[valid], cls_scores[valid], cls[valid]
    keep = megvii_nms(vb, vs, nms_thr)
    return np.concatenate([vb[keep], vs[keep, None], vc[keep, None]], 1)
