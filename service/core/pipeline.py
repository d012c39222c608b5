"""The top-down and one-stage flows, independent of where the networks run.

Top-down: image -> (detector) -> person boxes -> crops -> (pose model) -> keypoints. One-stage
(RTMO): image -> (model) -> boxes and keypoints. The Triton pipeline model passes its own
onnxruntime sessions or BLS calls as the networks; the in-process benchmark baseline passes
sessions. All therefore run exactly the same pre/post-processing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .letterbox import detector_input, detector_output
from .onestage import onestage_input, onestage_output
from .simcc import decode
from .specs import DetectorSpec, OneStageSpec, PoseSpec
from .topdown import pose_input
from .yolox import yolox_input, yolox_output

Detect = Callable[[np.ndarray], tuple[np.ndarray, ...]]  # input -> dets, labels (yolox: raw)
Estimate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # crops -> simcc_x, simcc_y
OneStage = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # input -> dets, keypoints
# a one-stage model's network time counts as "pose"; its "detector" stage stays 0
STAGES = ("preprocess", "detector", "pose", "postprocess")


@dataclass
class TopDownResult:
    boxes: np.ndarray  # (P, 5) x1, y1, x2, y2, score
    keypoints: np.ndarray  # (P, K, 3) x, y, score; K = 0 without a pose model
    stage_ms: np.ndarray  # (4,) see STAGES


def run_topdown(
    image: np.ndarray,
    detector: tuple[DetectorSpec, Detect] | None,
    pose: tuple[PoseSpec, Estimate] | None,
    score_threshold: float = 0.0,
    max_persons: int = 0,
    boxes: np.ndarray | None = None,
) -> TopDownResult:
    """``boxes`` (P, 5) skips the detector; ``pose=None`` returns boxes only."""
    stage = np.zeros(4, np.float32)
    t0 = time.perf_counter()
    if boxes is None:
        if detector is None:
            raise ValueError("either a detector or boxes are needed")
        det_spec, detect = detector
        if det_spec.head == "yolox":
            tensor, ratio = yolox_input(image, det_spec)
            t1 = time.perf_counter()
            (raw,) = detect(tensor)
            t2 = time.perf_counter()
            boxes = yolox_output(raw[0], ratio, det_spec)[0]
        else:
            tensor, letterbox = detector_input(image, det_spec)
            t1 = time.perf_counter()
            dets, labels = detect(tensor)
            t2 = time.perf_counter()
            boxes = detector_output(dets[0], labels[0], letterbox, det_spec)
        boxes = boxes[boxes[:, 4] > score_threshold]
        stage[0] += (t1 - t0) * 1e3
        stage[1] += (t2 - t1) * 1e3
        t0 = t2
    boxes = np.asarray(boxes, np.float32).reshape(-1, 5)
    if max_persons > 0:
        boxes = boxes[:max_persons]

    keypoints = np.zeros((len(boxes), 0, 3), np.float32)
    if pose is not None and len(boxes):
        pose_spec, estimate = pose
        crops, centers, scales = pose_input(image, boxes, pose_spec)
        t1 = time.perf_counter()
        simcc_x, simcc_y = estimate(crops)
        t2 = time.perf_counter()
        keypoints = decode(
            simcc_x, simcc_y, centers, scales, pose_spec.input_size, pose_spec.simcc_split_ratio
        )
        stage[0] += (t1 - t0) * 1e3
        stage[2] += (t2 - t1) * 1e3
        t0 = t2
    stage[3] += (time.perf_counter() - t0) * 1e3
    return TopDownResult(boxes, keypoints, stage)


def run_onestage(
    image: np.ndarray,
    model: tuple[OneStageSpec, OneStage],
    score_threshold: float = 0.0,
    max_persons: int = 0,
) -> TopDownResult:
    spec, run = model
    stage = np.zeros(4, np.float32)
    t0 = time.perf_counter()
    tensor, placement = onestage_input(image, spec)
    t1 = time.perf_counter()
    dets, keypoints = run(tensor)
    t2 = time.perf_counter()
    boxes, kpts = onestage_output(dets[0], keypoints[0], placement, spec, score_threshold)
    if max_persons > 0:
        boxes, kpts = boxes[:max_persons], kpts[:max_persons]
    stage[0], stage[2] = (t1 - t0) * 1e3, (t2 - t1) * 1e3
    stage[3] = (time.perf_counter() - t2) * 1e3
    return TopDownResult(boxes, kpts, stage)
