"""Export an RTMO-shaped network (``training.models.rtmo``) to MMDeploy's end-to-end ONNX.

Official RTMO weights cannot be had here; this gives tests and benchmarks a file with the
official I/O signature (``input`` [B,3,640,640] -> ``dets`` [B,N,5], ``keypoints``
[B,N,17,3], NMS inside the graph) and the real network's compute, with seeded weights::

    python -m training.export_rtmo --variant s --seed 0 --output rtmo-s.onnx [--static-batch]

The file is checked against PyTorch (same rows, scores within ``MAX_ABS_DIFF``, pixels
within ``MAX_PIXEL_DIFF``) and
against the serving pipeline's I/O signature.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from service.core.contract import INPUT, ONE_STAGE_OUTPUTS, check_onnx_signature, session
from service.core.specs import OneStageSpec
from training.export import DEFAULT_OPSET, MAX_ABS_DIFF, MAX_IR_VERSION
from training.models.rtmo import INPUT_SIZE, VARIANTS, calibration_pixels, seeded_rtmo

# Boxes and keypoints come out of a deep float32 net and an expectation over bins: PyTorch
# alone moves them by ~0.2 px between thread counts here. A broken export is off by far more.
MAX_PIXEL_DIFF = 1.0


def export_rtmo(model: torch.nn.Module, path: Path, static_batch: bool, meta: dict) -> dict:
    # noise (many detections) and smooth blobs (few or none): both paths of the padding
    pixels = calibration_pixels(torch.Generator().manual_seed(12345))[[0, 2]]
    dummy = pixels[:1]
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model, (dummy,), buf,
            input_names=[INPUT], output_names=list(ONE_STAGE_OUTPUTS),
            opset_version=DEFAULT_OPSET,
            dynamic_axes=None if static_batch else {
                n: {0: "batch"} for n in (INPUT, *ONE_STAGE_OUTPUTS)
            },
            do_constant_folding=True, dynamo=False,
        )  # fmt: skip
    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    proto.producer_name = "rtmserve.training.export_rtmo"
    for key, value in meta.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, str(value)
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())

    x = pixels[:1] if static_batch else pixels
    with torch.no_grad():
        want = [t.numpy() for t in model(x)]
    got = session(path, quiet=True).run(list(ONE_STAGE_OUTPUTS), {INPUT: x.numpy()})
    same_rows = bool(np.array_equal(want[0][..., 4] > 0, got[0][..., 4] > 0))
    scores = [(want[0][..., 4], got[0][..., 4]), (want[1][..., 2], got[1][..., 2])]
    pixels = [(want[0][..., :4], got[0][..., :4]), (want[1][..., :2], got[1][..., :2])]
    diff = lambda pairs: max(float(np.abs(w - g).max()) for w, g in pairs)  # noqa: E731
    return {
        "path": str(path),
        "nodes": len(proto.graph.node),
        "size_bytes": path.stat().st_size,
        "parity_batch": len(x),
        "detections": [int((d[:, 4] > 0).sum()) for d in got[0]],
        "same_rows": same_rows,
        "max_score_diff": diff(scores),
        "max_pixel_diff": diff(pixels),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export_rtmo", description=__doc__)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="s")
    parser.add_argument("--seed", type=int, required=True, help="deterministic random weights")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--static-batch", action="store_true", help="fix the batch axis at 1")
    args = parser.parse_args(argv)
    model = seeded_rtmo(args.variant, args.seed)
    meta = {"variant": f"rtmo-{args.variant}", "seed": args.seed,
            "input_size": f"{INPUT_SIZE}x{INPUT_SIZE}"}  # fmt: skip
    report = export_rtmo(model, args.output, args.static_batch, meta)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    broken = report["max_score_diff"] > MAX_ABS_DIFF or report["max_pixel_diff"] > MAX_PIXEL_DIFF
    if not report["same_rows"] or broken:
        raise SystemExit(f"onnxruntime differs from PyTorch: {report}")
    check_onnx_signature(args.output, OneStageSpec())
    print(f"{args.output}: serving signature OK", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
