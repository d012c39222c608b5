"""Optimiser, learning-rate schedule and EMA of the RTMPose recipe (mmpose configs).

- AdamW, weight decay 0.05, none on norm layers and biases;
- linear warm-up from 1e-5 x lr, flat until half the epochs, then cosine down to 5 % of lr;
- EMA of the weights and buffers (mmdet ``ExpMomentumEMA``: momentum 0.0002 that starts
  large and decays with gamma 2000), which is what gets evaluated and exported.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.05) -> torch.optim.AdamW:
    decay, no_decay = [], []
    norm_types = (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
    norm_params = {
        id(p) for m in model.modules() if isinstance(m, norm_types) for p in m.parameters()
    }
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # biases, BN affine and the scalar/vector gains of ScaleNorm/Scale: no decay
        if id(p) in norm_params or name.endswith(".bias") or p.ndim <= 1:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


def lr_factor(iteration: int, iters_per_epoch: int, epochs: int, warmup_iters: int) -> float:
    """Multiplier of the base lr at a global iteration (warm-up, flat, cosine to 0.05)."""
    if iteration < warmup_iters:
        start = 1e-5
        return start + (1 - start) * iteration / warmup_iters
    epoch = iteration / iters_per_epoch
    flat_until = epochs / 2
    if epoch < flat_until:
        return 1.0
    progress = min(1.0, (epoch - flat_until) / max(epochs - flat_until, 1e-9))
    eta_min = 0.05
    return eta_min + (1 - eta_min) * 0.5 * (1 + math.cos(math.pi * progress))


class ModelEMA:
    """Exponential moving average of every parameter and buffer."""

    def __init__(self, model: nn.Module, momentum: float = 0.0002, gamma: int = 2000) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.momentum = momentum
        self.gamma = gamma
        self.steps = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        m = (1 - self.momentum) * math.exp(-(1 + self.steps) / self.gamma) + self.momentum
        source = model.state_dict()
        for name, value in self.module.state_dict().items():
            src = source[name]
            if value.dtype.is_floating_point:
                value.mul_(1 - m).add_(src.detach(), alpha=m)
            else:
                value.copy_(src)
        self.steps += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.steps = state["steps"]
