"""The service's pipeline in this process with onnxruntime: the benchmark baseline.

Same flow and pre/post-processing as the Triton pipeline (``pipeline.run_topdown``); only where
the networks run differs, so a side-by-side benchmark measures what serving costs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .contract import INPUT, ONE_STAGE_OUTPUTS, POSE_OUTPUTS, io_names, session
from .pipeline import TopDownResult, run_onestage, run_topdown
from .specs import DetectorSpec, OneStageSpec, PoseSpec


class LocalPipeline:
    """Top-down (a detector and a pose model) or one-stage (``detector=None``)."""

    def __init__(
        self,
        detector: tuple[Path, DetectorSpec] | None,
        pose: tuple[Path, PoseSpec | OneStageSpec],
        threads: int = 0,
    ) -> None:
        self.det_spec, self.pose_spec = (detector[1] if detector else None), pose[1]
        self.det = session(detector[0], threads) if detector else None
        self.pose = session(pose[0], threads)

    def _detect(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        name, outputs = io_names(self.det_spec)  # type: ignore[arg-type]
        return tuple(self.det.run(list(outputs), {name: x}))

    def _estimate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        simcc_x, simcc_y = self.pose.run(list(POSE_OUTPUTS), {INPUT: x})
        return simcc_x, simcc_y

    def _one_stage(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dets, keypoints = self.pose.run(list(ONE_STAGE_OUTPUTS), {INPUT: x})
        return dets, keypoints

    def __call__(
        self, image: np.ndarray, score_threshold: float = 0.3, max_persons: int = 100
    ) -> TopDownResult:
        if isinstance(self.pose_spec, OneStageSpec):
            model = (self.pose_spec, self._one_stage)
            return run_onestage(image, model, score_threshold, max_persons)
        assert self.det_spec is not None, "a top-down pipeline needs a detector"
        return run_topdown(
            image,
            (self.det_spec, self._detect),
            (self.pose_spec, self._estimate),
            score_threshold,
            max_persons,
        )
