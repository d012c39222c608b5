"""RTMPose (CSPNeXt + RTMCCHead) with the official mmpose parameter names.

The head mirrors ``mmpose/models/heads/coord_cls_heads/rtmcc_head.py`` and
``mmpose/models/utils/rtmcc_block.py`` (self-attention GAU, no relative position bias, no
RoPE, as every RTMPose config uses), so an official checkpoint's ``state_dict`` loads with
``strict=True`` through :func:`load_official_state_dict`. The forward returns the raw SimCC
logits ``(simcc_x, simcc_y)``, which is exactly what mmdeploy's ``end2end.onnx`` exposes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from service.core.variants import RTMPOSE_SIZES, RTMPoseSize
from training.models.cspnext import (
    RTMDET_BN_EPS,
    RTMDET_BN_MOMENTUM,
    RTMPOSE_BN_EPS,
    RTMPOSE_BN_MOMENTUM,
    CSPNeXt,
)


@dataclass(frozen=True)
class RTMPoseVariant:
    """Size-dependent hyper-parameters of one RTMPose body model (mmpose configs)."""

    deepen_factor: float
    widen_factor: float
    head_in_channels: int
    published_params_m: float | None  # model-zoo "Params(M)", used as a regression check
    use_depthwise: bool = False
    bn_eps: float = RTMPOSE_BN_EPS
    bn_momentum: float = RTMPOSE_BN_MOMENTUM


def _variant(size: RTMPoseSize) -> RTMPoseVariant:
    # the depthwise size is RTMDet-nano's backbone: its BN settings, so its weights can start
    # training (see service.core.variants)
    return RTMPoseVariant(
        size.deepen_factor,
        size.widen_factor,
        size.head_in_channels,
        size.published_params_m,
        use_depthwise=size.depthwise,
        bn_eps=RTMDET_BN_EPS if size.depthwise else RTMPOSE_BN_EPS,
        bn_momentum=RTMDET_BN_MOMENTUM if size.depthwise else RTMPOSE_BN_MOMENTUM,
    )


VARIANTS: dict[str, RTMPoseVariant] = {name: _variant(s) for name, s in RTMPOSE_SIZES.items()}

DEFAULT_INPUT_SIZE: tuple[int, int] = (192, 256)  # (w, h), mmpose convention
BACKBONE_STRIDE = 32


class ScaleNorm(nn.Module):
    """``x / clamp(||x||_2 / sqrt(d), eps) * g`` with a single learnable scalar ``g``."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        norm = torch.linalg.norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class Scale(nn.Module):
    """Learnable per-channel scale (the GAU's residual branch weight)."""

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(init_value * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class RTMCCBlock(nn.Module):
    """Gated Attention Unit over the K keypoint tokens (self-attention form only).

    ``uv`` produces u (e), v (e) and a shared base (s); q/k are per-row affine maps of the
    base (``gamma``/``beta``); attention is ``relu(q k^T / sqrt(s))^2`` (no softmax).
    """

    def __init__(
        self,
        num_token: int,
        in_token_dims: int,
        out_token_dims: int,
        expansion_factor: int = 2,
        s: int = 128,
        eps: float = 1e-5,
        dropout_rate: float = 0.0,
        act_fn: str = "SiLU",
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.s = s
        self.num_token = num_token
        self.e = int(in_token_dims * expansion_factor)
        self.o = nn.Linear(self.e, out_token_dims, bias=bias)
        self.uv = nn.Linear(in_token_dims, 2 * self.e + self.s, bias=bias)
        self.gamma = nn.Parameter(torch.rand((2, self.s)))
        self.beta = nn.Parameter(torch.rand((2, self.s)))
        self.ln = ScaleNorm(in_token_dims, eps=eps)
        nn.init.xavier_uniform_(self.uv.weight)
        if act_fn == "SiLU":
            self.act_fn: nn.Module = nn.SiLU(inplace=True)
        elif act_fn == "ReLU":
            self.act_fn = nn.ReLU(inplace=True)
        else:
            raise ValueError(f"act_fn must be 'SiLU' or 'ReLU', got {act_fn!r}")
        self.shortcut = in_token_dims == out_token_dims
        if self.shortcut:
            self.res_scale = Scale(in_token_dims)
        self.sqrt_s = math.sqrt(s)
        self.dropout: nn.Module = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()

    def _forward(self, x: Tensor) -> Tensor:
        x = self.ln(x)
        uv = self.act_fn(self.uv(x))  # (B, K, 2e + s)
        u, v, base = torch.split(uv, [self.e, self.e, self.s], dim=2)
        base = base.unsqueeze(2) * self.gamma[None, None, :] + self.beta  # (B, K, 2, s)
        q, k = torch.unbind(base, dim=2)
        qk = torch.bmm(q, k.permute(0, 2, 1))  # (B, K, K)
        kernel = self.dropout(torch.square(torch.relu(qk / self.sqrt_s)))
        return self.o(u * torch.bmm(kernel, v))

    def forward(self, x: Tensor) -> Tensor:
        out = self._forward(x)
        return self.res_scale(x) + out if self.shortcut else out


class RTMCCHead(nn.Module):
    """7x7 conv to K maps -> flatten -> ScaleNorm+Linear -> GAU -> per-axis classifiers."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: tuple[int, int],
        in_featuremap_size: tuple[int, int],
        simcc_split_ratio: float = 2.0,
        final_layer_kernel_size: int = 7,
        hidden_dims: int = 256,
        s: int = 128,
        expansion_factor: int = 2,
        dropout_rate: float = 0.0,
        act_fn: str = "SiLU",
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.in_featuremap_size = in_featuremap_size
        self.simcc_split_ratio = simcc_split_ratio
        flatten_dims = in_featuremap_size[0] * in_featuremap_size[1]
        self.final_layer = nn.Conv2d(
            in_channels, out_channels, final_layer_kernel_size, 1, final_layer_kernel_size // 2
        )
        self.mlp = nn.Sequential(
            ScaleNorm(flatten_dims), nn.Linear(flatten_dims, hidden_dims, bias=False)
        )
        w = int(input_size[0] * simcc_split_ratio)
        h = int(input_size[1] * simcc_split_ratio)
        self.gau = RTMCCBlock(
            out_channels,
            hidden_dims,
            hidden_dims,
            expansion_factor=expansion_factor,
            s=s,
            dropout_rate=dropout_rate,
            act_fn=act_fn,
            bias=False,
        )
        self.cls_x = nn.Linear(hidden_dims, w, bias=False)
        self.cls_y = nn.Linear(hidden_dims, h, bias=False)

    def forward(self, feats: tuple[Tensor, ...] | Tensor) -> tuple[Tensor, Tensor]:
        x = feats[-1] if isinstance(feats, tuple | list) else feats
        x = torch.flatten(self.final_layer(x), 2)  # (B, K, Hf*Wf)
        x = self.gau(self.mlp(x))  # (B, K, hidden)
        return self.cls_x(x), self.cls_y(x)


class RTMPose(nn.Module):
    """Top-down RTMPose: ``(N,3,H,W)`` normalised RGB -> ``(simcc_x (N,K,rW), simcc_y (N,K,rH))``.

    Submodule names ``backbone``/``head`` make ``state_dict`` keys identical to mmpose's
    ``TopdownPoseEstimator`` checkpoints.
    """

    def __init__(
        self,
        deepen_factor: float,
        widen_factor: float,
        head_in_channels: int,
        input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
        num_keypoints: int = 17,
        simcc_split_ratio: float = 2.0,
        bn_eps: float = RTMPOSE_BN_EPS,
        bn_momentum: float = RTMPOSE_BN_MOMENTUM,
        use_depthwise: bool = False,
    ) -> None:
        super().__init__()
        w, h = input_size
        if w % BACKBONE_STRIDE or h % BACKBONE_STRIDE:
            raise ValueError(f"input_size {input_size} must be a multiple of {BACKBONE_STRIDE}")
        self.input_size = (w, h)
        self.num_keypoints = num_keypoints
        self.simcc_split_ratio = simcc_split_ratio
        self.backbone = CSPNeXt(
            deepen_factor=deepen_factor,
            widen_factor=widen_factor,
            out_indices=(4,),
            use_depthwise=use_depthwise,
            expand_ratio=0.5,
            channel_attention=True,
            bn_eps=bn_eps,
            bn_momentum=bn_momentum,
        )
        if self.backbone.out_channels[-1] != head_in_channels:
            raise ValueError(
                f"head_in_channels {head_in_channels} != backbone output "
                f"{self.backbone.out_channels[-1]} (widen_factor {widen_factor})"
            )
        self.head = RTMCCHead(
            head_in_channels,
            num_keypoints,
            (w, h),
            (w // BACKBONE_STRIDE, h // BACKBONE_STRIDE),
            simcc_split_ratio,
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.backbone(x))


def build_rtmpose(
    variant: str,
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    num_keypoints: int = 17,
    simcc_split_ratio: float = 2.0,
) -> RTMPose:
    """Build an RTMPose body model by size letter (``t``/``s``/``m``/``l``)."""
    try:
        cfg = VARIANTS[variant]
    except KeyError:
        raise ValueError(
            f"unknown RTMPose variant {variant!r}; expected one of {sorted(VARIANTS)}"
        ) from None
    return RTMPose(
        cfg.deepen_factor,
        cfg.widen_factor,
        cfg.head_in_channels,
        tuple(input_size),
        num_keypoints,
        simcc_split_ratio,
        cfg.bn_eps,
        cfg.bn_momentum,
        cfg.use_depthwise,
    )


@torch.no_grad()
def _randomise_for_export(model: RTMPose) -> None:
    """Make a random-weight RTMPose behave numerically like a trained one.

    Plain random init leaves BN at mean 0 / var 1 while PyTorch's default conv init shrinks
    activations layer after layer, so every input maps to nearly the same output and a
    parity test against it proves little. Instead: random BN affine params (gammas below 1,
    as in trained nets, which keeps the deep random net out of the chaotic regime where
    float32 rounding is amplified), running stats measured on a random batch (unit-scale,
    input-dependent activations), then jitter, and finally the SimCC classifiers rescaled
    so logits peak around 1 like a trained RTMPose's (its scores are the SimCC maxima,
    typically 0..1). Uses the global RNG, which the caller has seeded.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.weight.uniform_(0.25, 0.75)
        bn.bias.normal_(0.0, 0.1)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets the stats exactly
    w, h = model.input_size
    calib = torch.randn(4, 3, h, w)
    model.train()
    model(calib)
    model.eval()
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
        bn.running_mean.add_(torch.randn_like(bn.running_mean) * 0.05)
        bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.8, 1.25))
        bn.num_batches_tracked.zero_()
    simcc_x, simcc_y = model(calib)
    model.head.cls_x.weight.div_(simcc_x.abs().max())
    model.head.cls_y.weight.div_(simcc_y.abs().max())


