"""The TensorRT path as far as it can be checked without a GPU: the plans' Triton configs match
the real ONNX models' inputs and outputs, the engine profiles are the documented ones, and the
GPU benchmark says why it skips instead of failing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from service.core.plans import parse_plan
from service.core.specs import DetectorSpec, PoseSpec
from service.metadata import read_record
from service.repository.configs import TENSORRT_CONFIG_NAME, render_model
from service.repository.install import install_model, sync_configs
from service.settings import Settings
from tests.support.paths import REPO
from tests.support.synthetic import write_synthetic_pose_onnx

ROOT = REPO
ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64"}


def load_script(path: Path):
    """Import a script as running it would: its own folder importable (bench/_report.py)."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


build_engines = load_script(ROOT / "deploy" / "tensorrt" / "build_engines.py")


def test_engine_profiles_are_batch_1_8_64_for_pose_and_1_for_the_detector():
    pose = build_engines.profile_for("pose", (192, 256))
    assert (pose.min, pose.opt, pose.max) == ((1, 3, 256, 192), (8, 3, 256, 192), (64, 3, 256, 192))
    det = build_engines.profile_for("detector", (320, 320))
    assert det.min == det.opt == det.max == (1, 3, 320, 320)
    rtmo = build_engines.profile_for("one-stage", (640, 640), max_batch=8)
    assert (rtmo.min[0], rtmo.opt[0], rtmo.max[0]) == (1, 4, 8) and rtmo.max[1:] == (3, 640, 640)


def test_tensorrt_configs_declare_the_onnx_models_inputs_and_outputs(service, tmp_path):
    """What the engine will expose (TensorRT keeps the ONNX names and I/O types) is what the
    configs/tensorrt.pbtxt rendered once plans exist tells Triton, for the service's models.
    Without plans (as here) that config serves the ONNX instead."""
    checked = 0
    options = Settings().serving_options
    for record_file in sorted(service.repository.glob("*/rtmserve.json")):
        model_dir = record_file.parent
        record = read_record(model_dir)
        rendered = model_dir / "configs" / f"{TENSORRT_CONFIG_NAME}.pbtxt"
        assert text_format.Parse(rendered.read_text(), mc.ModelConfig()).platform == (
            "onnxruntime_onnx"
        )
        plans = {"8.6": "model.sm86-trt10.7.0.plan"}
        files = render_model(record.name, record.parsed_spec, [1], options, plans=plans)
        config_path = tmp_path / f"{record.name}.pbtxt"
        config_path.write_text(files[f"configs/{TENSORRT_CONFIG_NAME}.pbtxt"])
        config = text_format.Parse(config_path.read_text(), mc.ModelConfig())
        assert config.platform == "tensorrt_plan"
        graph = onnx.load(model_dir / str(record.serving_version) / "model.onnx").graph
        batched = config.max_batch_size > 0
        for declared, actual in ((config.input, graph.input), (config.output, graph.output)):
            assert [t.name for t in declared] == [t.name for t in actual]
            for t, a in zip(declared, actual, strict=True):
                assert mc.DataType.Name(t.data_type) == ONNX_TO_TRITON[a.type.tensor_type.elem_type]
                dims = [d.dim_value or -1 for d in a.type.tensor_type.shape.dim]
                dims = dims[1:] if batched else dims
                assert all(c == d or -1 in (c, d) for c, d in zip(t.dims, dims, strict=True))
        declared = build_engines.config_io(config_path)  # what the script checks engines with
        assert set(declared) == {t.name for t in (*config.input, *config.output)}
        checked += 1
    assert checked >= 2  # the detector and the pose model


def test_gpu_benchmark_skips_cleanly_without_a_gpu():
    bench = load_script(ROOT / "bench" / "tensorrt_throughput.py")
    if bench.gpu_unavailable() is None:
        pytest.skip("a GPU with TensorRT is here: run the benchmark itself")
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "tensorrt_throughput.py"), "--repository", "/none"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("skipped: ")


