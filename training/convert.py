"""Official RTMPose ``.pth`` checkpoints -> ONNX, and seeded stand-ins: what ``rtmserve``'s
command line hands to ``service.models.pull`` (``convert``) and ``service.prepare``
(``seeded_export``), so that serving never imports torch itself."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
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
    load_official_state_dict(model, load_weights(Path(checkpoint)))
    export_onnx(model.eval(), str(output), input_size)


class UnsafeCheckpoint(ValueError):
    """A checkpoint that needs more than tensors and plain data to load: refused unread (a
    pickle can run any code while it loads, and a file's 8-hex name tag is no proof of
    origin)."""


def _numpy_globals() -> list[Any]:
    """What OpenMMLab checkpoints hold besides tensors: numpy arrays and scalars in
    ``meta['dataset_meta']`` (sigmas, keypoint colours and weights). Named as numpy 1.x
    (``numpy.core``) and 2.x (``numpy._core``) pickle them; none of them runs code."""
    try:
        from numpy._core import multiarray  # numpy 2 (1.26 has it as an alias)
    except ImportError:
        from numpy.core import multiarray
    named: list[Any] = []
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        named += [(multiarray._reconstruct, f"{module}._reconstruct")]
        named += [(multiarray.scalar, f"{module}.scalar")]
    kinds = "?bBhHiIlLqQefdgFDG"  # bool, the integers, the floats and the complex numbers
    dtypes = {type(np.dtype(k)) for k in kinds}
    return [*named, np.ndarray, np.dtype, *sorted(dtypes, key=lambda t: t.__name__)]


def load_weights(path: Path) -> Any:
    """Tensors, containers, plain data and numpy arrays only (``weights_only``): anything else
    is refused before any of it is built, whoever made the file."""
    with torch.serialization.safe_globals(_numpy_globals()):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            why = [ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln][:1]
            try:  # name what it wanted, without loading it
                wanted = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            except Exception:
                wanted = []
            extra = f" (it needs {', '.join(wanted[:10])})" if wanted else ""
            raise UnsafeCheckpoint(
                f"{path.name} holds objects other than tensors, plain data and numpy arrays"
                f"{extra}; refused without loading them: a checkpoint's pickle can run code. "
                f"Save only its state_dict with a trusted tool, or import its ONNX. {''.join(why)}"
            ) from None


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
