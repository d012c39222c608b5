"""Detector -> crops -> pose -> keypoints in image coordinates, inside Triton (BLS).

The flow and every pre/post-processing step are ``service.core`` (shared with the tests and
the in-process benchmark baseline); this file only wires them to BLS calls. Which detector/pose
model and version to call comes with each request; their specs come from the ``rtmserve.json``
records beside them in the model repository.
"""

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from service.core.pipeline import run_topdown
from service.repository.configs import POSE_MAX_BATCH
from service.repository.records import RecordCache


class PipelineError(Exception):
    pass


class TritonPythonModel:
    def initialize(self, args):
        self.records = RecordCache(Path(args["model_repository"]).parent)

    def execute(self, requests):
        return [self._handle(r) for r in requests]

    def _handle(self, request):
        try:
            return self._run(request)
        except PipelineError as exc:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))

    def _run(self, request):
        image = _input(request, "IMAGE")
        if image is None or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise PipelineError("IMAGE must be a non-empty HxWx3 uint8 BGR array")
        det_name, det_version = _model_ref(request, "DETECTOR")
        pose_name, pose_version = _model_ref(request, "POSE_MODEL", required=False)
        detector = (
            self._spec(det_name, "detector"),
            lambda x: self._infer(det_name, det_version, x, ("dets", "labels")),
        )
        pose = None
        if pose_name is not None:
            pose = (
                self._spec(pose_name, "pose"),
                lambda x: self._infer_batched(pose_name, pose_version, x),
            )
        result = run_topdown(
            image,
            detector,
            pose,
            score_threshold=_scalar(request, "SCORE_THRESHOLD", 0.0),
            max_persons=int(_scalar(request, "MAX_PERSONS", 0)),
            boxes=_input(request, "BOXES"),
        )
        outputs = [
            pb_utils.Tensor("PERSON_BOXES", np.ascontiguousarray(result.boxes, np.float32)),
            pb_utils.Tensor("KEYPOINTS", np.ascontiguousarray(result.keypoints, np.float32)),
            pb_utils.Tensor("STAGE_MS", result.stage_ms),
        ]
        return pb_utils.InferenceResponse(output_tensors=outputs)

    def _spec(self, name, task):
        try:
            record = self.records.get(name)
        except KeyError:
            raise PipelineError(f"model {name!r} is not in the model repository") from None
        if record.task != task:
            raise PipelineError(f"model {name!r} is a {record.task} model, not a {task} model")
        return record.parsed_spec

    def _infer_batched(self, name, version, crops):
        parts = [
            self._infer(name, version, crops[i : i + POSE_MAX_BATCH], ("simcc_x", "simcc_y"))
            for i in range(0, len(crops), POSE_MAX_BATCH)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _infer(self, name, version, tensor, outputs):
        request = pb_utils.InferenceRequest(
            model_name=name,
            model_version=version,
            requested_output_names=list(outputs),
            inputs=[pb_utils.Tensor("input", np.ascontiguousarray(tensor, np.float32))],
        )
        response = request.exec()
        if response.has_error():
            raise PipelineError(f"{name} v{version}: {response.error().message()}")
        return [pb_utils.get_output_tensor_by_name(response, o).as_numpy() for o in outputs]


def _input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _scalar(request, name, default):
    value = _input(request, name)
    return default if value is None or value.size == 0 else value.reshape(-1)[0].item()


def _model_ref(request, name, required=True):
    model = _input(request, name)
    version = _input(request, f"{name.removesuffix('_MODEL')}_VERSION")
    if model is None or model.size == 0:
        if not required:
            return None, -1
        raise PipelineError(f"{name} is required")
    label = model.reshape(-1)[0]
    label = label.decode() if isinstance(label, bytes) else str(label)
    return label, int(version.reshape(-1)[0]) if version is not None and version.size else -1