def test_the_gpu_benchmark_takes_input_names_and_batch_limits_from_the_onnx_contract():
    """A batch-1 pose export gets a 1/1/1 profile (not 1-64) and YOLOX's input is ``images``."""
    bench = load_script(ROOT / "bench" / "tensorrt_throughput.py")
    builder = bench._load_builder()
    static = bench.engine_profile(builder, "pose", PoseSpec(max_batch=1))
    assert static.input == "input" and static.min == static.opt == static.max == (1, 3, 256, 192)
    assert bench.batches_for(PoseSpec(max_batch=1)) == [1]
    dynamic = bench.engine_profile(builder, "pose", PoseSpec())
    assert (dynamic.min[0], dynamic.opt[0], dynamic.max[0]) == (1, 8, 64)
    yolox = DetectorSpec(input_size=(416, 416), head="yolox", labels=(15, 16))
    profile = bench.engine_profile(builder, "detector", yolox)
    assert profile.input == "images" and profile.max == (1, 3, 416, 416)


def test_the_engine_builder_names_plans_by_gpu_and_tensorrt_or_says_why_it_cannot(tmp_path):
    key = build_engines.PlanKey("8.6", "10.7.0")
    assert key.filename == "model.sm86-trt10.7.0.plan"
    assert parse_plan(key.filename) == key and parse_plan("model.plan") is None
    run = subprocess.run(
        [sys.executable, str(ROOT / "deploy/tensorrt/build_engines.py"), "--repository",
         str(tmp_path)], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2 and "cannot name the plans" in run.stderr


def plan_repository(tmp_path: Path, *keys) -> Path:
    repo = tmp_path / "repository"
    install_model(repo, "pose", PoseSpec(), write_synthetic_pose_onnx(tmp_path / "p.onnx"),
                  {"trained": True}, Settings().serving_options)  # fmt: skip
    for key in keys:
        (repo / "pose" / "1" / key.filename).write_bytes(b"engine")
    sync_configs(repo, "pose", Settings().serving_options)
    return repo


def start_triton(repo: Path, tmp_path: Path, cc: str, trt: str) -> subprocess.CompletedProcess:
    """deploy/triton/start.py as the Triton image's entrypoint runs it, with this GPU and
    TensorRT given (no GPU here) and a stand-in ``tritonserver`` that prints its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "tritonserver"
    stand_in.write_text('#!/bin/sh\necho "tritonserver ran: $*"\n')
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "RTMSERVE_COMPUTE_CAPABILITY": cc, "RTMSERVE_TENSORRT": trt}  # fmt: skip
    command = ["tritonserver", f"--model-repository={repo}", "--model-config-name=tensorrt"]
    return subprocess.run([sys.executable, str(ROOT / "deploy/triton/start.py"), *command],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip


def test_triton_refuses_plans_built_for_another_gpu_or_tensorrt_with_a_clear_line(tmp_path):
    repo = plan_repository(tmp_path, build_engines.PlanKey("8.0", "10.7.0"))
    other_gpu = start_triton(repo, tmp_path, "8.6", "10.7.0")
    assert other_gpu.returncode == 1 and "tritonserver ran" not in other_gpu.stdout
    assert "pose: no TensorRT plan for this GPU (compute capability 8.6" in other_gpu.stderr
    assert "compute capability 8.0, TensorRT 10.7.0" in other_gpu.stderr  # what there is
    other_trt = start_triton(repo, tmp_path, "8.0", "10.8.0")
    assert other_trt.returncode == 1
    assert "built with TensorRT 10.7.0, this image has 10.8.0" in other_trt.stderr
    fits = start_triton(repo, tmp_path, "8.0", "10.7.0")
    assert fits.returncode == 0, fits.stderr
    assert fits.stdout.startswith("tritonserver ran: --model-repository=")
