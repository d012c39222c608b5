"""Official RTMPose ``.pth`` checkpoints -> ONNX, and seeded stand-ins: what ``rtmserve``'s
command line hands to ``service.models.pull`` (``convert``) and ``service.prepare``
(``seeded_export``), so that serving never imports torch itself."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from training.export import export_onnx
from training.models.rtmpose import build_rtmpose, load_official_state_dict, seeded_rtmpose

SEEDED_SEED = 0


def convert_checkpoint_to_onnx(
    checkpoint: Path, output: Path, variant: str, input_size: tuple[int, int]
) -> None:
    """Rebuild RTMPose-``variant``, load the official weights, export ONNX to ``output``.

    ``input_size`` is (width, height) like the specs. The caller checks the result's signature
    (``simcc_x``/``simcc_y`` bins), which also catches a width/height swap.
    """
    model = build_rtmpose(variant, input_size)
    load_official_state_dict(model, _load_checkpoint(Path(checkpoint)))
    export_onnx(model.eval(), str(output), input_size)


def _load_checkpoint(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # mmengine checkpoints keep numpy arrays in ``meta`` (dataset sigmas), which the safe
        # loader refuses. Only official files reach this point: the caller has matched the
        # file against the sha256 prefix in OpenMMLab's published file name.
        return torch.load(path, map_location="cpu", weights_only=False)


def export_seeded(
    variant: str, output: Path, input_size: tuple[int, int], seed: int = SEEDED_SEED
) -> str:
    """Export an RTMPose-``variant`` with deterministic random weights; returns what it is.

    What it predicts is meaningless; it exists so the whole service runs, with the real compute
    cost, before trained weights are available, and is always labelled untrained.
    """
    model = seeded_rtmpose(variant, seed, input_size)
    export_onnx(model, str(output), input_size, metadata={"rtmserve.untrained_seed": str(seed)})
    return f"seeded random weights (training.models.rtmpose, variant {variant}, seed {seed})"
