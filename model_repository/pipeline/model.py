"""Detector -> crops -> pose -> keypoints in image coordinates, inside Triton.

The flow and every pre/post-processing step are ``service.core`` (shared with the gateway,
the tests and the in-process baseline); this file only wires them to where the networks run.
Each request names the detector and pose model versions to call and carries their specs
(JSON), so this model reads nothing but its inputs and, in local mode, the ONNX files.

Where the networks run (config parameter ``local_models``): on the GPU, the detector and pose
models are Triton models of their own, called through BLS, so crops of concurrent requests
meet in the pose model's dynamic batcher. On the embedded CPU server (Python backend only),
every such model is a process of its own and each BLS call crosses two processes with copies
through shared memory, for no batching gain (on a CPU a crop costs the same in a batch of 1
or 16): there this model runs the versions' ONNX files itself with onnxruntime.

``IMAGE`` (pixels) or ``IMAGE_ENCODED`` (the file, decoded here: a fifth of the bytes).
``BOXES`` replaces the detector (video frames between detections). ``TRACKS`` (the video
session's tracks, ``service.core.association``) also estimates, in the same call, the visible
tracks the detector missed. ``TRACK_OWNER`` has one entry per detection (the track it joins,
-1: none) and ``CONTINUED`` one per track estimated without a detection; their boxes follow
the detections in ``PERSON_BOXES``.
"""

import json
import os
import time
from collections import OrderedDict
from functools import lru_cache

import numpy as np
import triton_python_backend_utils as pb_utils

from service.core.association import associate
from service.core.contract import io_names, session
from service.core.fingerprint import check as check_core
from service.core.image import CorruptImage, decode
from service.core.names import RULE, is_model_name
from service.core.pipeline import run_onestage, run_topdown
from service.core.specs import spec_from_dict

LOCAL_SESSIONS = 6  # ONNX sessions kept per instance (serving + previous versions of a few)


class PipelineError(Exception):
    pass


@lru_cache(maxsize=64)
def _spec(text, kinds):
    try:
        spec = spec_from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"invalid {kinds[0]} spec: {exc}") from None
    if spec.kind not in kinds:
        raise PipelineError(f"a {spec.kind} spec was given for the {kinds[0]} model")
    return spec


