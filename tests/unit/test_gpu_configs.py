"""The GPU path as rendered here, parsed with Triton's own protobuf (no GPU can run it here):
TensorRT profiles, warm-up and engine cache, the TensorRT config only where plans exist, a
static-batch export, the detector on CUDA, CPU outputs for BLS, and one service.core."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from service.core import fingerprint
from service.core.plans import PlanKey
from service.core.specs import DetectorSpec, PoseSpec
from service.metadata import read_record
from service.repository.configs import render_model, render_pipeline
from service.repository.install import install_model, sync_configs
from service.settings import Settings
from tests.support.paths import REPO, RTMDET_ONNX
from tests.support.synthetic import write_synthetic_pose_onnx

OPTIONS = Settings().serving_options


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def repository_with(tmp_path: Path, *onnx_files: Path) -> Path:
    repo = tmp_path / "repository"
    for f in onnx_files:
        install_model(repo, "pose", PoseSpec(), f, {"trained": True}, OPTIONS)
    return repo


def test_pose_gpu_config_builds_its_tensorrt_engines_at_load_and_keeps_them():
    files = render_model("p", PoseSpec(), [1], OPTIONS, cache_dir="/v/trt-cache/p")
    config = parse(files["configs/gpu.pbtxt"])
    trt = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    assert trt.parameters["trt_profile_min_shapes"] == "input:1x3x256x192"
    assert trt.parameters["trt_profile_opt_shapes"] == "input:8x3x256x192"
    assert trt.parameters["trt_profile_max_shapes"] == "input:64x3x256x192"
    assert trt.parameters["trt_engine_cache_path"] == "/v/trt-cache/p"
    assert [w.batch_size for w in config.model_warmup] == [1, 8, 64]
    sample = config.model_warmup[0].inputs["input"]
    assert sample.zero_data and list(sample.dims) == [3, 256, 192]
    policy = config.dynamic_batching.default_queue_policy
    assert policy.max_queue_size > 0 and policy.timeout_action == mc.ModelQueuePolicy.REJECT


def test_detector_runs_on_cuda_and_warms_up():
    config = parse(render_model("d", DetectorSpec(), [1], OPTIONS)["configs/gpu.pbtxt"])
    assert config.platform == "onnxruntime_onnx" and config.instance_group[0].kind == 1
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    assert [(w.batch_size, list(w.inputs["input"].dims)) for w in config.model_warmup] == [
        (1, [1, 3, 320, 320])
    ]


HERE = PlanKey("8.6", "10.7.0")  # Triton 24.12's TensorRT (the default release)


def test_the_tensorrt_config_names_plans_only_when_every_version_has_one(tmp_path):
    pose = write_synthetic_pose_onnx(tmp_path / "p.onnx")
    repo = repository_with(tmp_path, pose)
    tensorrt = repo / "pose" / "configs" / "tensorrt.pbtxt"
    assert parse(tensorrt.read_text()).platform == "onnxruntime_onnx"  # the ONNX, as gpu
    (repo / "pose" / "1" / HERE.filename).write_bytes(b"engine")
    sync_configs(repo, "pose", OPTIONS)
    assert parse(tensorrt.read_text()).platform == "tensorrt_plan"
    install_model(repo, "pose", PoseSpec(), pose, {"trained": True}, OPTIONS)  # v2, no plan
    assert sorted(parse(tensorrt.read_text()).version_policy.specific.versions) == [1, 2]
    assert parse(tensorrt.read_text()).platform == "onnxruntime_onnx"


def test_plans_are_keyed_by_gpu_and_tensorrt_and_only_fitting_ones_are_listed(tmp_path):
    """Triton picks the plan of its GPU's compute capability; a GPU with none finds no file
    (never another GPU's engine); a plan built by another TensorRT is never listed."""
    repo = repository_with(tmp_path, write_synthetic_pose_onnx(tmp_path / "p.onnx"))
    version = repo / "pose" / "1"
    for key in (HERE, PlanKey("8.0", "10.7.0"), PlanKey("8.9", "10.3.0")):
        (version / key.filename).write_bytes(b"engine")
    sync_configs(repo, "pose", OPTIONS)
    config = parse((repo / "pose" / "configs" / "tensorrt.pbtxt").read_text())
    assert config.platform == "tensorrt_plan"
    assert dict(config.cc_model_filenames) == {
        "8.0": "model.sm80-trt10.7.0.plan",
        "8.6": "model.sm86-trt10.7.0.plan",
    }
    assert not (version / config.default_model_filename).exists()
    older = Settings(triton_release="24.08").serving_options  # TensorRT 10.3.0
    sync_configs(repo, "pose", older)
    config = parse((repo / "pose" / "configs" / "tensorrt.pbtxt").read_text())
    assert dict(config.cc_model_filenames) == {"8.9": "model.sm89-trt10.3.0.plan"}
    with pytest.raises(ValueError, match="unknown NGC release"):
        Settings(triton_release="19.01")


def named_paths(model_dir: Path, config: mc.ModelConfig) -> list[Path]:
    """Every file or folder a Triton config names: engine caches, plans, warm-up files."""
    paths = []
    for accelerator in config.optimization.execution_accelerators.gpu_execution_accelerator:
        if "trt_engine_cache_path" in accelerator.parameters:
            paths.append(Path(accelerator.parameters["trt_engine_cache_path"]))
    versions = list(config.version_policy.specific.versions)
    if config.platform == "tensorrt_plan":
        plans = set(config.cc_model_filenames.values())
        paths += [model_dir / str(v) / plan for v in versions for plan in plans]
    for sample in config.model_warmup:
        for data in sample.inputs.values():
            if data.input_data_file:
                paths.append(model_dir / "warmup" / data.input_data_file)
    return paths


def assert_named_paths_exist_and_are_writable(repo: Path) -> int:
    checked = 0
    for model_dir in sorted(p for p in repo.iterdir() if p.is_dir()):
        for rel in ("config.pbtxt", "configs/gpu.pbtxt", "configs/tensorrt.pbtxt"):
            if not (model_dir / rel).exists():
                continue
            for path in named_paths(model_dir, parse((model_dir / rel).read_text())):
                assert path.exists(), f"{model_dir.name} {rel} names {path}, which is missing"
                assert os.access(path, os.W_OK), f"{path} is not writable"
                checked += 1
    return checked


def test_every_path_a_gpu_config_names_exists_and_is_writable(tmp_path):
    repo = tmp_path / "repository"
    install_model(repo, "det", DetectorSpec(), RTMDET_ONNX, {"trained": True}, OPTIONS)
    install_model(repo, "pose", PoseSpec(), write_synthetic_pose_onnx(tmp_path / "p.onnx"),
                  {"trained": True}, OPTIONS)  # fmt: skip
    (repo / "pose" / "1" / HERE.filename).write_bytes(b"engine")  # the tensorrt variant
    sync_configs(repo, "pose", OPTIONS)
    assert parse((repo / "pose/configs/tensorrt.pbtxt").read_text()).platform == "tensorrt_plan"
    assert assert_named_paths_exist_and_are_writable(repo) == 2  # the pose cache, the plan


def test_a_static_batch_export_is_served_one_crop_at_a_time(tmp_path):
    static = write_synthetic_pose_onnx(tmp_path / "s.onnx", dynamic_batch=False)
    repo = repository_with(tmp_path, static)
    record = read_record(repo / "pose")
    assert record.parsed_spec.max_batch == 1
    for rel in ("config.pbtxt", "configs/gpu.pbtxt", "configs/tensorrt.pbtxt"):
        config = parse((repo / "pose" / rel).read_text())
        assert config.max_batch_size == 0, rel
        assert list(config.input[0].dims) == [1, 3, 256, 192], rel
        assert list(config.output[0].dims) == [1, 17, 384], rel
        assert not config.HasField("dynamic_batching"), rel
    dynamic = write_synthetic_pose_onnx(tmp_path / "d.onnx")
    assert (
        read_record(repository_with(tmp_path / "b", dynamic) / "pose").parsed_spec.max_batch == 64
    )


def test_a_pose_export_fixed_at_another_batch_is_refused(tmp_path):
    import onnx

    path = write_synthetic_pose_onnx(tmp_path / "s.onnx", dynamic_batch=False)
    model = onnx.load(path)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 8
    onnx.save(model, path)
    with pytest.raises(ValueError, match="fixed batch of 8"):
        repository_with(tmp_path, path)


def test_the_pipeline_asks_for_its_bls_outputs_in_cpu_memory():
    """On a GPU the native backends would answer in GPU memory, where .as_numpy() fails."""
    tree = ast.parse((REPO / "model_repository" / "pipeline" / "model.py").read_text())
    requests = [
        n for n in ast.walk(tree)
        if isinstance(n, ast.Call) and ast.unparse(n.func) == "pb_utils.InferenceRequest"
    ]  # fmt: skip
    assert requests
    for call in requests:
        kwargs = {k.arg: ast.unparse(k.value) for k in call.keywords}
        assert kwargs.get("preferred_memory") == (
            "pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)"
        )


def test_the_pipeline_refuses_a_service_core_other_than_the_one_that_rendered_it():
    config = parse(render_pipeline(OPTIONS)["config.pbtxt"])
    expected = config.parameters["core_fingerprint"].string_value
    assert expected == fingerprint.fingerprint()
    fingerprint.check(expected)
    fingerprint.check(None)  # an older repository: nothing to compare
    with pytest.raises(RuntimeError, match="docker compose up --build"):
        fingerprint.check("0" * 16)
    assert json.dumps(expected)  # a plain string in the config


def test_rendered_gpu_configs_of_the_real_detector_parse(tmp_path):
    repo = tmp_path / "repository"
    install_model(repo, "det", DetectorSpec(), RTMDET_ONNX, {"trained": True}, OPTIONS)
    for rel in ("config.pbtxt", "configs/gpu.pbtxt", "configs/tensorrt.pbtxt"):
        assert parse((repo / "det" / rel).read_text()).name == "det"


def test_only_the_cpu_pipeline_runs_the_onnx_files_itself():
    """On a GPU the pipeline calls the native models (their batcher merges crops of concurrent
    requests); on the CPU server it runs the files in-process unless told otherwise."""
    local = {
        rel: parse(text).parameters["local_models"].string_value
        for rel, text in render_pipeline(OPTIONS).items()
    }
    assert local == {
        "config.pbtxt": "true",
        "configs/gpu.pbtxt": "false",
        "configs/tensorrt.pbtxt": "false",
    }
    bls = Settings(cpu_local_models=False).serving_options
    config = parse(render_pipeline(bls)["config.pbtxt"])
    assert config.parameters["local_models"].string_value == "false"


def test_a_yolox_detector_gets_megvii_tensor_names_on_every_config():
    spec = DetectorSpec(input_size=(416, 416), head="yolox", labels=(15, 16))
    files = render_model("animals", spec, [1], OPTIONS)
    for rel, text in files.items():
        config = parse(text)
        assert [i.name for i in config.input] == ["images"], rel
        assert list(config.input[0].dims) == [1, 3, 416, 416]
        assert [o.name for o in config.output] == ["output"], rel
    gpu = parse(files["configs/gpu.pbtxt"])
    assert [list(w.inputs["images"].dims) for w in gpu.model_warmup] == [[1, 3, 416, 416]]
