"""RTMPose / CSPNeXt re-implementation: sizes, shapes, official key names, checkpoint I/O.

No official RTMPose weights are available offline, so the architecture is pinned three ways:
exact parameter counts (vs the model zoo), exact official key names, and a numerical
comparison of the CSPNeXt backbone against the official RTMDet-nano ONNX export (trained
weights, BN folded) that is staged in ../shared/models.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.support.paths import RTMDET_ONNX
from training.init_onnx import _conv_order, init_backbone_from_onnx
from training.models import (
    VARIANTS,
    CheckpointMismatchError,
    CSPNeXt,
    build_rtmpose,
    count_parameters,
    infer_build_args,
    load_official_state_dict,
    seeded_rtmpose,
)
from training.models.rtmpose import RTMCCBlock, ScaleNorm

# Exact counts of this implementation; the model zoo rounds them to 3.34/5.47/13.59/27.66 M.
EXACT_PARAMS = {"t": 3_337_007, "s": 5_473_251, "m": 13_587_611, "l": 27_660_339}

RTMDET_NANO_ONNX = RTMDET_ONNX


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


@pytest.mark.parametrize("variant", sorted(v for v in VARIANTS if VARIANTS[v].published_params_m))
def test_parameter_count_matches_model_zoo(variant: str) -> None:
    n = count_parameters(build_rtmpose(variant))
    published = VARIANTS[variant].published_params_m * 1e6
    assert abs(n - published) / published < 0.01
    assert n == EXACT_PARAMS[variant]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize(
    ("input_size", "bins"), [((192, 256), (384, 512)), ((288, 384), (576, 768))]
)
def test_output_shapes(variant: str, input_size: tuple[int, int], bins: tuple[int, int]) -> None:
    model = build_rtmpose(variant, input_size=input_size).eval()
    w, h = input_size
    with torch.no_grad():
        simcc_x, simcc_y = model(torch.randn(2, 3, h, w))
    assert simcc_x.shape == (2, 17, bins[0])
    assert simcc_y.shape == (2, 17, bins[1])


def test_official_key_names() -> None:
    keys = set(build_rtmpose("m").state_dict())
    for key in (
        "backbone.stem.0.conv.weight",
        "backbone.stem.2.bn.running_var",
        "backbone.stage1.0.conv.weight",
        "backbone.stage1.1.main_conv.conv.weight",
        "backbone.stage1.1.short_conv.bn.bias",
        "backbone.stage1.1.final_conv.conv.weight",
        "backbone.stage1.1.blocks.0.conv1.conv.weight",
        "backbone.stage1.1.blocks.1.conv2.depthwise_conv.conv.weight",
        "backbone.stage1.1.blocks.1.conv2.pointwise_conv.bn.num_batches_tracked",
        "backbone.stage1.1.attention.fc.weight",
        "backbone.stage1.1.attention.fc.bias",
        "backbone.stage4.1.conv1.conv.weight",
        "backbone.stage4.1.conv2.bn.weight",
        "backbone.stage4.2.attention.fc.weight",
        "head.final_layer.weight",
        "head.final_layer.bias",
        "head.mlp.0.g",
        "head.mlp.1.weight",
        "head.gau.uv.weight",
        "head.gau.o.weight",
        "head.gau.gamma",
        "head.gau.beta",
        "head.gau.ln.g",
        "head.gau.res_scale.scale",
        "head.cls_x.weight",
        "head.cls_y.weight",
    ):
        assert key in keys, key
    assert all(k.startswith(("backbone.", "head.")) for k in keys)
    head = {k for k in keys if k.startswith("head.")}
    assert len(head) == 12  # final_layer w/b, mlp g/w, gau x6, cls_x, cls_y
    # m: deepen 0.67 -> blocks round(3*.67)=2, round(6*.67)=4, 4, 2; widen 0.75 -> 48..768.
    sd = build_rtmpose("m").state_dict()
    assert sd["backbone.stem.0.conv.weight"].shape == (24, 3, 3, 3)
    assert sd["backbone.stage4.0.conv.weight"].shape == (768, 384, 3, 3)
    assert sd["backbone.stage4.1.conv2.conv.weight"].shape == (768, 1536, 1, 1)
    assert sd["head.final_layer.weight"].shape == (17, 768, 7, 7)
    assert sd["head.mlp.1.weight"].shape == (256, 48)
    assert sd["head.gau.uv.weight"].shape == (1152, 256)
    assert sd["head.gau.gamma"].shape == (2, 128)
    assert sd["head.cls_x.weight"].shape == (384, 256)
    assert {k.split(".blocks.")[1].split(".")[0] for k in keys if "stage2.1.blocks." in k} == {
        "0",
        "1",
        "2",
        "3",
    }


def test_batchnorm_defaults_and_rtmdet_settings() -> None:
    bn = build_rtmpose("t").backbone.stem[0].bn
    assert (bn.eps, bn.momentum) == (1e-5, 0.1)  # SyncBN defaults used by RTMPose configs
    rtmdet = CSPNeXt(0.33, 0.25, use_depthwise=True, bn_eps=1e-3, bn_momentum=0.03)
    bns = [m for m in rtmdet.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all((m.eps, m.momentum) == (1e-3, 0.03) for m in bns)
    keys = set(rtmdet.state_dict())
    assert "stage1.0.depthwise_conv.conv.weight" in keys
    assert "stage1.1.blocks.0.conv1.pointwise_conv.conv.weight" in keys


@pytest.mark.skipif(not RTMDET_NANO_ONNX.exists(), reason="staged RTMDet-nano ONNX missing")
def test_cspnext_matches_official_rtmdet_nano_export() -> None:
    """Load the official (BN-folded) RTMDet-nano backbone into our CSPNeXt with
    training.init_onnx and compare stage 2/3/4 features with onnxruntime: checks shapes,
    groups, block order, concat order, channel attention, SPP and the BN rebuild, against a
    real OpenMMLab export, in eval mode and (on the calibration batch) in train mode."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    backbone = CSPNeXt(
        0.33, 0.25, out_indices=(2, 3, 4), use_depthwise=True, bn_eps=1e-3, bn_momentum=0.03
    )
    x = np.random.default_rng(0).standard_normal((2, 3, 320, 320)).astype(np.float32)
    init_backbone_from_onnx(backbone, RTMDET_NANO_ONNX, torch.from_numpy(x))

    proto = onnx.load(str(RTMDET_NANO_ONNX))
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    order = _conv_order(backbone, torch.from_numpy(x[:1]))  # ours, in forward order
    onnx_convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    finals = ("stage2.1.final_conv.conv", "stage3.1.final_conv.conv", "stage4.2.final_conv.conv")
    final_convs = [onnx_convs[order.index(name)] for name in finals]
    outputs = []
    for conv in final_convs:  # final_conv -> Sigmoid -> Mul (SiLU) is each stage's output
        sigmoid = next(c for c in consumers[conv.output[0]] if c.op_type == "Sigmoid")
        outputs.append(
            next(c for c in consumers[sigmoid.output[0]] if c.op_type == "Mul").output[0]
        )
    for t in outputs:
        proto.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    per_image = [sess.run(outputs, {"input": x[i : i + 1]}) for i in range(len(x))]  # batch 1 only
    expected = [np.concatenate(parts) for parts in zip(*per_image, strict=True)]
    for mode in ("eval", "train"):
        backbone.train(mode == "train")
        with torch.no_grad():
            ours = backbone(torch.from_numpy(x))
        for e, o in zip(expected, ours, strict=True):
            assert e.shape == tuple(o.shape)
            err, scale = np.abs(o.numpy() - e), max(1.0, np.abs(e).max())
            # float32 drift through ~50 rebuilt BNs: tiny on average, a little more at worst
            assert err.mean() < 1e-4 * scale and err.max() < 2e-3 * scale, (mode, err.max())