def seeded_rtmpose(
    variant: str,
    seed: int,
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    num_keypoints: int = 17,
) -> RTMPose:
    """Deterministic random-weight RTMPose (eval mode), for exports and tests without weights.

    The caller's global RNG state is left untouched (``fork_rng``).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_rtmpose(variant, input_size, num_keypoints)
        _randomise_for_export(model)
    return model.eval()


class CheckpointMismatchError(ValueError):
    """Raised when a checkpoint does not match the model's parameter names or shapes."""


IGNORED_KEY_PREFIXES: tuple[str, ...] = ("data_preprocessor.", "ema_")


def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """Return the model weights of an mmpose checkpoint (or a bare state dict).

    Drops the data preprocessor buffers and mmdet-2.x style ``ema_*`` buffers, and a
    DistributedDataParallel ``module.`` prefix, none of which belong to the network.
    """
    sd = checkpoint.get("state_dict", checkpoint)
    if not isinstance(sd, Mapping):
        raise CheckpointMismatchError("checkpoint 'state_dict' is not a mapping")
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        if key.startswith(IGNORED_KEY_PREFIXES) or not isinstance(value, Tensor):
            continue
        out[key] = value
    return out


def _summarise(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_official_state_dict(model: nn.Module, state_dict_or_checkpoint: Mapping[str, Any]) -> None:
    """Strictly load official mmpose weights into ``model``.

    Raises :class:`CheckpointMismatchError` listing every missing key, unexpected key and
    shape mismatch, instead of PyTorch's generic error after a partial copy.
    """
    sd = extract_state_dict(state_dict_or_checkpoint)
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(sd)
        if sd[k].shape != own[k].shape
    )
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_summarise(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_summarise(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {_summarise(mismatched)}")
        raise CheckpointMismatchError(
            "checkpoint does not match the model (wrong variant, keypoint count or input "
            "size?): " + "; ".join(parts)
        )
    model.load_state_dict(sd, strict=True)


def infer_build_args(state_dict_or_checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """Recover ``build_rtmpose`` arguments from checkpoint tensor shapes.

    Lets the exporter take just a ``.pth``: head input channels identify the variant, the
    final layer the keypoint count, and the SimCC classifiers the input size.
    """
    sd = extract_state_dict(state_dict_or_checkpoint)
    try:
        final = sd["head.final_layer.weight"]
        cls_x, cls_y = sd["head.cls_x.weight"], sd["head.cls_y.weight"]
    except KeyError as exc:
        raise CheckpointMismatchError(f"not an RTMPose checkpoint: no {exc.args[0]}") from None
    by_channels = {v.head_in_channels: name for name, v in VARIANTS.items()}
    in_ch = int(final.shape[1])
    if in_ch not in by_channels:
        raise CheckpointMismatchError(f"no RTMPose variant has head in_channels {in_ch}")
    ratio = 2.0
    return {
        "variant": by_channels[in_ch],
        "num_keypoints": int(final.shape[0]),
        "input_size": (int(cls_x.shape[0] / ratio), int(cls_y.shape[0] / ratio)),
    }


def count_parameters(model: nn.Module) -> int:
    """Trainable parameter count (what the mmpose model zoo reports as Params)."""
    return sum(p.numel() for p in model.parameters())
