"""CSPNeXt backbone (RTMDet / RTMPose), re-implemented without mmcv/mmdet.

The module tree mirrors ``mmdet/models/backbones/cspnext.py`` and the mmcv bricks it uses
(``ConvModule`` -> ``conv``/``bn``, ``DepthwiseSeparableConvModule`` ->
``depthwise_conv``/``pointwise_conv``, ``CSPLayer``, ``CSPNeXtBlock``, ``ChannelAttention``,
``SPPBottleneck``) so that ``state_dict()`` keys are byte-for-byte those of official
OpenMMLab checkpoints and they load with ``strict=True``. Only what inference and
fine-tuning need is kept (no registry, no init_cfg machinery, no frozen stages).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

# in_channels, out_channels, num_blocks, add_identity, use_spp (mmdet ``arch_settings['P5']``)
P5_ARCH: tuple[tuple[int, int, int, bool, bool], ...] = (
    (64, 128, 3, True, False),
    (128, 256, 6, True, False),
    (256, 512, 6, True, False),
    (512, 1024, 3, False, True),
)

# BatchNorm defaults. RTMPose configs use SyncBN with PyTorch defaults; RTMDet configs use
# ``dict(type='BN', momentum=0.03, eps=0.001)``. eps changes the numerics of a loaded
# checkpoint, so it is an explicit argument everywhere instead of a hidden constant.
RTMPOSE_BN_EPS, RTMPOSE_BN_MOMENTUM = 1e-5, 0.1
RTMDET_BN_EPS, RTMDET_BN_MOMENTUM = 1e-3, 0.03


class ConvModule(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + SiLU, named ``conv``/``bn`` like mmcv's ConvModule."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bn_eps: float = RTMPOSE_BN_EPS,
        bn_momentum: float = RTMPOSE_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        # mmcv uses bias='auto': no conv bias when a norm layer follows.
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.activate = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))


class DepthwiseSeparableConvModule(nn.Module):
    """Depthwise kxk ConvModule followed by pointwise 1x1 ConvModule (mmcv naming)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bn_eps: float = RTMPOSE_BN_EPS,
        bn_momentum: float = RTMPOSE_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            padding,
            groups=in_channels,
            bn_eps=bn_eps,
            bn_momentum=bn_momentum,
        )
        self.pointwise_conv = ConvModule(
            in_channels, out_channels, 1, bn_eps=bn_eps, bn_momentum=bn_momentum
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


def _conv(
    use_depthwise: bool,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    padding: int,
    bn_eps: float,
    bn_momentum: float,
) -> nn.Module:
    """mmdet picks the conv type with ``conv = DSConv if use_depthwise else ConvModule``."""
    cls = DepthwiseSeparableConvModule if use_depthwise else ConvModule
    return cls(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding,
        bn_eps=bn_eps,
        bn_momentum=bn_momentum,
    )


class ChannelAttention(nn.Module):
    """Squeeze-excite without reduction: GAP -> 1x1 conv (bias) -> Hardsigmoid -> scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, 1, 0, bias=True)
        self.act = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.act(self.fc(self.global_avgpool(x)))


class CSPNeXtBlock(nn.Module):
    """3x3 conv then depthwise-separable 5x5 conv, with identity when shapes allow."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expansion: float = 0.5,
        add_identity: bool = True,
        use_depthwise: bool = False,
        kernel_size: int = 5,
        bn_eps: float = RTMPOSE_BN_EPS,
        bn_momentum: float = RTMPOSE_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = _conv(use_depthwise, in_channels, hidden, 3, 1, 1, bn_eps, bn_momentum)
        self.conv2 = DepthwiseSeparableConvModule(
            hidden,
            out_channels,
            kernel_size,
            1,
            kernel_size // 2,
            bn_eps=bn_eps,
            bn_momentum=bn_momentum,
        )
        self.add_identity = add_identity and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(nn.Module):
    """Cross Stage Partial layer with CSPNeXt blocks (mmdet ``use_lk_block=True``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: float = 0.5,
        num_blocks: int = 1,
        add_identity: bool = True,
        use_depthwise: bool = False,
        channel_attention: bool = True,
        bn_eps: float = RTMPOSE_BN_EPS,
        bn_momentum: float = RTMPOSE_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        mid = int(out_channels * expand_ratio)
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        self.channel_attention = channel_attention
        self.main_conv = ConvModule(in_channels, mid, 1, **bn)
        self.short_conv = ConvModule(in_channels, mid, 1, **bn)
        self.final_conv = ConvModule(2 * mid, out_channels, 1, **bn)
        self.blocks = nn.Sequential(
            *[
                CSPNeXtBlock(mid, mid, 1.0, add_identity, use_depthwise, **bn)
                for _ in range(num_blocks)
            ]
        )
        if channel_attention:
            self.attention = ChannelAttention(2 * mid)

    def forward(self, x: Tensor) -> Tensor:
        x_short = self.short_conv(x)
        x_main = self.blocks(self.main_conv(x))
        x_final = torch.cat((x_main, x_short), dim=1)
        if self.channel_attention:
            x_final = self.attention(x_final)
        return self.final_conv(x_final)


class SPPBottleneck(nn.Module):
    """SPP: 1x1 halve -> concat(x, maxpool 5/9/13) -> 1x1 (mmdet ``csp_darknet.py``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: Sequence[int] = (5, 9, 13),
        bn_eps: float = RTMPOSE_BN_EPS,
        bn_momentum: float = RTMPOSE_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        mid = in_channels // 2
        self.conv1 = ConvModule(in_channels, mid, 1, bn_eps=bn_eps, bn_momentum=bn_momentum)
        self.poolings = nn.ModuleList(
            [nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2) for k in kernel_sizes]
        )
        self.conv2 = ConvModule(
            mid * (len(kernel_sizes) + 1), out_channels, 1, bn_eps=bn_eps, bn_momentum=bn_momentum
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = torch.cat([x] + [pool(x) for pool in self.poolings], dim=1)
        return self.conv2(x)


class CSPNeXt(nn.Module):
    """CSPNeXt P5 backbone; ``forward`` returns the feature maps listed in ``out_indices``.

    Index 0 is the stem and 1..4 the stages (strides 4, 8, 16, 32), as in mmdet.
    RTMPose uses ``out_indices=(4,)``; RTMDet uses ``(2, 3, 4)``.
    """

    def __init__(
        self,
        deepen_factor: float = 1.0,
        widen_factor: float = 1.0,
        out_indices: Sequence[int] = (2, 3, 4),
        use_depthwise: bool = False,
        expand_ratio: float = 0.5,
        spp_kernel_sizes: Sequence[int] = (5, 9, 13),
        channel_attention: bool = True,
        bn_eps: float = RTMPOSE_BN_EPS,
        bn_momentum: float = RTMPOSE_BN_MOMENTUM,
        arch: Sequence[tuple[int, int, int, bool, bool]] = P5_ARCH,
    ) -> None:
        super().__init__()
        if not set(out_indices) <= set(range(len(arch) + 1)):
            raise ValueError(f"out_indices {tuple(out_indices)} outside 0..{len(arch)}")
        self.out_indices = tuple(out_indices)
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        # Same integer arithmetic as mmdet (``int(c * w // 2)``), which matters for odd widths.
        stem_half = int(arch[0][0] * widen_factor // 2)
        stem_out = int(arch[0][0] * widen_factor)
        self.stem = nn.Sequential(
            ConvModule(3, stem_half, 3, stride=2, padding=1, **bn),
            ConvModule(stem_half, stem_half, 3, stride=1, padding=1, **bn),
            ConvModule(stem_half, stem_out, 3, stride=1, padding=1, **bn),
        )
        self.layers: list[str] = ["stem"]
        for i, (c_in, c_out, n, add_identity, use_spp) in enumerate(arch):
            c_in, c_out = int(c_in * widen_factor), int(c_out * widen_factor)
            num_blocks = max(round(n * deepen_factor), 1)
            stage: list[nn.Module] = [
                _conv(use_depthwise, c_in, c_out, 3, 2, 1, bn_eps, bn_momentum)
            ]
            if use_spp:
                stage.append(SPPBottleneck(c_out, c_out, spp_kernel_sizes, **bn))
            stage.append(
                CSPLayer(
                    c_out,
                    c_out,
                    expand_ratio,
                    num_blocks,
                    add_identity,
                    use_depthwise,
                    channel_attention,
                    **bn,
                )
            )
            self.add_module(f"stage{i + 1}", nn.Sequential(*stage))
            self.layers.append(f"stage{i + 1}")
        self.out_channels: tuple[int, ...] = tuple(
            stem_out if i == 0 else int(arch[i - 1][1] * widen_factor) for i in self.out_indices
        )

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outs: list[Tensor] = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
