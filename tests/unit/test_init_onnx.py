"""training.import_onnx: a whole RTMPose rebuilt from its ONNX, head included.

Round trips (export -> import -> export) on real person crops for seeded RTMPose-t and -m
and the shipped rtmserve-pose-n, one of them in the shape of an mmdeploy end2end.onnx (opset
11, weights as Constant nodes); refusals of a wrong variant, a detector and tampered heads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from service.core.contract import session
from tests.support.paths import COCO_VAL, REPO, RTMDET_ONNX
from training.dataset import load_instances
from training.export import export_onnx
from training.import_onnx import (
    MAX_IMPORT_DIFF,
    NotAPoseExportError,
    import_pose_export,
    inspect_pose_export,
    is_pose_export,
)
from training.models.rtmpose import seeded_rtmpose
from training.train import calibration_crops

SHIPPED = REPO / "models" / "rtmserve-pose-n" / "model.onnx"
SIZE = (192, 256)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def instances():
    return load_instances(COCO_VAL)


def _crops(instances, size: tuple[int, int]) -> torch.Tensor:
    return calibration_crops(instances, size, 8)


def _run(path: Path, crops: torch.Tensor) -> list[np.ndarray]:
    return session(path, 1, quiet=True).run(["simcc_x", "simcc_y"], {"input": crops.numpy()})


def _constants_as_nodes(src: Path, dst: Path) -> None:
    """Every initializer turned into a Constant node (as some exporters write weights), and
    the GAU's ``gamma[None, None]`` left unfolded: an Unsqueeze of the (2, s) parameter."""
    proto = onnx.load(str(src))
    nodes = []
    for init in proto.graph.initializer:
        value = numpy_helper.to_array(init)
        if value.ndim == 4 and value.shape[:2] == (1, 1):  # gamma
            raw = numpy_helper.from_array(value[0, 0], init.name + "_raw")
            nodes.append(helper.make_node("Constant", [], [raw.name], value=raw))
            nodes.append(helper.make_node("Unsqueeze", [raw.name], [init.name], axes=[0, 1]))
        else:
            nodes.append(helper.make_node("Constant", [], [init.name], value=init))
    assert any(n.op_type == "Unsqueeze" for n in nodes)
    rest = list(proto.graph.node)
    del proto.graph.initializer[:], proto.graph.node[:]
    proto.graph.node.extend(nodes + rest)
    onnx.save(proto, str(dst))


def _seeded(variant: str, tmp_path: Path, opset: int = 17) -> Path:
    path = tmp_path / f"{variant}.onnx"
    export_onnx(seeded_rtmpose(variant, 0, SIZE), path, opset=opset)
    return path


def _round_trip(path: Path, crops: torch.Tensor, tmp_path: Path) -> float:
    model, summary = import_pose_export(path, crops)  # build arguments from the file alone
    assert summary["max_abs_diff_vs_onnxruntime"] <= MAX_IMPORT_DIFF
    again = tmp_path / "again.onnx"
    export_onnx(model, again)
    diff = max(
        float(np.abs(a - b).max())
        for a, b in zip(_run(path, crops), _run(again, crops), strict=True)
    )
    print(f"\n{path.name}: {summary['variant']} {summary['input_size']}, re-export diff {diff:.2e}")
    return diff


@pytest.mark.parametrize("variant", ["t", "m"])
def test_seeded_export_round_trips(variant: str, instances, tmp_path: Path) -> None:
    path = _seeded(variant, tmp_path)
    assert inspect_pose_export(path).variant == variant
    assert _round_trip(path, _crops(instances, SIZE), tmp_path) <= 1e-4


def test_mmdeploy_shaped_export_round_trips(instances, tmp_path: Path) -> None:
    """Opset 11 (mmdeploy's body7 setting: Unsqueeze axes as attributes) with every weight
    in a Constant node instead of an initializer."""
    path = tmp_path / "end2end.onnx"
    _constants_as_nodes(_seeded("t", tmp_path, opset=11), path)
    assert not onnx.load(str(path)).graph.initializer
    assert _round_trip(path, _crops(instances, SIZE), tmp_path) <= 1e-4


def test_shipped_model_round_trips(instances, tmp_path: Path) -> None:
    export = inspect_pose_export(SHIPPED)
    assert (export.variant, export.input_size, export.num_keypoints) == ("n", (96, 128), 17)
    assert _round_trip(SHIPPED, _crops(instances, (96, 128)), tmp_path) <= 1e-4


def test_a_wrong_variant_or_input_size_is_refused(instances) -> None:
    crops = _crops(instances, (96, 128))
    with pytest.raises(ValueError, match=r"--variant t given, but .* is RTMPose-n"):
        import_pose_export(SHIPPED, crops, variant="t")
    with pytest.raises(ValueError, match=r"--input-size 192 256 given, but .* takes 96x128"):
        import_pose_export(SHIPPED, crops, input_size=(192, 256))


def test_a_detector_is_not_a_whole_pose_model(instances) -> None:
    assert not is_pose_export(RTMDET_ONNX) and is_pose_export(SHIPPED)
    with pytest.raises(NotAPoseExportError, match="not RTMPose's two SimCC classifiers"):
        import_pose_export(RTMDET_ONNX, _crops(instances, (96, 128)))


def _tampered(tmp_path: Path, change) -> Path:
    proto = onnx.load(str(SHIPPED))
    change(proto)
    path = tmp_path / "tampered.onnx"
    onnx.save(proto, str(path))
    return path


def test_an_extra_matmul_in_the_head_is_refused(instances, tmp_path: Path) -> None:
    def extra_matmul(proto: onnx.ModelProto) -> None:
        cls_x = next(n for n in proto.graph.node if n.output[0] == "simcc_x")
        w = numpy_helper.from_array(np.eye(256, dtype=np.float32) * 1.01, "tamper_w")
        proto.graph.initializer.append(w)
        proto.graph.node.insert(
            list(proto.graph.node).index(cls_x),
            helper.make_node("MatMul", [cls_x.input[0], "tamper_w"], ["tamper_out"]),
        )
        cls_x.input[0] = "tamper_out"

    path = _tampered(tmp_path, extra_matmul)
    with pytest.raises(ValueError, match="6 MatMuls by a constant, RTMPose's head has 5"):
        import_pose_export(path, _crops(instances, (96, 128)))


def test_a_head_computing_something_else_fails_the_verification(instances, tmp_path) -> None:
    """The GAU's 1/sqrt(s) changed: no parameter moves, so only the check against
    onnxruntime can notice."""

    def other_scale(proto: onnx.ModelProto) -> None:
        consts = {n.output[0]: n for n in proto.graph.node if n.op_type == "Constant"}
        div = next(n for n in proto.graph.node if n.op_type == "Div" and n.input[1] in consts)
        consts[div.input[1]].attribute[0].t.CopyFrom(
            numpy_helper.from_array(np.array(8.0, np.float32))
        )

    path = _tampered(tmp_path, other_scale)
    with pytest.raises(ValueError, match=r"differs from onnxruntime by [0-9.e-]+ \(> 0.0001\)"):
        import_pose_export(path, _crops(instances, (96, 128)))