def test_scalenorm_and_gau_follow_the_published_formulas() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 17, 256)
    norm = ScaleNorm(256)
    norm.g.data.fill_(1.7)
    ref = x / (x.norm(dim=-1, keepdim=True) / math.sqrt(256)).clamp(min=1e-5) * 1.7
    torch.testing.assert_close(norm(x), ref)

    gau = RTMCCBlock(17, 256, 256, expansion_factor=2, s=128).eval()
    with torch.no_grad():
        h = gau.ln(x)
        uv = nn.functional.silu(h @ gau.uv.weight.T)
        u, v, base = uv[..., :512], uv[..., 512:1024], uv[..., 1024:]
        q = base * gau.gamma[0] + gau.beta[0]
        k = base * gau.gamma[1] + gau.beta[1]
        kernel = torch.relu(torch.einsum("bis,bjs->bij", q, k) / math.sqrt(128)) ** 2
        ref = (
            gau.res_scale.scale * x + (u * torch.einsum("bij,bje->bie", kernel, v)) @ gau.o.weight.T
        )
        torch.testing.assert_close(gau(x), ref, rtol=1e-4, atol=1e-5)


def test_seeded_model_is_deterministic_and_input_dependent() -> None:
    state = torch.random.get_rng_state()
    a, b, c = seeded_rtmpose("t", 0), seeded_rtmpose("t", 0), seeded_rtmpose("t", 1)
    assert torch.equal(state, torch.random.get_rng_state())  # caller's RNG untouched
    assert not a.training
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["head.gau.uv.weight"], sc["head.gau.uv.weight"])
    assert not torch.equal(sa["backbone.stem.0.bn.running_var"], torch.ones(12))
    with torch.no_grad():
        simcc_x, _ = a(torch.randn(4, 3, 256, 192))
    assert torch.isfinite(simcc_x).all()
    assert 0.3 < simcc_x.abs().max() < 3  # trained-like logit scale, not vanishing/exploding
    argmax = simcc_x.argmax(-1)  # decoded x-bins must differ between images
    assert (argmax[0] != argmax[1]).any() and (argmax[2] != argmax[3]).any()


