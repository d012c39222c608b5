"""Rebuild a whole RTMPose, head included, from its ONNX export (ours or OpenMMLab's).

Fine-tuning a model that already serves must start from what it computes, not from its
backbone under a random head. Exports keep no usable parameter names (``onnx::MatMul_758``,
and mmdeploy's ``end2end.onnx`` names differ again), fold BN into the convolutions and differ
by exporter and opset, so every parameter is found by the graph's structure and order:

- convolutions in graph order = the model's in forward order, BN rebuilt on real crops
  (:mod:`training.init_onnx`), the last one being the head's ``final_layer``;
- Linear = MatMul whose second input is a constant (transposed weight): ``mlp``, ``uv``,
  ``o`` in graph order, ``cls_x``/``cls_y`` the two that produce the outputs;
- ScaleNorm ``g`` = the scalar Mul right after a Div of activations (``mlp.0``, ``gau.ln``);
- GAU ``gamma``/``beta`` = the Mul/Add with a 2*s constant, ``res_scale`` = the Mul of the
  ``mlp`` output by a constant.

Constants may be initializers, ``Constant`` nodes or shape ops on them (folded here). An
export of a structure this does not know could still map wrongly, so every import is checked
against onnxruntime on the calibration crops (:data:`MAX_IMPORT_DIFF`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper
from torch import Tensor

from service.core.contract import session
from training.init_onnx import load_folded_convs, onnx_constants, rebuild_batchnorms
from training.models.rtmpose import VARIANTS, RTMPose, build_rtmpose

MAX_IMPORT_DIFF = 1e-4  # onnxruntime vs the rebuilt model, SimCC logits, max abs
SIMCC_SPLIT_RATIO = 2.0
_SHAPE_OPS = ("Identity", "Cast", "Unsqueeze", "Squeeze", "Reshape", "Transpose")


class NotAPoseExportError(ValueError):
    """The ONNX file is not an RTMPose export (e.g. a detector)."""


@dataclass(frozen=True)
class PoseExport:
    """Build arguments of an RTMPose export and its head parameters (torch layout)."""

    path: str
    variant: str
    input_size: tuple[int, int]  # (w, h)
    num_keypoints: int
    input_name: str
    output_names: tuple[str, str]  # (simcc_x, simcc_y)
    static_batch: bool
    head: dict[str, np.ndarray]  # state_dict key -> value


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _fold(node: onnx.NodeProto, args: list[np.ndarray | None]) -> np.ndarray:
    """Evaluate one shape op on constant inputs (constant folding the exporter left out)."""
    attrs = _attrs(node)
    x = args[0]
    assert x is not None
    op = node.op_type
    if op == "Cast":
        return x.astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
    if op == "Transpose":
        return np.transpose(x, attrs.get("perm"))
    if op == "Reshape":
        assert args[1] is not None
        shape = [x.shape[i] if d == 0 else int(d) for i, d in enumerate(args[1])]
        return x.reshape(shape)
    axes = attrs.get("axes", args[1] if len(args) > 1 else None)
    if op == "Unsqueeze":
        assert axes is not None
        for axis in sorted(int(a) % (x.ndim + len(axes)) for a in axes):
            x = np.expand_dims(x, axis)
        return x
    if op == "Squeeze":
        return np.squeeze(x, None if axes is None else tuple(int(a) for a in axes))
    return x  # Identity


class _Graph:
    """Nodes, constants (folded through shape ops) and producers of one ONNX graph."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.nodes = list(proto.graph.node)
        self.consts = onnx_constants(proto)
        for node in self.nodes:
            if node.op_type in _SHAPE_OPS and node.input[0] in self.consts:
                args = [self.consts.get(i) if i else None for i in node.input]
                if all(a is not None for a, i in zip(args, node.input, strict=True) if i):
                    self.consts[node.output[0]] = _fold(node, args)
        self.producer = {out: node for node in self.nodes for out in node.output}
        inits = {i.name for i in proto.graph.initializer}
        self.inputs = [i for i in proto.graph.input if i.name not in inits]
        self.outputs = [o.name for o in proto.graph.output]

    def source(self, name: str) -> onnx.NodeProto | None:
        """The node computing ``name``, looking through Identity nodes."""
        node = self.producer.get(name)
        while node is not None and node.op_type == "Identity":
            node = self.producer.get(node.input[0])
        return node

    def with_const(self, node: onnx.NodeProto) -> tuple[str, np.ndarray] | None:
        """(activation input, constant) of a binary node with exactly one constant input."""
        a, b = node.input[0], node.input[1]
        if (a in self.consts) == (b in self.consts):
            return None
        return (b, self.consts[a]) if a in self.consts else (a, self.consts[b])

    def linear(self, node: onnx.NodeProto | None) -> np.ndarray | None:
        """The (in, out) weight of a MatMul by a constant matrix, else None."""
        if node is None or node.op_type != "MatMul" or node.input[0] in self.consts:
            return None
        w = self.consts.get(node.input[1])
        return w if w is not None and w.ndim == 2 else None


