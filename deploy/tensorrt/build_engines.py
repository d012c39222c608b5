"""Build TensorRT engines (plans) for the ONNX models of an rtmserve model repository.

    python3 build_engines.py --repository /var/lib/rtmserve/repository [--precision fp16|fp32]
                             [--models rtmpose-m ...] [--force] [--compute-capability 8.6]

Each version folder holding ``model.onnx`` gets a plan beside it named by this GPU's compute
capability and this TensorRT (``model.sm86-trt10.7.0.plan``: ``service.core.plans``), so GPUs
of several kinds can share one models volume and a plan never meets another TensorRT. Triton
serves them with ``--model-config-name=tensorrt``: ``rtmserve prepare`` (the compose ``models``
service, run by every ``docker compose up``) then renders ``configs/tensorrt.pbtxt`` listing,
per compute capability, the plans built with the Triton release's TensorRT for every version,
and the ONNX (as the gpu config) otherwise. Pose
models get one optimisation profile over the batch (1 / 8 / 64: Triton's dynamic batcher merges
crops up to ``max_batch_size`` 64), one-stage models (RTMO) over whole images (1 / 4 / 8);
detectors run at batch 1. Engines are specific to the GPU and
the TensorRT version: build them on the serving machine with the TensorRT of the Triton image
(``nvcr.io/nvidia/tensorrt:24.12-py3`` for Triton 24.12; docker-compose service ``engines``).

Uses the ``tensorrt`` Python API when importable, else ``trtexec``. Standard library otherwise
(it reads ``rtmserve.json`` as plain JSON and imports ``service.core.plans`` from the source
tree it sits in), so it runs in the TensorRT image as it is. After building, each engine's
inputs and outputs are checked against the model's ``config.pbtxt``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the source tree: service.core
from service.core.plans import (
    PlanKey,
    local_compute_capability,
    local_tensorrt,
    tensorrt_release,
)

RECORD_FILE = "rtmserve.json"
POSE_BATCH = (1, 8, 64)  # min / opt / max of the pose model's optimisation profile
WORKSPACE_BYTES = 2 << 30
TRTEXEC_PATHS = ("trtexec", "/usr/src/tensorrt/bin/trtexec")


@dataclass(frozen=True)
class Profile:
    """Input name and its min / opt / max shapes (NCHW)."""

    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def profile_for(
    task: str, input_size: tuple[int, int], input_name: str = "input", max_batch: int = 64
) -> Profile:
    """``input_size`` is (width, height) as in the rtmserve specs; ``max_batch`` 1 is a pose
    export fixed at batch 1."""
    w, h = input_size
    if task == "pose" and max_batch > 1:
        lo, mid, hi = POSE_BATCH
        return Profile(input_name, (lo, 3, h, w), (mid, 3, h, w), (hi, 3, h, w))
    if task == "one-stage" and max_batch > 1:  # whole images, batched up to max_batch_size
        return Profile(input_name, (1, 3, h, w), (max(max_batch // 2, 1), 3, h, w),
                       (max_batch, 3, h, w))  # fmt: skip
    return Profile(input_name, (1, 3, h, w), (1, 3, h, w), (1, 3, h, w))


def build_with_api(onnx: Path, plan: Path, profile: Profile, fp16: bool) -> None:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch; 8.x needs the flag.
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx}:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        if not builder.platform_has_fast_fp16:
            print(f"warning: this GPU has no fast FP16; building {plan} anyway", file=sys.stderr)
        config.set_flag(trt.BuilderFlag.FP16)
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(profile.input, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(optimisation)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx} (see the log above)")
    plan.write_bytes(bytes(serialized))


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def build_with_trtexec(onnx: Path, plan: Path, profile: Profile, fp16: bool) -> None:
    trtexec = next((p for p in map(shutil.which, TRTEXEC_PATHS) if p), None)
    if trtexec is None:
        raise RuntimeError("neither the tensorrt Python module nor trtexec is available")
    command = [
        trtexec,
        f"--onnx={onnx}",
        f"--saveEngine={plan}",
        f"--minShapes={profile.input}:{_shape(profile.min)}",
        f"--optShapes={profile.input}:{_shape(profile.opt)}",
        f"--maxShapes={profile.input}:{_shape(profile.max)}",
        f"--memPoolSize=workspace:{WORKSPACE_BYTES >> 20}M",
        "--skipInference",
        *(["--fp16"] if fp16 else []),
    ]
    subprocess.run(command, check=True)


def build_engine(onnx: Path, plan: Path, profile: Profile, fp16: bool) -> None:
    """Written to a temporary file and renamed: Triton never sees half an engine."""
    with tempfile.TemporaryDirectory(dir=plan.parent) as tmp:
        partial = Path(tmp) / plan.name
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            build_with_trtexec(onnx, partial, profile, fp16)
        else:
            build_with_api(onnx, partial, profile, fp16)
        partial.replace(plan)


def engine_io(plan: Path) -> dict[str, tuple[str, str]]:
    """{tensor name: (INPUT|OUTPUT, numpy dtype name)} of a built engine (Python API only)."""
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    out = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "INPUT" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "OUTPUT"
        out[name] = (mode, trt.nptype(engine.get_tensor_dtype(name)).__name__)
    return out


TRITON_TO_NUMPY = {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_INT64": "int64",
                   "TYPE_INT32": "int32", "TYPE_BOOL": "bool_", "TYPE_UINT8": "uint8"}  # fmt: skip


def config_io(config: Path) -> dict[str, str]:
    """{tensor name: numpy dtype name} declared in a Triton ``config.pbtxt`` (text format)."""
    pairs = re.findall(r'name:\s*"([^"]+)"\s*data_type:\s*(TYPE_\w+)', config.read_text())
    return {name: TRITON_TO_NUMPY.get(dtype, dtype) for name, dtype in pairs}


def check_against_config(plan: Path, config: Path) -> list[str]:
    """Mismatches between the engine and the config Triton will load it with."""
    try:
        engine = engine_io(plan)
    except ImportError:
        return []  # built with trtexec and no Python API to inspect it: Triton will tell
    declared = config_io(config)
    problems = [f"{n}: config declares it, the engine has no such tensor"
                for n in declared if n not in engine]  # fmt: skip
    problems += [
        f"{n}: engine {dtype}, config {declared[n]}"
        for n, (_, dtype) in engine.items()
        if n in declared and declared[n] != dtype
    ]
    return problems


def tensorrt_version() -> str | None:
    """The TensorRT that builds here: the Python API's, else the image's."""
    try:
        import tensorrt
    except ImportError:
        return local_tensorrt()
    return tensorrt_release(tensorrt.__version__)


def version_dirs(model_dir: Path) -> list[Path]:
    return sorted(
        (p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    parser.add_argument("--models", nargs="*", help="only these models (default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild existing engines")
    parser.add_argument(
        "--compute-capability", default=None, help="the GPU's, e.g. 8.6 (default: nvidia-smi)"
    )
    args = parser.parse_args(argv)

    cc, trt = args.compute_capability or local_compute_capability(), tensorrt_version()
    if cc is None or trt is None:
        missing = "the GPU's compute capability (nvidia-smi)" if cc is None else "TensorRT"
        print(f"cannot name the plans: {missing} not found; give --compute-capability or run "
              "this in the TensorRT image on the serving GPU", file=sys.stderr)  # fmt: skip
        return 2
    key = PlanKey(cc, trt)
    print(f"building plans for {key}: {key.filename}", flush=True)
    failures = 0
    for record_path in sorted(args.repository.glob(f"*/{RECORD_FILE}")):
        record = json.loads(record_path.read_text())
        name, task, spec = record["name"], record["task"], record["spec"]
        if task not in ("detector", "pose", "one-stage") or (
            args.models and name not in args.models
        ):
            continue
        input_name = "images" if spec.get("head") == "yolox" else "input"  # Megvii's raw YOLOX
        profile = profile_for(
            task, tuple(spec["input_size"]), input_name, spec.get("max_batch", POSE_BATCH[2])
        )
        # the tensor names and types any config of the model declares (the CPU one is always
        # there; configs/tensorrt.pbtxt names the plan only once every version has one)
        config = record_path.parent / "config.pbtxt"
        for version in version_dirs(record_path.parent):
            onnx, plan = version / "model.onnx", version / key.filename
            if not onnx.exists() or (plan.exists() and not args.force):
                continue
            print(f"{name} v{version.name}: {args.precision}, {profile}", flush=True)
            try:
                build_engine(onnx, plan, profile, args.precision == "fp16")
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                print(f"FAILED {name} v{version.name}: {exc}", file=sys.stderr)
                failures += 1
                continue
            problems = check_against_config(plan, config) if config.exists() else []
            for problem in problems:
                print(f"MISMATCH {name} v{version.name}: {problem}", file=sys.stderr)
            failures += bool(problems)
    if failures:
        print(
            f"{failures} engine(s) failed or do not match the model's config: serve those "
            "models with --model-config-name=gpu (onnxruntime + TensorRT) instead",
            file=sys.stderr,
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
