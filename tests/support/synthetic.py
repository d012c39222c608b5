"""Tiny stand-in ONNX files with the exact RTMPose signature, for tests and dry runs.

No RTMPose weights can be obtained offline here, yet the importer, the Triton configs and the
pipeline all key on the ``input`` -> ``simcc_x``/``simcc_y`` signature; a few-node graph with that
signature lets those paths be exercised without torch or the real model.
"""

from __future__ import annotations

from pathlib import Path

from service.core.specs import PoseSpec


def write_synthetic_pose_onnx(
    path: str | Path,
    spec: PoseSpec | None = None,
    *,
    dynamic_batch: bool = True,
    declare_output_shapes: bool = True,
    fails_at_run: bool = False,
) -> Path:
    """Write a pose-shaped ONNX: ``input`` [N,3,H,W] -> ``simcc_x`` [N,K,W*r], ``simcc_y``
    [N,K,H*r].

    The logits are the per-image mean tiled over every bin (meaningless values, exact shapes).
    ``declare_output_shapes=False`` declares symbolic output dims, as some exporters do.
    ``fails_at_run``: it loads, fits every signature check, and fails on every batch (a
    reshape only the input's size decides, at run time).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    spec = spec or PoseSpec()
    w, h = spec.input_size
    k = spec.num_keypoints
    bx, by = round(w * spec.simcc_split_ratio), round(h * spec.simcc_split_ratio)
    n: int | str = "batch" if dynamic_batch else 1

    def const(name: str, values: list[int]) -> onnx.NodeProto:
        t = helper.make_tensor(name, TensorProto.INT64, [len(values)], np.asarray(values))
        return helper.make_node("Constant", [], [name], value=t)

    source = "input"
    nodes = []
    if fails_at_run:  # 3*H*W into rows of 7: never whole, and no static check can tell
        source = "unshaped"
        nodes += [
            helper.make_node("Shape", ["input"], ["run_shape"], start=0, end=1),
            const("run_rest", [7, -1, 1]),
            helper.make_node("Concat", ["run_shape", "run_rest"], ["run_target"], axis=0),
            helper.make_node("Reshape", ["input", "run_target"], [source]),
        ]
    nodes += [
        helper.make_node("ReduceMean", [source], ["mean"], axes=[1, 2, 3], keepdims=1),
        const("shape3", [-1, 1, 1]),
        helper.make_node("Reshape", ["mean", "shape3"], ["m3"]),
        const("rep_x", [1, k, bx]),
        const("rep_y", [1, k, by]),
        # 1, computed from the input's shape: unknown to static shape inference
        helper.make_node("Shape", ["input"], ["in_shape"], start=1, end=2),
        helper.make_node("Div", ["in_shape", "in_shape"], ["runtime_one"]),
        # without declared shapes, route the repeats through a runtime op so that shape
        # inference cannot fill the dims in either
        helper.make_node(
            "Max", ["rep_x", "rep_x"] if declare_output_shapes else ["rep_x", "runtime_one"], ["rx"]
        ),
        helper.make_node(
            "Max", ["rep_y", "rep_y"] if declare_output_shapes else ["rep_y", "runtime_one"], ["ry"]
        ),
        helper.make_node("Tile", ["m3", "rx"], ["simcc_x"]),
        helper.make_node("Tile", ["m3", "ry"], ["simcc_y"]),
    ]
    outputs = [
        helper.make_tensor_value_info(
            name,
            TensorProto.FLOAT,
            [n, k, bins] if declare_output_shapes else [n, "keypoints", f"{name}_bins"],
        )
        for name, bins in (("simcc_x", bx), ("simcc_y", by))
    ]
    graph = helper.make_graph(
        nodes,
        "synthetic_rtmpose",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 3, h, w])],
        outputs,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 15)], producer_name="rtmserve-synthetic"
    )
    model.ir_version = 8  # loadable by older onnxruntime builds too
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path
