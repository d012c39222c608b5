"""Start training from the weights inside an exported ONNX model (e.g. the official RTMDet-nano).

Exports fold each BatchNorm into the convolution before it (weight scaled, a bias added), so
the BN layers are gone from the file. We copy the convolutions in forward order and rebuild
every BN so that the network computes exactly what the ONNX does, in eval mode and (for
batches like the calibration batch) in train mode too: BN(x) = gamma * (x - mu) / sigma + beta
with mu, sigma the per-channel statistics of its input on real images, gamma = sigma and
beta = mu + folded bias, i.e. BN(x) = x + bias. Fine-tuning then starts from the detector's
features instead of from BN layers that would re-normalise them away.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import Tensor, nn


def _conv_order(module: nn.Module, sample: Tensor) -> list[str]:
    """Names of the Conv2d modules in the order the forward pass runs them."""
    order: list[str] = []
    hooks = [
        m.register_forward_hook(lambda *_, n=name: order.append(n))
        for name, m in module.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            module(sample)
    finally:
        for h in hooks:
            h.remove()
    return order


def onnx_constants(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` node outputs by name: exporters put weights in either."""
    consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute:
            attr = node.attribute[0]
            value = helper.get_attribute_value(attr)
            consts[node.output[0]] = (
                numpy_helper.to_array(value) if attr.name == "value" else np.asarray(value)
            )
    return consts


def load_folded_convs(
    module: nn.Module, onnx_path: str | Path, sample: Tensor, exact: bool = False
) -> dict[str, Tensor]:
    """Copy the first convolutions of ``onnx_path`` (graph order) into ``module`` (forward order).

    Returns the folded bias of each conv that is followed by a BN in ``module`` (to be
    restored by :func:`rebuild_batchnorms`); convs with their own bias get it directly.
    ``exact``: the file must have no more convolutions than ``module`` (a whole model).
    """
    proto = onnx.load(str(onnx_path))
    inits = onnx_constants(proto)
    onnx_convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    order = _conv_order(module, sample)
    if len(onnx_convs) < len(order) or (exact and len(onnx_convs) != len(order)):
        raise ValueError(f"{onnx_path} has {len(onnx_convs)} convolutions, need {len(order)}")
    modules = dict(module.named_modules())
    folded: dict[str, Tensor] = {}
    with torch.no_grad():
        for name, node in zip(order, onnx_convs[: len(order)], strict=True):
            conv = modules[name]
            weight = torch.from_numpy(np.array(inits[node.input[1]]))
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            if (tuple(conv.weight.shape), conv.groups) != (tuple(weight.shape), groups):
                raise ValueError(
                    f"{name}: ONNX conv {tuple(weight.shape)}/groups {groups} does not fit "
                    f"{tuple(conv.weight.shape)}/groups {conv.groups}: not the same backbone"
                )
            conv.weight.copy_(weight)
            bias = torch.from_numpy(np.array(inits[node.input[2]])) if len(node.input) > 2 else None
            if conv.bias is not None:
                conv.bias.copy_(bias if bias is not None else torch.zeros_like(conv.bias))
            elif bias is not None:
                folded[name] = bias
    return folded


def rebuild_batchnorms(module: nn.Module, folded: dict[str, Tensor], calibration: Tensor) -> None:
    """Turn every ``<prefix>.conv`` -> ``<prefix>.bn`` pair back into ``conv + folded bias``."""
    modules = dict(module.named_modules())
    bns = {name: modules[name.removesuffix("conv") + "bn"] for name in folded}
    stats: dict[str, tuple[Tensor, Tensor]] = {}
    with torch.no_grad():
        for name, bn in bns.items():  # exact folded network: BN = identity + bias
            bn.weight.fill_(1.0)
            bn.bias.copy_(folded[name])
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        hooks = [
            bn.register_forward_hook(
                lambda m, inp, _, n=name: stats.__setitem__(
                    n, (inp[0].mean((0, 2, 3)), inp[0].var((0, 2, 3), unbiased=False))
                )
            )
            for name, bn in bns.items()
        ]
        was_training = module.training
        module.eval()
        try:
            module(calibration)
        finally:
            for h in hooks:
                h.remove()
            module.train(was_training)
        for name, bn in bns.items():
            mean, var = stats[name]
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.copy_(mean + folded[name])


def init_backbone_from_onnx(
    backbone: nn.Module, onnx_path: str | Path, calibration: Tensor
) -> None:
    """Load an exported detector's backbone into ``backbone`` (see the module docstring).

    ``calibration`` is a batch of real, normalised images (N, 3, H, W) at training size.
    """
    folded = load_folded_convs(backbone, onnx_path, calibration[:1])
    rebuild_batchnorms(backbone, folded, calibration)
