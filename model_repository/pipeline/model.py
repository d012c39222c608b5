"""Detector -> crops -> pose -> keypoints in image coordinates, inside Triton (BLS).

The flow and every pre/post-processing step are ``service.core`` (shared with the gateway,
the tests and the in-process baseline); this file only wires them to BLS calls. Each request
names the detector and pose model versions to call and carries their specs (JSON), so this
model reads nothing but its inputs.

``BOXES`` replaces the detector (video frames between detections). ``TRACKS`` (the video
session's tracks, ``service.core.association``) also estimates, in the same call, the visible
tracks the detector missed. ``TRACK_OWNER`` has one entry per detection (the track it joins,
-1: none) and ``CONTINUED`` one per track estimated without a detection; their boxes follow
the detections in ``PERSON_BOXES``.
"""

import json
from functools import lru_cache

import numpy as np
import triton_python_backend_utils as pb_utils

from service.core.association import associate
from service.core.contract import DETECTOR_OUTPUTS, INPUT, POSE_OUTPUTS
from service.core.fingerprint import check as check_core
from service.core.pipeline import run_topdown
from service.core.specs import spec_from_dict


class PipelineError(Exception):
    pass


@lru_cache(maxsize=64)
def _spec(text, kind):
    try:
        spec = spec_from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"invalid {kind} spec: {exc}") from None
    if spec.kind != kind:
        raise PipelineError(f"a {spec.kind} spec was given for the {kind} model")
    return spec


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        check_core(params.get("core_fingerprint", {}).get("string_value"))

    def execute(self, requests):
        return [self._handle(r) for r in requests]

    def _handle(self, request):
        try:
            return self._run(request)
        except PipelineError as exc:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        except Exception as exc:  # one request's failure, said without a traceback or paths
            pb_utils.Logger.log_error(f"pose pipeline: {exc!r}")
            message = f"the pipeline failed: {type(exc).__name__}"
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))

    def _run(self, request):
        image = _input(request, "IMAGE")
        if image is None or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise PipelineError("IMAGE must be a non-empty HxWx3 uint8 BGR array")
        boxes = _input(request, "BOXES")
        detector = self._model(request, "DETECTOR", "detector", DETECTOR_OUTPUTS)
        if detector is None and boxes is None:
            raise PipelineError("DETECTOR (or BOXES) is required")
        pose = self._model(request, "POSE_MODEL", "pose", POSE_OUTPUTS)
        tracks = _input(request, "TRACKS")
        owner = np.zeros(0, np.int32)
        continued = np.zeros(0, np.int32)
        if tracks is not None and boxes is None:
            # detect first, then add the tracks the detector missed: one pose batch for both
            found = run_topdown(image, detector, None, *_limits(request))
            iou_thr, nms_thr = _input(request, "TRACK_THRESHOLDS").reshape(2).tolist()
            owner, continued = associate(found.boxes, tracks, iou_thr, nms_thr)
            boxes = np.concatenate([found.boxes, tracks[continued, :5]]).astype(np.float32)
            result = run_topdown(image, None, pose, boxes=boxes)
            result.stage_ms += found.stage_ms
        else:
            result = run_topdown(image, detector, pose, *_limits(request), boxes=boxes)
            if boxes is None:  # every box is a detection, and joins no track
                owner = np.full(len(result.boxes), -1, np.int32)
        outputs = [
            pb_utils.Tensor("PERSON_BOXES", np.ascontiguousarray(result.boxes, np.float32)),
            pb_utils.Tensor("KEYPOINTS", np.ascontiguousarray(result.keypoints, np.float32)),
            pb_utils.Tensor("STAGE_MS", result.stage_ms),
            pb_utils.Tensor("TRACK_OWNER", owner.astype(np.int32)),
            pb_utils.Tensor("CONTINUED", continued.astype(np.int32)),
        ]
        return pb_utils.InferenceResponse(output_tensors=outputs)

    def _model(self, request, name, kind, outputs):
        """(spec, run) for the model the request names under ``name``, or None."""
        model = _input(request, name)
        if model is None or model.size == 0:
            return None
        label = model.reshape(-1)[0]
        label = label.decode() if isinstance(label, bytes) else str(label)
        version = _input(request, f"{name}_VERSION")
        version = int(version.reshape(-1)[0]) if version is not None and version.size else -1
        spec_text = _input(request, f"{name}_SPEC")
        if spec_text is None or spec_text.size == 0:
            raise PipelineError(f"{name}_SPEC is required with {name}")
        spec = _spec(bytes(spec_text.reshape(-1)[0]), kind)
        if kind == "pose":
            return spec, lambda x: _infer_batched(label, version, x, outputs, spec.max_batch)
        return spec, lambda x: _infer(label, version, x, outputs)


def _infer_batched(name, version, crops, outputs, max_batch):
    parts = [
        _infer(name, version, crops[i : i + max_batch], outputs)
        for i in range(0, len(crops), max_batch)
    ]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(len(outputs)))


def _infer(name, version, tensor, outputs):
    request = pb_utils.InferenceRequest(
        model_name=name,
        model_version=version,
        requested_output_names=list(outputs),
        inputs=[pb_utils.Tensor(INPUT, np.ascontiguousarray(tensor, np.float32))],
        # outputs as numpy: on a GPU the native backends would leave them in GPU memory,
        # where .as_numpy() fails ("Tensor is stored in GPU", triton-inference-server#3944)
        preferred_memory=pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0),
    )
    response = request.exec()
    if response.has_error():
        raise PipelineError(f"{name} v{version}: {response.error().message()}")
    return tuple(pb_utils.get_output_tensor_by_name(response, o).as_numpy() for o in outputs)


def _input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _scalar(request, name, default):
    value = _input(request, name)
    return default if value is None or value.size == 0 else value.reshape(-1)[0].item()


def _limits(request):
    """(score threshold, max persons) as the request sets them."""
    return _scalar(request, "SCORE_THRESHOLD", 0.0), int(_scalar(request, "MAX_PERSONS", 0))
