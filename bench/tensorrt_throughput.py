"""TensorRT on a GPU: pose crops/s and end-to-end images/s, FP32 vs FP16, and how closely the
engines' keypoints agree with the same ONNX models run by onnxruntime (CPU, the reference).

    python bench/tensorrt_throughput.py --repository ~/.cache/rtmserve/repository [--images DIR]

Engines are built here from the repository's serving ONNX files with the same code and profiles
as deploy/tensorrt/build_engines.py (pose batch 1 / 8 / 64, detector batch 1). Needs a CUDA GPU,
the ``tensorrt`` Python package and a CUDA build of torch (device buffers); without them it says
why and exits 0 (nothing is measured), so it is safe to run anywhere. Writes
bench/results/tensorrt.json. (Not named tensorrt.py: run as a script, that name would shadow
the ``tensorrt`` package it imports.)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _report import write_report

from service.core.contract import io_names
from service.core.local import LocalPipeline
from service.core.pipeline import TopDownResult, run_topdown
from service.core.specs import DetectorSpec, ModelSpec, PoseSpec
from service.metadata import read_record

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RTMSERVE_SHARED", ROOT.parent / "shared"))
BATCHES = (1, 8, 32, 64)


def _load_builder():
    """deploy/tensorrt/build_engines.py, imported by path (it is a script, not a package)."""
    path = ROOT / "deploy" / "tensorrt" / "build_engines.py"
    spec = importlib.util.spec_from_file_location("build_engines", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def gpu_unavailable() -> str | None:
    """Why this benchmark cannot run here, or None."""
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError as exc:
        return f"needs the tensorrt and torch packages ({exc.name} is missing)"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch"
    return None


class Engine:
    """One TensorRT engine with an execution context; inputs and outputs are numpy arrays.
    Outputs of data-dependent size (the detector's NMS) go through an output allocator."""

    def __init__(self, plan: Path) -> None:
        import tensorrt as trt
        import torch

        self.trt, self.torch = trt, torch
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(plan.read_bytes())
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = [n for n in names if is_input[n]]
        self.outputs = [n for n in names if not is_input[n]]
        self.dtypes = {n: trt.nptype(self.engine.get_tensor_dtype(n)) for n in names}
        self.allocator = _output_allocator(trt, torch)
        for name in self.outputs:
            self.context.set_output_allocator(name, self.allocator)

    def __call__(self, **feeds: np.ndarray) -> list[np.ndarray]:
        torch = self.torch
        keep = []  # the device inputs must outlive the execution
        with torch.cuda.stream(self.stream):  # copies and execution in one stream, in order
            for name in self.inputs:
                array = np.ascontiguousarray(feeds[name], self.dtypes[name])
                tensor = torch.from_numpy(array).cuda()
                keep.append(tensor)
                self.context.set_input_shape(name, tuple(array.shape))
                self.context.set_tensor_address(name, tensor.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
        self.stream.synchronize()
        return [self.allocator.read(name, self.dtypes[name]) for name in self.outputs]


def _output_allocator(trt, torch):
    class OutputAllocator(trt.IOutputAllocator):
        """Device buffers that grow on demand; records each output's final shape."""

        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, torch.Tensor] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, tensor_name, memory, size, alignment):
            buffer = self.buffers.get(tensor_name)
            if buffer is None or buffer.numel() < size:
                buffer = torch.empty(max(int(size), 1), dtype=torch.uint8, device="cuda")
                self.buffers[tensor_name] = buffer
            return buffer.data_ptr()

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(shape)

        def read(self, name: str, dtype) -> np.ndarray:
            shape = self.shapes[name]
            count = int(np.prod(shape)) * np.dtype(dtype).itemsize
            raw = self.buffers[name][:count].cpu().numpy()
            return raw.view(dtype).reshape(shape)

    return OutputAllocator()


def max_batch(spec: ModelSpec) -> int:
    """What the engine's profile spans: a detector and a batch-1 export take one at a time."""
    return 1 if isinstance(spec, DetectorSpec) else spec.max_batch


def engine_profile(builder, task: str, spec: ModelSpec):
    """The profile build_engines.py builds for this model: the input name (``images`` for
    Megvii's YOLOX) and the batch limits from the ONNX contract, not assumed."""
    input_name, _ = io_names(spec)
    return builder.profile_for(task, spec.input_size, input_name, max_batch(spec))


def batches_for(spec: PoseSpec) -> list[int]:
    return [b for b in BATCHES if b <= max_batch(spec)]


