"""RTMO (one-stage multi-person pose), shaped as mmpose's, with MMDeploy's end-to-end outputs.

Official RTMO weights cannot be had here, so this module builds the network the official
configs describe (``configs/body_2d_keypoint/rtmo``: CSPDarknet backbone, HybridEncoder neck,
RTMOHead with its dynamic coordinate classifier) to give exports the real model's compute and
the MMDeploy export's I/O contract: ``input`` [B,3,640,640] raw BGR pixels (mean 0, std 1) ->
``dets`` [B,N,5] (x1, y1, x2, y2, score, in input pixels, by descending score) and
``keypoints`` [B,N,17,3] (x, y, visibility score). Like MMDeploy's rewritten head, the graph
decodes boxes at the 2000 priors, runs ONNX ``NonMaxSuppression`` (score 0.1, IoU 0.65, the
RTMO test_cfg) and decodes keypoints for the kept boxes only. It keeps N = 50 rows per image
(MMDeploy's ``keep_top_k``); rows beyond the detections have score 0, as in MMDeploy's
TensorRT export. Module names follow mmpose where it costs nothing; loading official
checkpoints is not a goal here (``training/models/rtmpose.py`` does that for RTMPose).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from training.models.cspnext import RTMDET_BN_EPS, RTMDET_BN_MOMENTUM, SPPBottleneck
from training.models.rtmpose import RTMCCBlock

INPUT_SIZE = 640
STRIDES = (16, 32)
NUM_KEYPOINTS = 17
SCORE_THR, NMS_THR = 0.1, 0.65  # mmpose RTMO test_cfg, which MMDeploy's export bakes in
MAX_PER_CLASS, KEEP_TOP_K = 200, 50  # MMDeploy post_processing
BBOX_PADDING = 1.25
BINS = (192, 256)  # DCC bins along x and y
BN = {"bn_eps": RTMDET_BN_EPS, "bn_momentum": RTMDET_BN_MOMENTUM}
# in, out, blocks, identity, spp (mmdet CSPDarknet ``arch_settings['P5']``)
DARKNET_P5 = (
    (64, 128, 3, True, False),
    (128, 256, 9, True, False),
    (256, 512, 9, True, False),
    (512, 1024, 3, False, True),
)


@dataclass(frozen=True)
class RTMOVariant:
    deepen_factor: float
    widen_factor: float
    neck_out: int  # ChannelMapper channels = the head's input (split in half: cls | pose)
    pose_vec: int


VARIANTS = {
    "s": RTMOVariant(0.33, 0.5, 256, 256),
    "m": RTMOVariant(0.67, 0.75, 384, 384),
    "l": RTMOVariant(1.0, 1.0, 512, 512),
}


class ConvModule(nn.Module):
    """Conv (no bias) + BN (+ SiLU), mmcv naming; ``act=False`` for RepVGG branches."""

    def __init__(self, cin, cout, k, stride=1, groups=1, act=True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN["bn_eps"], momentum=BN["bn_momentum"])
        self.activate = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))


class Focus(nn.Module):
    """Space-to-depth then a conv (mmdet's CSPDarknet stem)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvModule(cin * 4, cout, 3)

    def forward(self, x: Tensor) -> Tensor:
        tl, tr = x[..., ::2, ::2], x[..., ::2, 1::2]
        bl, br = x[..., 1::2, ::2], x[..., 1::2, 1::2]
        return self.conv(torch.cat((tl, bl, tr, br), dim=1))


class DarknetBottleneck(nn.Module):
    def __init__(self, channels: int, add_identity: bool) -> None:
        super().__init__()
        self.conv1 = ConvModule(channels, channels, 1)
        self.conv2 = ConvModule(channels, channels, 3)
        self.add_identity = add_identity

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(nn.Module):
    def __init__(self, cin: int, cout: int, blocks: int, add_identity: bool) -> None:
        super().__init__()
        mid = cout // 2
        self.main_conv = ConvModule(cin, mid, 1)
        self.short_conv = ConvModule(cin, mid, 1)
        self.final_conv = ConvModule(2 * mid, cout, 1)
        self.blocks = nn.Sequential(*[DarknetBottleneck(mid, add_identity) for _ in range(blocks)])

    def forward(self, x: Tensor) -> Tensor:
        return self.final_conv(torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), 1))


