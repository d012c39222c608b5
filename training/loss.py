"""KL-divergence SimCC loss (mmpose ``KLDiscretLoss``, beta 10, label softmax, target weight).

Both the prediction and the Gaussian label become distributions through a softmax at
temperature 1/beta; the per-bin KL divergence is averaged over bins, weighted per keypoint
(0 for unlabelled keypoints), summed over the batch and divided by the keypoint count.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def kl_discrete_loss(
    pred: tuple[Tensor, Tensor],
    target: tuple[Tensor, Tensor],
    weight: Tensor,
    beta: float = 10.0,
) -> Tensor:
    num_keypoints = pred[0].shape[1]
    w = weight.reshape(-1)
    loss = pred[0].new_zeros(())
    for p, t in zip(pred, target, strict=True):
        log_p = F.log_softmax(p.reshape(-1, p.shape[-1]).float() * beta, dim=1)
        q = F.softmax(t.reshape(-1, t.shape[-1]).float() * beta, dim=1)
        per_keypoint = F.kl_div(log_p, q, reduction="none").mean(dim=1)
        loss = loss + (per_keypoint * w).sum()
    return loss / num_keypoints