class TrtPipeline:
    """The service's flow (``service.core.pipeline``) with TensorRT engines for the networks."""

    def __init__(self, detector: tuple[Engine, DetectorSpec], pose: tuple[Engine, PoseSpec]):
        (self.det, self.det_spec), (self.pose, self.pose_spec) = detector, pose
        self.det_input, self.pose_input = io_names(self.det_spec)[0], io_names(self.pose_spec)[0]
        self.chunk = max_batch(self.pose_spec)

    def _detect(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self.det(**{self.det_input: x}))

    def _estimate(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        step = self.chunk
        parts = [self.pose(**{self.pose_input: crops[i : i + step]})
                 for i in range(0, len(crops), step)]  # fmt: skip
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def __call__(self, image: np.ndarray) -> TopDownResult:
        return run_topdown(
            image, (self.det_spec, self._detect), (self.pose_spec, self._estimate), 0.3, 100
        )


def crops_per_s(engine: Engine, spec: PoseSpec, batch: int, seconds: float) -> float:
    w, h = spec.input_size
    crops = np.random.default_rng(0).standard_normal((batch, 3, h, w), np.float32)
    feed = {io_names(spec)[0]: crops}
    engine(**feed)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine(**feed)
        done += batch
    return done / (time.perf_counter() - start)


def agreement(reference: list[TopDownResult], results: list[TopDownResult]) -> dict:
    """Keypoints of persons whose boxes match (IoU >= 0.9): share within 1 px, mean error."""
    errors, persons, unmatched = [], 0, 0
    for ref, got in zip(reference, results, strict=True):
        for box, kpts in zip(ref.boxes, ref.keypoints, strict=True):
            ious = [_iou(box, b) for b in got.boxes]
            if not ious or max(ious) < 0.9:
                unmatched += 1
                continue
            persons += 1
            other = got.keypoints[int(np.argmax(ious))]
            errors.extend(np.linalg.norm(kpts[:, :2] - other[:, :2], axis=1))
    errors_np = np.array(errors)
    return {
        "persons_compared": persons,
        "persons_unmatched": unmatched,
        "keypoints_within_1px": float(np.mean(errors_np <= 1.0)) if len(errors) else None,
        "mean_error_px": float(errors_np.mean()) if len(errors) else None,
    }


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def images_per_s(pipeline, images: list[np.ndarray]) -> tuple[float, list[TopDownResult]]:
    pipeline(images[0])  # warm-up
    start = time.perf_counter()
    results = [pipeline(image) for image in images]
    return len(images) / (time.perf_counter() - start), results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--detector", default="rtmdet-nano")
    parser.add_argument("--pose-model", default="rtmpose-m")
    parser.add_argument(
        "--images", type=Path, default=SHARED / "data" / "coco_val_subset" / "images"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per crops/s measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tensorrt.json")
    args = parser.parse_args()

    reason = gpu_unavailable()
    if reason is not None:
        print(f"skipped: {reason}")
        return 0
    import tensorrt as trt
    import torch

    builder = _load_builder()

    def serving(name: str) -> tuple[Path, DetectorSpec | PoseSpec, str]:
        record = read_record(args.repository / name)
        onnx = args.repository / name / str(record.serving_version) / "model.onnx"
        return onnx, record.parsed_spec, record.task

    det_onnx, det_spec, _ = serving(args.detector)
    pose_onnx, pose_spec, _ = serving(args.pose_model)
    images = [cv2.imread(str(p)) for p in sorted(args.images.glob("*.jpg"))]
    reference_pipeline = LocalPipeline((det_onnx, det_spec), (pose_onnx, pose_spec))
    reference = [reference_pipeline(image) for image in images]

    report: dict = {"precisions": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "fp16"):
            plans = {}
            for name, onnx, spec, task in (
                ("detector", det_onnx, det_spec, "detector"),
                ("pose", pose_onnx, pose_spec, "pose"),
            ):
                plans[name] = Path(tmp) / f"{name}-{precision}.plan"
                profile = engine_profile(builder, task, spec)
                builder.build_engine(onnx, plans[name], profile, precision == "fp16")
            pose_engine = Engine(plans["pose"])
            pipeline = TrtPipeline((Engine(plans["detector"]), det_spec), (pose_engine, pose_spec))
            rate, results = images_per_s(pipeline, images)
            report["precisions"][precision] = {
                "crops_per_s": {
                    b: round(crops_per_s(pose_engine, pose_spec, b, args.seconds), 1)
                    for b in batches_for(pose_spec)
                },
                "images_per_s": round(rate, 2),
                "persons_per_image": statistics.mean(len(r.boxes) for r in results),
                "agreement_with_onnxruntime": agreement(reference, results),
            }
            print(precision, json.dumps(report["precisions"][precision]), flush=True)
    write_report(
        args.out, "tensorrt_throughput", gpu=torch.cuda.get_device_name(),
        tensorrt=trt.__version__, images=len(images), **report,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
