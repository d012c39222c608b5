"""ONNX export of RTMPose: contract, numerical parity, dynamic batch, mmdeploy SDK loading."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.support.paths import POSE_SDK_METADATA
from training.export import MAX_IR_VERSION, MAX_OPSET, ExportReport, export_onnx, main
from training.models import build_rtmpose, seeded_rtmpose
from training.models.rtmpose import RTMPose

SDK_METADATA = POSE_SDK_METADATA


@pytest.fixture(scope="module")
def exported_m(tmp_path_factory: pytest.TempPathFactory) -> tuple[RTMPose, Path, ExportReport]:
    torch.set_num_threads(2)
    model = seeded_rtmpose("m", 0)
    path = tmp_path_factory.mktemp("onnx") / "rtmpose-m.onnx"
    report = export_onnx(model, path, (192, 256))
    return model, path, report


@pytest.fixture(scope="module")
def session_m(exported_m: tuple[RTMPose, Path, ExportReport]) -> ort.InferenceSession:
    return ort.InferenceSession(str(exported_m[1]), providers=["CPUExecutionProvider"])


def test_report_and_graph_contract(exported_m: tuple[RTMPose, Path, ExportReport]) -> None:
    _, path, report = exported_m
    assert report.max_abs_diff < 1e-4 and report.parity_batch == 2
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version <= MAX_IR_VERSION == 8
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", report.opset)]
    assert report.opset <= MAX_OPSET == 17
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["simcc_x", "simcc_y"]
    assert report.input_shape == ("batch", 3, 256, 192)
    assert report.output_shapes == {"simcc_x": ("batch", 17, 384), "simcc_y": ("batch", 17, 512)}
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not any(i.name == "input" for i in proto.graph.initializer)
    assert report.num_nodes < 400  # BN folded, no shape-computation sprawl
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_parity_dynamic_batch(
    exported_m: tuple[RTMPose, Path, ExportReport], session_m: ort.InferenceSession, batch: int
) -> None:
    model = exported_m[0]
    x = torch.randn(batch, 3, 256, 192, generator=torch.Generator().manual_seed(batch))
    got = session_m.run(["simcc_x", "simcc_y"], {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    for e, g in zip(expected, got, strict=True):
        assert g.shape == tuple(e.shape)
        np.testing.assert_allclose(g, e.numpy(), rtol=0, atol=1e-4)


_SDK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from mmdeploy_runtime import PoseDetector
    det = PoseDetector(model_path=sys.argv[1], device_name="cpu", device_id=0)
    img = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = det(img, np.array([[100, 50, 300, 450]], np.float32))
    print(json.dumps({"shape": list(out.shape), "finite": bool(np.isfinite(out).all()),
                      "xy": out[0, :, :2].tolist()}))
    """
)


@pytest.mark.skipif(
    importlib.util.find_spec("mmdeploy_runtime") is None, reason="mmdeploy_runtime missing"
)
@pytest.mark.skipif(not SDK_METADATA.is_dir(), reason="SDK metadata folder missing")
def test_loads_in_mmdeploy_runtime_pose_detector(
    exported_m: tuple[RTMPose, Path, ExportReport], tmp_path: Path
) -> None:
    """The SDK bundles onnxruntime 1.15.1. It runs in a child process because the SDK does
    not raise on a model its ORT rejects: it logs, returns a detector, then segfaults."""
    _, path, _ = exported_m
    for name in ("deploy.json", "detail.json", "pipeline.json"):
        shutil.copy(SDK_METADATA / name, tmp_path / name)
    shutil.copy(path, tmp_path / "end2end.onnx")
    proc = subprocess.run(
        [sys.executable, "-c", _SDK_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [1, 17, 3]
    assert result["finite"]
    xy = np.array(result["xy"])  # decoded into image coordinates around the (padded) box
    assert (xy[:, 0] > -100).all() and (xy[:, 0] < 400).all()
    assert (xy[:, 1] > -100).all() and (xy[:, 1] < 600).all()


def test_opset_above_runtime_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opset"):
        export_onnx(build_rtmpose("t"), tmp_path / "x.onnx", opset=18)


def test_cli_seeded_and_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seeded.onnx"
    assert main(["--variant", "t", "--seed", "0", "--output", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_diff"] < 1e-4 and out.exists()
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["variant"] == "rtmpose-t" and props["seed"] == "0"

    ckpt = tmp_path / "rtmpose-t_288x384.pth"
    model = seeded_rtmpose("t", 5, input_size=(288, 384))
    torch.save({"state_dict": model.state_dict(), "meta": {"epoch": 420}}, ckpt)
    out2 = tmp_path / "ckpt.onnx"
    assert main(["--checkpoint", str(ckpt), "--output", str(out2)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["output_shapes"] == {"simcc_x": ["batch", 17, 576], "simcc_y": ["batch", 17, 768]}
    x = np.random.default_rng(0).standard_normal((1, 3, 384, 288)).astype(np.float32)
    got = ort.InferenceSession(str(out2), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )
    with torch.no_grad():
        expected = model(torch.from_numpy(x))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e.numpy(), rtol=0, atol=1e-4)