def _simcc_heads(graph: _Graph, path: str | Path) -> list[tuple[str, onnx.NodeProto]] | None:
    """(output, MatMul) of cls_x and cls_y if the graph ends in two SimCC classifiers."""
    names = graph.outputs
    named = set(names) == {"simcc_x", "simcc_y"}
    if len(names) != 2:
        return None
    heads = [(n, graph.source(n)) for n in (["simcc_x", "simcc_y"] if named else names)]
    if all(graph.linear(node) is not None for _, node in heads):
        return heads  # type: ignore[return-value]  # checked: no None
    if named:  # named as a pose model but not built as one
        raise ValueError(f"{path}: simcc_x/simcc_y are not produced by a Linear (MatMul)")
    return None


def is_pose_export(path: str | Path) -> bool:
    """Whether ``path`` ends in two SimCC classifiers (RTMPose) rather than, say, detections."""
    return _simcc_heads(_Graph(onnx.load(str(path))), path) is not None


def _one(found: list[np.ndarray], what: str, path: str | Path) -> np.ndarray:
    if len(found) != 1:
        raise ValueError(f"{path}: found {len(found)} {what}, RTMPose's head has one")
    return found[0]


def inspect_pose_export(path: str | Path) -> PoseExport:
    """Read build arguments and head parameters of an RTMPose ONNX by its structure."""
    graph = _Graph(onnx.load(str(path)))
    heads = _simcc_heads(graph, path)
    if heads is None:
        raise NotAPoseExportError(
            f"{path}: outputs {graph.outputs} are not RTMPose's two SimCC classifiers "
            "(a detector? only its backbone can start a pose model: use a pose export)"
        )
    convs = [i for i, n in enumerate(graph.nodes) if n.op_type == "Conv"]
    if not convs:
        raise ValueError(f"{path}: no convolutions, so no CSPNeXt backbone")
    final, head_nodes = graph.nodes[convs[-1]], graph.nodes[convs[-1] + 1 :]
    linears = [n for n in head_nodes if graph.linear(n) is not None]
    if len(linears) != 5 or {id(n) for n in linears[3:]} != {id(n) for _, n in heads}:
        raise ValueError(
            f"{path}: {len(linears)} MatMuls by a constant, RTMPose's head has 5 "
            "(mlp, uv, o, cls_x, cls_y, the last two producing the outputs)"
        )
    mlp, uv, o = linears[:3]
    w_mlp, w_uv, w_o = (graph.linear(n) for n in (mlp, uv, o))
    w_x, w_y = (graph.linear(n) for _, n in heads)
    assert w_mlp is not None and w_uv is not None and w_o is not None
    assert w_x is not None and w_y is not None
    hidden, e = w_mlp.shape[1], w_o.shape[0]
    s = w_uv.shape[1] - 2 * e

    # (op, activation input, constant) of every Mul/Add by a constant
    binary = [(n.op_type, *xc) for n in head_nodes if n.op_type in ("Mul", "Add")
              if (xc := graph.with_const(n)) is not None]  # fmt: skip

    def after_div(x: str) -> bool:
        div = graph.source(x)
        return div is not None and div.op_type == "Div" and graph.with_const(div) is None

    norms = [c for op, x, c in binary if op == "Mul" and c.size == 1 and after_div(x)]
    if len(norms) != 2:
        raise ValueError(f"{path}: found {len(norms)} ScaleNorm gains, RTMPose's head has 2")
    mlp_out = mlp.output[0]
    res = [c for op, x, c in binary if op == "Mul" and x == mlp_out and c.size > 1]
    gamma = [c for op, x, c in binary if op == "Mul" and x != mlp_out and c.size == 2 * s]
    beta = [c for op, _, c in binary if op == "Add" and c.size == 2 * s]

    k, channels = graph.consts[final.input[1]].shape[:2]
    by_channels = {v.head_in_channels: name for name, v in VARIANTS.items()}
    if channels not in by_channels:
        raise ValueError(f"{path}: no RTMPose variant has {channels} head input channels")
    variant = by_channels[channels]
    # every CSPNeXt has depthwise 5x5 convs; a depthwise one also downsamples with them
    depthwise = any(
        n.op_type == "Conv"
        and _attrs(n).get("group", 1) > 1
        and max(_attrs(n).get("strides", [1])) > 1
        for n in graph.nodes
    )
    if depthwise != VARIANTS[variant].use_depthwise:
        raise ValueError(
            f"{path}: {channels} head channels mean variant {variant}, but its backbone is "
            f"{'' if depthwise else 'not '}depthwise: not an export of a known RTMPose"
        )
    from_cls = (round(w_x.shape[1] / SIMCC_SPLIT_RATIO), round(w_y.shape[1] / SIMCC_SPLIT_RATIO))
    dims = [d.dim_value for d in graph.inputs[0].type.tensor_type.shape.dim]
    if len(dims) == 4 and dims[2] and dims[3] and (dims[3], dims[2]) != from_cls:
        raise ValueError(f"{path}: input {dims[3]}x{dims[2]} but SimCC bins for {from_cls}")

    head = {
        "head.mlp.0.g": norms[0].reshape(1),
        "head.mlp.1.weight": w_mlp.T,
        "head.gau.ln.g": norms[1].reshape(1),
        "head.gau.uv.weight": w_uv.T,
        "head.gau.gamma": _one(gamma, f"GAU gamma (Mul by {2 * s} values)", path).reshape(2, s),
        "head.gau.beta": _one(beta, f"GAU beta (Add of {2 * s} values)", path).reshape(2, s),
        "head.gau.o.weight": w_o.T,
        "head.gau.res_scale.scale": _one(
            res, "residual scales (Mul of the mlp output)", path
        ).reshape(hidden),
        "head.cls_x.weight": w_x.T,
        "head.cls_y.weight": w_y.T,
    }
    return PoseExport(
        path=str(path),
        variant=variant,
        input_size=from_cls,
        num_keypoints=int(k),
        input_name=graph.inputs[0].name,
        output_names=(heads[0][0], heads[1][0]),
        static_batch=bool(dims and dims[0] == 1),
        head=head,
    )