def _checkpoint(model: nn.Module) -> dict[str, object]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53])
    state["ema_backbone_stem_0_conv_weight"] = torch.zeros(1)
    return {"state_dict": state, "meta": {"mmpose_version": "1.0.0", "epoch": 420}}


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    src = seeded_rtmpose("t", 3)
    path = tmp_path / "rtmpose-t.pth"
    torch.save(_checkpoint(src), path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    dst = build_rtmpose("t")
    load_official_state_dict(dst, ckpt)
    dst.eval()
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        for a, b in zip(src(x), dst(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert infer_build_args(ckpt) == {"variant": "t", "num_keypoints": 17, "input_size": (192, 256)}


def test_infer_build_args_other_input_size() -> None:
    ckpt = {"state_dict": build_rtmpose("s", (288, 384), 133).state_dict()}
    assert infer_build_args(ckpt) == {
        "variant": "s",
        "num_keypoints": 133,
        "input_size": (288, 384),
    }


def test_tampered_checkpoint_is_rejected_with_key_list() -> None:
    ckpt = _checkpoint(build_rtmpose("t"))
    state = ckpt["state_dict"]
    assert isinstance(state, dict)
    state["head.gau.uv.kernel"] = state.pop("head.gau.uv.weight")
    with pytest.raises(CheckpointMismatchError) as err:
        load_official_state_dict(build_rtmpose("t"), ckpt)
    msg = str(err.value)
    assert "missing keys (1): head.gau.uv.weight" in msg
    assert "unexpected keys (1): head.gau.uv.kernel" in msg


def test_wrong_input_size_is_rejected_with_shapes() -> None:
    with pytest.raises(CheckpointMismatchError) as err:
        load_official_state_dict(build_rtmpose("t"), build_rtmpose("t", (288, 384)).state_dict())
    msg = str(err.value)
    assert "shape mismatches (3)" in msg and "missing" not in msg
    assert "head.cls_x.weight: checkpoint (576, 256) vs model (384, 256)" in msg
