"""Triton Python-backend model that runs an ONNX file with onnxruntime.

The embedded CPU tritonserver (nvidia-pytriton) ships only the Python backend, so this stands in
for Triton's native onnxruntime backend; GPU deployments use ``configs/gpu.pbtxt`` instead and
never load this file. Requests the dynamic batcher hands over together run as one batch.
"""

import itertools
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from service.core.contract import session


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = session(path, int(params.get("intra_op_threads", "0")))
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        self.batched = config.get("max_batch_size", 0) > 0

    def execute(self, requests):
        feeds = [
            {n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names}
            for r in requests
        ]
        if self.batched and len(feeds) > 1:
            return self._run_batched(feeds)
        return [self._respond(self._run(feed)) for feed in feeds]

    def _run(self, feed):
        try:
            return self.session.run(self.output_names, feed)
        except Exception as exc:  # a bad batch must fail its requests, not the model
            return pb_utils.TritonError(f"onnxruntime: {exc}")

    def _run_batched(self, feeds):
        sizes = [len(next(iter(f.values()))) for f in feeds]
        merged = {n: np.concatenate([f[n] for f in feeds]) for n in self.input_names}
        outputs = self._run(merged)
        if isinstance(outputs, pb_utils.TritonError):
            return [self._respond(outputs) for _ in feeds]
        bounds = np.cumsum([0, *sizes])
        return [self._respond([o[a:b] for o in outputs]) for a, b in itertools.pairwise(bounds)]

    def _respond(self, outputs):
        if isinstance(outputs, pb_utils.TritonError):
            return pb_utils.InferenceResponse(error=outputs)
        tensors = [
            pb_utils.Tensor(n, np.ascontiguousarray(o))
            for n, o in zip(self.output_names, outputs, strict=True)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)