def check_build_args(
    export: PoseExport, variant: str | None, input_size: tuple[int, int] | None
) -> None:
    """Refuse a ``--variant``/``--input-size`` that is not the export's (it cannot load)."""
    if variant is not None and variant != export.variant:
        raise ValueError(
            f"--variant {variant} given, but {export.path} is RTMPose-{export.variant}"
        )
    if input_size is not None and tuple(input_size) != export.input_size:
        w, h = export.input_size
        raise ValueError(
            f"--input-size {input_size[0]} {input_size[1]} given, but {export.path} takes {w}x{h}"
        )


def onnx_difference(model: RTMPose, export: PoseExport, crops: Tensor) -> float:
    """Max abs difference of the SimCC logits, onnxruntime vs ``model`` (eval) on ``crops``."""
    sess = session(export.path, 1, quiet=True)
    x = crops.numpy().astype(np.float32)
    chunks = [x[i : i + 1] for i in range(len(x))] if export.static_batch else [x]
    got = [sess.run(list(export.output_names), {export.input_name: c}) for c in chunks]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        ours = [t.numpy() for t in model(crops)]
    model.train(was_training)
    return max(float(np.abs(np.concatenate([g[i] for g in got]) - ours[i]).max()) for i in range(2))


def load_pose_export(model: RTMPose, export: PoseExport, calibration: Tensor) -> float:
    """Load every parameter of ``export`` into ``model`` and check it; returns the max diff.

    ``calibration``: real, normalised crops (N, 3, H, W) at the export's input size; they set
    the rebuilt BN statistics and are what the import is verified on.
    """
    h, w = calibration.shape[-2:]
    if (w, h) != export.input_size:
        raise ValueError(f"calibration crops are {w}x{h}, the export takes {export.input_size}")
    folded = load_folded_convs(model, export.path, calibration[:1], exact=True)
    own = model.state_dict()
    with torch.no_grad():
        for key, value in export.head.items():
            if tuple(own[key].shape) != value.shape:
                shape = tuple(own[key].shape)
                raise ValueError(f"{export.path}: {key} is {value.shape}, the model's {shape}")
            own[key].copy_(torch.from_numpy(np.array(value, np.float32)))
    rebuild_batchnorms(model, folded, calibration)
    diff = onnx_difference(model, export, calibration)
    if not diff <= MAX_IMPORT_DIFF:
        raise ValueError(
            f"{export.path}: the rebuilt model differs from onnxruntime by {diff:.3g} "
            f"(> {MAX_IMPORT_DIFF:g}) on {len(calibration)} crops: the export's structure is "
            "not one this importer maps correctly"
        )
    return diff


def import_pose_export(
    path: str | Path,
    calibration: Tensor,
    variant: str | None = None,
    input_size: tuple[int, int] | None = None,
) -> tuple[RTMPose, dict[str, Any]]:
    """A new RTMPose equal to the ONNX at ``path`` (eval mode) and what was imported."""
    export = inspect_pose_export(path)
    check_build_args(export, variant, input_size)
    model = build_rtmpose(export.variant, export.input_size, export.num_keypoints).eval()
    diff = load_pose_export(model, export, calibration)
    return model, import_summary(export, diff)


def import_summary(export: PoseExport, diff: float) -> dict[str, Any]:
    """What a run records about its starting point (its config's ``notes``)."""
    return {
        "file": export.path,
        "imported": "whole model",
        "variant": export.variant,
        "input_size": list(export.input_size),
        "num_keypoints": export.num_keypoints,
        "max_abs_diff_vs_onnxruntime": diff,
    }
