"""What the service may use from ``training`` when official weights cannot be had: converting
an official ``.pth`` and exporting a seeded stand-in. Both need torch (``rtmserve[train]``), so
``training`` is imported when one is first called, never by a plain ``rtmserve serve``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from service.prepare import Fallbacks


def _convert(checkpoint: Path, output: Path, variant: str, input_size: tuple[int, int]) -> None:
    from training.convert import convert_checkpoint_to_onnx

    convert_checkpoint_to_onnx(checkpoint, output, variant, input_size)


def _seeded(variant: str, output: Path, input_size: tuple[int, int]) -> str:
    from training.convert import export_seeded

    return export_seeded(variant, output, input_size)


def training_fallbacks() -> Fallbacks:
    """Both, when torch and the training package are installed; otherwise none (the service
    then says which extra to install)."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("training") is None:
        return Fallbacks()
    return Fallbacks(convert=_convert, seeded_export=_seeded)
