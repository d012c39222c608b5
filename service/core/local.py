"""The service's pipeline in this process with onnxruntime: the benchmark baseline.

Same flow and pre/post-processing as the Triton pipeline (``pipeline.run_topdown``); only where
the networks run differs, so a side-by-side benchmark measures what serving costs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .contract import DETECTOR_OUTPUTS, INPUT, POSE_OUTPUTS, session
from .pipeline import TopDownResult, run_topdown
from .specs import DetectorSpec, PoseSpec


class LocalPipeline:
    def __init__(
        self,
        detector: tuple[Path, DetectorSpec],
        pose: tuple[Path, PoseSpec],
        threads: int = 0,
    ) -> None:
        self.det_spec, self.pose_spec = detector[1], pose[1]
        self.det = session(detector[0], threads)
        self.pose = session(pose[0], threads)

    def _detect(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dets, labels = self.det.run(list(DETECTOR_OUTPUTS), {INPUT: x})
        return dets, labels

    def _estimate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        simcc_x, simcc_y = self.pose.run(list(POSE_OUTPUTS), {INPUT: x})
        return simcc_x, simcc_y

    def __call__(
        self, image: np.ndarray, score_threshold: float = 0.3, max_persons: int = 100
    ) -> TopDownResult:
        return run_topdown(
            image,
            (self.det_spec, self._detect),
            (self.pose_spec, self._estimate),
            score_threshold,
            max_persons,
        )