class CSPDarknet(nn.Module):
    """Strides 8, 16 and 32 out (``out_indices=(2, 3, 4)``)."""

    def __init__(self, deepen: float, widen: float) -> None:
        super().__init__()
        self.stem = Focus(3, int(64 * widen))
        self.stages = nn.ModuleList()
        self.out_channels = []
        for cin, cout, n, identity, spp in DARKNET_P5:
            cin, cout = int(cin * widen), int(cout * widen)
            layers: list[nn.Module] = [ConvModule(cin, cout, 3, stride=2)]
            if spp:
                layers.append(SPPBottleneck(cout, cout, **BN))
            layers.append(CSPLayer(cout, cout, max(round(n * deepen), 1), identity))
            self.stages.append(nn.Sequential(*layers))
            self.out_channels.append(cout)
        self.out_channels = self.out_channels[1:]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 1:
                outs.append(x)
        return outs


class RepVGGBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvModule(channels, channels, 3, act=False)
        self.conv2 = ConvModule(channels, channels, 1, act=False)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv1(x) + self.conv2(x))


class CSPRepLayer(nn.Module):
    def __init__(self, cin: int, cout: int, blocks: int, expansion: float) -> None:
        super().__init__()
        hidden = int(cout * expansion)
        self.conv1 = ConvModule(cin, hidden, 1)
        self.conv2 = ConvModule(cin, hidden, 1)
        self.bottlenecks = nn.Sequential(*[RepVGGBlock(hidden) for _ in range(blocks)])
        self.conv3 = ConvModule(hidden, cout, 1) if hidden != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (mmdet's DetrTransformerEncoderLayer)."""

    def __init__(self, dims: int = 256, heads: int = 8, ffn: int = 1024) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dims, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dims)
        self.ffn = nn.Sequential(nn.Linear(dims, ffn), nn.GELU(), nn.Linear(ffn, dims))
        self.norm2 = nn.LayerNorm(dims)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        q = x + pos
        x = self.norm1(x + self.self_attn(q, q, x, need_weights=False)[0])
        return self.norm2(x + self.ffn(x))