class TritonPythonModel:
    def initialize(self, args):
        params = {
            k: v["string_value"]
            for k, v in json.loads(args["model_config"]).get("parameters", {}).items()
        }
        check_core(params.get("core_fingerprint"))
        if int(params.get("nice", "0")):  # the trial copy pipeline: clients' requests first
            os.nice(int(params["nice"]))
        self.local = params.get("local_models", "false") == "true"
        self.threads = {
            "detector": int(params.get("detector_threads", "1")),
            "pose": int(params.get("pose_threads", "0")),
        }
        self.repository = os.path.dirname(os.path.normpath(args["model_repository"]))
        self.sessions = OrderedDict()

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

    def _image(self, request):
        encoded = _input(request, "IMAGE_ENCODED")
        if encoded is not None and encoded.size:
            try:
                return decode(bytes(encoded.reshape(-1)[0]))
            except CorruptImage as exc:
                raise PipelineError(f"invalid image: {exc}") from None
        image = _input(request, "IMAGE")
        if image is None or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise PipelineError("IMAGE must be a non-empty HxWx3 uint8 BGR array")
        return image

    def _run(self, request):
        start = time.perf_counter()
        image = self._image(request)
        decode_ms = (time.perf_counter() - start) * 1e3
        boxes = _input(request, "BOXES")
        pose = self._model(request, "POSE_MODEL", ("pose", "one-stage"))
        tracks = _input(request, "TRACKS")
        owner = np.zeros(0, np.int32)
        continued = np.zeros(0, np.int32)
        if pose is not None and pose[0].kind == "one-stage":
            if boxes is not None:
                raise PipelineError("a one-stage model finds the people itself: no BOXES")
            result = run_onestage(image, pose, *_limits(request))
            owner = np.full(len(result.boxes), -1, np.int32)
            if tracks is not None:  # it sees every person it can: no track to continue
                iou_thr, nms_thr = _input(request, "TRACK_THRESHOLDS").reshape(2).tolist()
                owner, _ = associate(result.boxes, tracks, iou_thr, nms_thr)
            return self._response(result, owner, continued, decode_ms)
        detector = self._model(request, "DETECTOR", ("detector",))
        if detector is None and boxes is None:
            raise PipelineError("DETECTOR (or BOXES) is required")
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
        return self._response(result, owner, continued, decode_ms)

    def _response(self, result, owner, continued, decode_ms):
        result.stage_ms[0] += decode_ms  # preprocessing starts with decoding the file
        outputs = [
            pb_utils.Tensor("PERSON_BOXES", np.ascontiguousarray(result.boxes, np.float32)),
            pb_utils.Tensor("KEYPOINTS", np.ascontiguousarray(result.keypoints, np.float32)),
            pb_utils.Tensor("STAGE_MS", result.stage_ms),
            pb_utils.Tensor("TRACK_OWNER", owner.astype(np.int32)),
            pb_utils.Tensor("CONTINUED", continued.astype(np.int32)),
        ]
        return pb_utils.InferenceResponse(output_tensors=outputs)

    def _model(self, request, name, kinds):
        """(spec, run) for the model the request names under ``name``, or None."""
        model = _input(request, name)
        if model is None or model.size == 0:
            return None
        label = model.reshape(-1)[0]
        label = label.decode(errors="replace") if isinstance(label, bytes) else str(label)
        if not is_model_name(label):  # a file path is built from it: never a path
            raise PipelineError(f"{name} {label[:200]!r} is not a model name ({RULE})")
        version = _input(request, f"{name}_VERSION")
        version = int(version.reshape(-1)[0]) if version is not None and version.size else -1
        spec_text = _input(request, f"{name}_SPEC")
        if spec_text is None or spec_text.size == 0:
            raise PipelineError(f"{name}_SPEC is required with {name}")
        spec = _spec(bytes(spec_text.reshape(-1)[0]), kinds)
        kind, (input_name, outputs) = spec.kind, io_names(spec)
        if self.local:
            run = self._local(label, version, kind, outputs, input_name)
        else:
            run = lambda x: _infer(label, version, x, outputs, input_name)  # noqa: E731
        if kind == "pose":
            return spec, lambda x: _batched(run, x, spec.max_batch, len(outputs))
        return spec, run

    def _local(self, name, version, kind, outputs, input_name):
        """An onnxruntime session on the version's ONNX file, kept for the next requests."""
        if version < 1:
            raise PipelineError(f"{name}: a version number is required")
        key = (name, version)
        if key not in self.sessions:
            path = os.path.join(self.repository, name, str(version), "model.onnx")
            if not os.path.isfile(path):
                raise PipelineError(f"{name} v{version} is not in the model repository")
            self.sessions[key] = session(path, self.threads.get(kind, 0))
            while len(self.sessions) > LOCAL_SESSIONS:
                self.sessions.popitem(last=False)
        self.sessions.move_to_end(key)
        sess = self.sessions[key]
        names = [o.name for o in sess.get_outputs()]
        if not set(outputs) <= set(names):  # read by position (service.core.contract)
            outputs = names[: len(outputs)]
        return lambda x: tuple(sess.run(list(outputs), {input_name: np.ascontiguousarray(x)}))


def _batched(run, crops, max_batch, n_outputs):
    parts = [run(crops[i : i + max_batch]) for i in range(0, len(crops), max_batch)]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(n_outputs))


def _infer(name, version, tensor, outputs, input_name):
    request = pb_utils.InferenceRequest(
        model_name=name,
        model_version=version,
        requested_output_names=list(outputs),
        inputs=[pb_utils.Tensor(input_name, np.ascontiguousarray(tensor, np.float32))],
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
