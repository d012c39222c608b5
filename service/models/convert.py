"""The one place that turns an official RTMPose ``.pth`` checkpoint into ONNX.

The network definition and exporter live in the ``training`` package (torch); the serving install
does not carry torch, so everything here is imported lazily and a missing dependency becomes a
clear :class:`ConversionUnavailable` instead of an ImportError deep in a pull.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

TRAIN_EXTRA_HINT = "pip install 'rtmserve[train]'"


class ConversionUnavailable(RuntimeError):
    """A .pth checkpoint must be converted, but torch / the training package is not installed."""


def ensure_converter_available() -> None:
    """Fail before downloading a checkpoint that could not be converted anyway."""
    if importlib.util.find_spec("torch") is None:
        raise ConversionUnavailable(
            "this model is published as a PyTorch checkpoint (.pth) and must be converted to "
            f"ONNX, which needs torch: {TRAIN_EXTRA_HINT}"
        )


def convert_checkpoint_to_onnx(
    checkpoint: str | Path, output: str | Path, variant: str, input_size: tuple[int, int]
) -> None:
    """Rebuild RTMPose-``variant``, load the official weights, export ONNX to ``output``.

    ``input_size`` is (width, height) like the specs. The caller checks the result's signature
    (``simcc_x``/``simcc_y`` bins), which also catches a width/height swap.
    """
    ensure_converter_available()
    try:
        from training.export import export_onnx
        from training.models.rtmpose import build_rtmpose, load_official_state_dict
    except ImportError as exc:
        raise ConversionUnavailable(
            f"cannot convert {Path(checkpoint).name}: the rtmserve training package is not "
            f"importable ({exc}); {TRAIN_EXTRA_HINT}"
        ) from exc
    ckpt = _load_checkpoint(Path(checkpoint))
    model = build_rtmpose(variant, input_size)
    load_official_state_dict(model, ckpt)
    model.eval()
    export_onnx(model, str(output), input_size)


def _load_checkpoint(path: Path) -> Any:
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # mmengine checkpoints keep numpy arrays in ``meta`` (dataset sigmas), which the safe
        # loader refuses. Only official files reach this point: the caller has matched the
        # file against the sha256 prefix in OpenMMLab's published file name.
        return torch.load(path, map_location="cpu", weights_only=False)


SEEDED_SEED = 0


def export_seeded(
    variant: str, output: str | Path, input_size: tuple[int, int], seed: int = SEEDED_SEED
) -> None:
    """Export an RTMPose-``variant`` with deterministic random weights (no trained weights here).

    What it predicts is meaningless; it exists so the whole service runs, with the real compute
    cost, before trained weights are available, and is always labelled untrained.
    """
    ensure_converter_available()
    from training.export import export_onnx
    from training.models.rtmpose import seeded_rtmpose

    model = seeded_rtmpose(variant, seed, input_size)
    export_onnx(model, str(output), input_size, metadata={"rtmserve.untrained_seed": str(seed)})