def sincos_2d(w: int, h: int, dims: int, temperature: float = 10000.0) -> Tensor:
    gw, gh = torch.meshgrid(torch.arange(w, dtype=torch.float32),
                            torch.arange(h, dtype=torch.float32), indexing="ij")  # fmt: skip
    omega = 1.0 / temperature ** (torch.arange(dims // 4, dtype=torch.float32) / (dims // 4))
    ow, oh = gw.flatten()[:, None] * omega, gh.flatten()[:, None] * omega
    return torch.cat([ow.sin(), ow.cos(), oh.sin(), oh.cos()], 1)[None]


class HybridEncoder(nn.Module):
    """RT-DETR's encoder as RTMO uses it: attention on stride 32, then FPN + PAN (CCFF)."""

    def __init__(self, in_channels: list[int], deepen: float, widen: float, out: int) -> None:
        super().__init__()
        hidden, n = 256, len(in_channels)
        self.input_proj = nn.ModuleList([ConvModule(c, hidden, 1, act=False) for c in in_channels])
        self.encoder = EncoderLayer(hidden)
        blocks = round(3 * deepen)
        self.lateral_convs = nn.ModuleList([ConvModule(hidden, hidden, 1) for _ in range(n - 1)])
        self.fpn_blocks = nn.ModuleList(
            [CSPRepLayer(2 * hidden, hidden, blocks, widen) for _ in range(n - 1)]
        )
        self.downsample_convs = nn.ModuleList(
            [ConvModule(hidden, hidden, 3, stride=2) for _ in range(n - 1)]
        )
        self.pan_blocks = nn.ModuleList(
            [CSPRepLayer(2 * hidden, hidden, blocks, widen) for _ in range(n - 1)]
        )
        self.projector = nn.ModuleList([ConvModule(hidden, out, 1, act=False) for _ in range(2)])

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        proj = [p(f) for p, f in zip(self.input_proj, feats, strict=True)]
        b, c, h, w = proj[-1].shape
        tokens = proj[-1].flatten(2).permute(0, 2, 1)
        tokens = self.encoder(tokens, sincos_2d(w, h, c).to(tokens.dtype))
        proj[-1] = tokens.permute(0, 2, 1).reshape(b, c, h, w)
        inner = [proj[-1]]
        for k, idx in enumerate(range(len(proj) - 1, 0, -1)):  # top-down
            high = self.lateral_convs[k](inner[0])
            inner[0] = high
            up = nn.functional.interpolate(high, scale_factor=2.0, mode="nearest")
            inner.insert(0, self.fpn_blocks[k](torch.cat([up, proj[idx - 1]], 1)))
        outs = [inner[0]]
        for k in range(len(proj) - 1):  # bottom-up
            down = self.downsample_convs[k](outs[-1])
            outs.append(self.pan_blocks[k](torch.cat([down, inner[k + 1]], 1)))
        return [p(o) for p, o in zip(self.projector, outs[1:], strict=True)]  # strides 16, 32


class HeadLevel(nn.Module):
    """One level of RTMOHeadModule: the input split in half, a cls and a pose branch."""

    def __init__(self, cin: int, widen: float, pose_vec: int) -> None:
        super().__init__()
        half, pose_w = cin // 2, 8 * int(36 * widen)
        self.conv_cls = nn.Sequential(ConvModule(half, half, 3), ConvModule(half, half, 3))
        self.out_cls = nn.Conv2d(half, 1, 1)
        convs = [ConvModule(half, pose_w, 3)] + [ConvModule(pose_w, pose_w, 3, groups=8)
                                                 for _ in range(3)]  # fmt: skip
        self.conv_pose = nn.Sequential(*convs)
        self.out_bbox = nn.Conv2d(pose_w, 4, 1)
        self.out_kpt_vis = nn.Conv2d(pose_w, NUM_KEYPOINTS, 1)
        self.out_pose = nn.Conv2d(pose_w, pose_vec, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        cls_feat, pose_feat = x.chunk(2, 1)
        pose_feat = self.conv_pose(pose_feat)
        return (self.out_cls(self.conv_cls(cls_feat)), self.out_bbox(pose_feat),
                self.out_kpt_vis(pose_feat), self.out_pose(pose_feat))  # fmt: skip


def sine_encoding(x: Tensor, dims: int = 128, temperature: float = 300.0) -> Tensor:
    """[..., n] -> [..., n, dims]: sin and cos of x at dims/2 frequencies."""
    freq = temperature ** (2 * (torch.arange(dims // 2, dtype=torch.float32) / dims))
    angles = x[..., None] / freq.to(x.dtype)
    return torch.cat([angles.sin(), angles.cos()], -1)


class DCC(nn.Module):
    """Dynamic coordinate classifier: per keypoint, a distribution over bins spanning the
    padded box, read as its expectation."""

    def __init__(self, pose_vec: int, feat: int = 128) -> None:
        super().__init__()
        self.feat = feat
        self.pose_to_kpts = nn.Sequential(
            nn.Linear(pose_vec, NUM_KEYPOINTS * feat), nn.BatchNorm1d(NUM_KEYPOINTS * feat)
        )
        self.pos_enc = nn.Parameter(torch.zeros(NUM_KEYPOINTS, feat))
        self.gau = RTMCCBlock(NUM_KEYPOINTS, feat, feat, expansion_factor=2, s=128)
        self.x_fc, self.y_fc = nn.Linear(feat, feat), nn.Linear(feat, feat)
        self.register_buffer("x_bins", torch.linspace(-0.5, 0.5, BINS[0]), persistent=False)
        self.register_buffer("y_bins", torch.linspace(-0.5, 0.5, BINS[1]), persistent=False)

    def logits(
        self, pose_vecs: Tensor, boxes: Tensor, grids: Tensor
    ) -> list[tuple[Tensor, Tensor]]:
        """Per axis: bin positions relative to the grid [M,bins] and logits [M,17,bins]."""
        feats = self.pose_to_kpts(pose_vecs).reshape(-1, NUM_KEYPOINTS, self.feat)
        feats = self.gau(feats + self.pos_enc)
        center = (boxes[:, :2] + boxes[:, 2:]) / 2
        size = (boxes[:, 2:] - boxes[:, :2]) * BBOX_PADDING
        out = []
        for axis, bins, fc in ((0, self.x_bins, self.x_fc), (1, self.y_bins, self.y_fc)):
            pos = bins[None] * size[:, axis : axis + 1] + (center - grids)[:, axis : axis + 1]
            enc = fc(sine_encoding(pos, self.feat))  # [M, bins, feat]
            out.append((pos, torch.bmm(feats, enc.transpose(1, 2)).clamp(-5e4, 5e4)))
        return out

    def forward(self, pose_vecs: Tensor, boxes: Tensor, grids: Tensor) -> Tensor:
        """pose_vecs [M,C], boxes [M,4] xyxy, grids [M,2] -> keypoints [M,17,2]."""
        coords = []
        for axis, (pos, logits) in enumerate(self.logits(pose_vecs, boxes, grids)):
            prob = torch.softmax(logits, -1)
            coords.append((prob * pos[:, None, :]).sum(-1) + grids[:, None, axis])
        return torch.stack(coords, -1)


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` in the graph; eager: the same rule (score > thr, suppress
    IoU > thr, per image, by descending score) for tracing and the parity check."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor) -> Tensor:  # [B,N,4], [B,1,N] -> [K,3]
        rows = []
        for b in range(boxes.shape[0]):
            s = scores[b, 0]
            keep: list[int] = []
            for i in torch.argsort(s, descending=True).tolist():
                if s[i] <= SCORE_THR or len(keep) == MAX_PER_CLASS:
                    break
                if not keep or float(box_iou(boxes[b, i : i + 1], boxes[b, keep]).max()) <= NMS_THR:
                    keep.append(i)
            rows += [[b, 0, i] for i in keep]
        return torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)

    @staticmethod
    def symbolic(g, boxes, scores):
        const = lambda v, dt: g.op("Constant", value_t=torch.tensor([v], dtype=dt))  # noqa: E731
        return g.op("NonMaxSuppression", boxes, scores, const(MAX_PER_CLASS, torch.int64),
                    const(NMS_THR, torch.float32), const(SCORE_THR, torch.float32))  # fmt: skip


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter).clamp(min=1e-9)


def priors(size: int = INPUT_SIZE) -> tuple[Tensor, Tensor]:
    """Prior centres ``i * stride + (stride - 1) / 2``, level by level, row-major; strides."""
    points, strides = [], []
    for s in STRIDES:
        n = size // s
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        points.append(torch.stack([xs, ys], -1).reshape(-1, 2).float() * s + (s - 1) / 2)
        strides.append(torch.full((n * n,), float(s)))
    return torch.cat(points), torch.cat(strides)


class RTMO(nn.Module):
    def __init__(self, variant: str) -> None:
        super().__init__()
        v = VARIANTS[variant]
        self.input_size = (INPUT_SIZE, INPUT_SIZE)
        self.backbone = CSPDarknet(v.deepen_factor, v.widen_factor)
        self.neck = HybridEncoder(self.backbone.out_channels, v.deepen_factor, v.widen_factor,
                                  v.neck_out)  # fmt: skip
        self.head = nn.ModuleList([HeadLevel(v.neck_out, v.widen_factor, v.pose_vec)
                                   for _ in STRIDES])  # fmt: skip
        self.dcc = DCC(v.pose_vec)
        points, strides = priors()
        self.register_buffer("priors", points, persistent=False)
        self.register_buffer("strides", strides, persistent=False)

    def raw(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per prior: boxes [B,P,4] xyxy, scores [B,P,1], keypoint scores [B,P,17], pose
        vectors [B,P,C]."""
        levels = [h(f) for h, f in zip(self.head, self.neck(self.backbone(x)), strict=True)]
        flat = [torch.cat([lv[i].flatten(2) for lv in levels], 2).permute(0, 2, 1)
                for i in range(4)]  # fmt: skip
        cls, bbox, vis, pose = flat
        stride = self.strides[None, :, None]
        xy = bbox[..., :2] * stride + self.priors
        wh = bbox[..., 2:].exp() * stride
        boxes = torch.cat([xy - wh / 2, xy + wh / 2], -1)
        return boxes, cls.sigmoid(), vis.sigmoid(), pose

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        boxes, scores, vis, pose = self.raw(x)
        selected = _NonMaxSuppression.apply(boxes, scores.permute(0, 2, 1))
        b, i = selected[:, 0], selected[:, 2]
        batch = boxes.shape[0]
        # the kept rows plus KEEP_TOP_K empty ones, so every image has KEEP_TOP_K to take
        pad = lambda t: torch.cat([t, t.new_zeros((KEEP_TOP_K, *t.shape[1:]))])  # noqa: E731
        dets = pad(torch.cat([boxes, scores], -1)[b, i])
        owner = torch.cat([b, b.new_full((KEEP_TOP_K,), -1)])
        mine = owner[None, :] == torch.arange(batch, device=b.device)[:, None]
        rank = torch.where(mine, dets[:, 4][None, :], dets.new_full((1,), -1.0))
        top, idx = rank.topk(KEEP_TOP_K, dim=1)  # [B, KEEP]
        valid = (top > 0).to(dets.dtype)[..., None]
        out_dets = dets[idx] * valid
        grids = pad(self.priors[i])[idx].reshape(-1, 2)
        kpts = self.dcc(pad(pose[b, i])[idx].reshape(-1, pose.shape[-1]),
                        out_dets[..., :4].reshape(-1, 4), grids)  # fmt: skip
        kpts = kpts.reshape(batch, KEEP_TOP_K, NUM_KEYPOINTS, 2)
        kpt_scores = pad(vis[b, i])[idx][..., None]
        return out_dets, torch.cat([kpts, kpt_scores], -1) * valid[..., None]


def calibration_pixels(gen: torch.Generator) -> Tensor:
    """Pixel-like inputs of several textures (smooth blobs at three scales and noise): BN
    statistics and the head's calibration hold for photos, not only for one texture."""
    images = [torch.rand(1, 3, INPUT_SIZE, INPUT_SIZE, generator=gen) * 255]
    for cells in (5, 20, 80):
        small = torch.rand(1, 3, cells, cells, generator=gen) * 255
        images.append(nn.functional.interpolate(small, size=(INPUT_SIZE, INPUT_SIZE),
                                                mode="bilinear"))  # fmt: skip
    return torch.cat(images).round()


@torch.no_grad()
def seeded_rtmo(variant: str, seed: int, detections: float = 0.002) -> RTMO:
    """Deterministic random weights that behave like a trained net's: BN statistics measured
    on pixel-like input, box offsets and log-sizes of about half a stride, and the score layer
    biased so that about ``detections`` of the priors score above the threshold (a handful of
    people per image, not 2000)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RTMO(variant)
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d)]
        for bn in bns:
            bn.weight.uniform_(0.25, 0.75)
            bn.bias.normal_(0.0, 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # a cumulative average over the calibration passes
        calib = calibration_pixels(torch.Generator().manual_seed(seed))
        model.train()
        for image in calib:  # one texture per pass: per-image statistics, averaged
            pose = model.raw(image[None])[3]
            model.dcc.pose_to_kpts(pose.reshape(-1, pose.shape[-1])[:2048])
        model.eval()
        for bn in bns:
            bn.momentum = RTMDET_BN_MOMENTUM
        feats = model.neck(model.backbone(calib))
        for level, feat in zip(model.head, feats, strict=True):
            pose_feat = level.conv_pose(feat.chunk(2, 1)[1])
            raw = level.out_bbox(pose_feat).transpose(0, 1).flatten(1)  # [4, everything]
            gain = 0.5 / raw.std(1).clamp(min=1e-6)
            level.out_bbox.weight.mul_(gain[:, None, None, None])
            level.out_bbox.bias.copy_(-raw.mean(1) * gain)
            level.out_bbox.bias[2:] += math.log(4.0)  # boxes of about four strides
        boxes, scores, _, pose = model.raw(calib)
        sample = torch.argsort(scores.flatten(), descending=True)[:256]  # the likely detections
        grids = model.priors.repeat(len(calib), 1)[sample]
        args = pose.flatten(0, 1)[sample], boxes.flatten(0, 1)[sample], grids
        for fc, (_, logits) in zip((model.dcc.x_fc, model.dcc.y_fc), model.dcc.logits(*args),
                                   strict=True):  # fmt: skip
            fc.weight.mul_(3.0 / logits.std())  # soft distributions over the bins, as trained
            fc.bias.mul_(3.0 / logits.std())
        logits = torch.logit(scores.clamp(1e-6, 1 - 1e-6)).flatten()
        cut = torch.quantile(logits, 1 - detections)
        for level in model.head:
            level.out_cls.bias.add_(math.log(SCORE_THR / (1 - SCORE_THR)) - cut)
    return model.eval()
