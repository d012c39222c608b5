"""Export RTMPose to an mmdeploy-compatible ONNX file (``end2end.onnx``).

Contract (what mmdeploy's SDK and our Triton model expect): input ``input`` float32
``(N,3,H,W)``, outputs ``simcc_x (N,K,2W)`` and ``simcc_y (N,K,2H)``, only the batch axis
dynamic. The file must also open in the onnxruntime 1.15.1 bundled in ``mmdeploy_runtime``,
hence opset <= 17 and IR version <= 8.

Exporter choice: torch 2.13 defaults to the torch.export ("dynamo") exporter, which needs
the extra ``onnxscript`` package and targets opset >= 18. The legacy TorchScript exporter
(``dynamo=False``) is still shipped (it only emits a DeprecationWarning), folds BatchNorm
into the convolutions and yields a ~260-node graph at opset 17 / IR 8, so it is used here.

CLI::

    python -m training.export --variant m --seed 0 --output rtmpose-m.onnx
    python -m training.export --checkpoint rtmpose-m.pth --output end2end.onnx
    python -m training.export --run runs/NAME/best.pth --output model.onnx   # our training run

A run checkpoint exports its EMA weights and records the run's config, the git commit and the
checkpoint in the ONNX ``metadata_props`` (registration copies them into the version's
metadata). Every export is checked against PyTorch (max abs difference, bounded) and against
the serving pipeline's I/O signature.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from service.core.contract import INPUT, POSE_OUTPUTS, check_onnx_signature
from service.core.keypoints import COCO, KeypointSet, keypoint_set, keypoint_sets
from service.core.specs import PoseSpec
from training.models.rtmpose import (
    DEFAULT_INPUT_SIZE,
    VARIANTS,
    build_rtmpose,
    infer_build_args,
    load_official_state_dict,
    seeded_rtmpose,
)

DEFAULT_OPSET = 17
MAX_OPSET = 17  # newest opset the onnxruntime 1.15.1 inside mmdeploy_runtime is used with here
MAX_IR_VERSION = 8  # onnx 1.13-1.14 era; ORT 1.15 reads IR <= 9, 8 leaves margin
MAX_ABS_DIFF = 1e-3  # ORT vs PyTorch on the same batch; larger means a broken export


@dataclass(frozen=True)
class ExportReport:
    """What was written and how closely onnxruntime reproduces PyTorch."""

    path: str
    exporter: str
    opset: int
    ir_version: int
    num_nodes: int
    size_bytes: int
    input_shape: tuple[str | int, ...]
    output_shapes: dict[str, tuple[str | int, ...]]
    parity_batch: int
    max_abs_diff: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dims(value_info: onnx.ValueInfoProto) -> tuple[str | int, ...]:
    return tuple(d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim)


def _set_static_output_dims(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> None:
    """Replace the exporter's made-up symbolic dims (e.g. ``MatMulsimcc_x_dim_1``) on K and
    the SimCC bins with their real sizes, keeping only the batch axis symbolic."""
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        for i, size in enumerate(shapes[out.name][1:], start=1):
            dims[i].Clear()
            dims[i].dim_value = size


def _ort_run(model_bytes: bytes, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    return sess.run(list(POSE_OUTPUTS), {INPUT: x})


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    parity_batch: int = 2,
    metadata: dict[str, str] | None = None,
    static_batch: bool = False,
) -> ExportReport:
    """Export ``model`` (eval mode) to ``path`` and check it against PyTorch with ORT.

    ``input_size`` is ``(w, h)``; by default the model's own ``input_size`` attribute.
    ``metadata`` is stored as ONNX ``metadata_props`` (provenance: variant, seed, ckpt).
    ``static_batch``: the batch axis fixed at 1, as some official SDK exports are.
    """
    if not 7 <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be in 7..{MAX_OPSET} for mmdeploy's ORT 1.15, got {opset}")
    w, h = input_size or getattr(model, "input_size", DEFAULT_INPUT_SIZE)
    model = model.eval()
    gen = torch.Generator().manual_seed(0)
    dummy = torch.randn(1, 3, h, w, generator=gen)

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # "You are using the legacy TorchScript-based ONNX export": a deliberate choice.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (dummy,),
            buf,
            input_names=[INPUT],
            output_names=list(POSE_OUTPUTS),
            opset_version=opset,
            dynamic_axes=None
            if static_batch
            else {name: {0: "batch"} for name in (INPUT, *POSE_OUTPUTS)},
            do_constant_folding=True,
            export_params=True,
            keep_initializers_as_inputs=False,
            dynamo=False,
        )
        ref_one = model(dummy)

    proto = onnx.load_from_string(buf.getvalue())
    _set_static_output_dims(
        proto, {n: tuple(t.shape) for n, t in zip(POSE_OUTPUTS, ref_one, strict=True)}
    )
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    proto.producer_name = "rtmserve.training.export"
    for key, value in (metadata or {}).items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, str(value)
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()

    parity_batch = 1 if static_batch else parity_batch
    x = torch.randn(parity_batch, 3, h, w, generator=gen)
    with torch.no_grad():
        expected = [t.numpy() for t in model(x)]
    got = _ort_run(data, x.numpy())
    max_diff = max(float(np.abs(e - g).max()) for e, g in zip(expected, got, strict=True))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return ExportReport(
        path=str(path),
        exporter="torchscript (torch.onnx.export dynamo=False)",
        opset=opset,
        ir_version=proto.ir_version,
        num_nodes=len(proto.graph.node),
        size_bytes=len(data),
        input_shape=_dims(proto.graph.input[0]),
        output_shapes={o.name: _dims(o) for o in proto.graph.output},
        parity_batch=parity_batch,
        max_abs_diff=max_diff,
    )


def load_checkpoint(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """Load a ``.pth`` safely (``weights_only``); ``trust`` allows full unpickling.

    mmpose training checkpoints can carry non-tensor ``meta`` objects that the safe loader
    refuses; only unpickle those for files from a trusted source.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if not trust:
            raise SystemExit(
                f"{path}: cannot be loaded with weights_only=True ({exc}); pass "
                "--trust-checkpoint to unpickle it fully if you trust its source"
            ) from exc
        return torch.load(path, map_location="cpu", weights_only=False)


def _keypoint_set(name: str | None, k: int, parser: argparse.ArgumentParser) -> KeypointSet:
    if name is not None:
        kset = keypoint_set(name)
        if len(kset) != k:
            parser.error(f"--keypoint-set {name} has {len(kset)} keypoints, the model {k}")
        return kset
    if k == len(COCO):
        return COCO
    sized = [s for s in keypoint_sets().values() if len(s) == k]
    if len(sized) != 1:
        parser.error(f"no single keypoint set has {k} keypoints: name one (--keypoint-set)")
    return sized[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.export", description="Export RTMPose to mmdeploy-style ONNX."
    )
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="required without --checkpoint")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--seed", type=int, help="deterministic random weights (for tests/benchmarks)")
    src.add_argument("--checkpoint", type=Path, help="official mmpose .pth checkpoint")
    src.add_argument("--run", type=Path, help="a training run's checkpoint (EMA weights)")
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling of the checkpoint (trusted files only)",
    )
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("W", "H"),
        default=None,
        help="default 192 256 (or the checkpoint's)",
    )
    parser.add_argument("--num-keypoints", type=int, default=None, help="default 17")
    parser.add_argument(
        "--keypoint-set",
        choices=sorted(keypoint_sets()),
        help="the model's keypoint set (default: the one set with that many keypoints, or coco)",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument(
        "--static-batch", action="store_true", help="fix the batch axis at 1 (as some SDK zips)"
    )
    args = parser.parse_args(argv)

    meta: dict[str, str] = {}
    if args.run is not None:
        ckpt = torch.load(args.run, map_location="cpu", weights_only=False)
        cfg = ckpt["config"]
        variant, input_size, k = cfg["variant"], tuple(cfg["input_size"]), 17
        model = build_rtmpose(variant, input_size, k)
        model.load_state_dict(ckpt["ema"]["module"])
        meta["rtmserve.train_config"] = json.dumps(cfg)
        meta["rtmserve.checkpoint"] = f"{args.run} (EMA, iteration {ckpt['iteration']})"
        meta["rtmserve.git_commit"] = git_commit()
    elif args.checkpoint is not None:
        ckpt = load_checkpoint(args.checkpoint, args.trust_checkpoint)
        inferred = infer_build_args(ckpt)
        variant = args.variant or inferred["variant"]
        input_size = tuple(args.input_size) if args.input_size else inferred["input_size"]
        k = args.num_keypoints or inferred["num_keypoints"]
        model = build_rtmpose(variant, input_size, k)
        load_official_state_dict(model, ckpt)
        meta["checkpoint"] = args.checkpoint.name
    else:
        if args.variant is None:
            parser.error("--variant is required with --seed")
        variant = args.variant
        input_size = tuple(args.input_size) if args.input_size else DEFAULT_INPUT_SIZE
        k = args.num_keypoints or (
            len(keypoint_set(args.keypoint_set)) if args.keypoint_set else 17
        )
        model = seeded_rtmpose(variant, args.seed, input_size, k)
        meta["seed"] = str(args.seed)
    kset = _keypoint_set(args.keypoint_set, k, parser)
    meta.update(
        keypoint_set=kset.name,
        variant=f"rtmpose-{variant}",
        input_size=f"{input_size[0]}x{input_size[1]}",
        num_keypoints=str(k),
        simcc_split_ratio="2.0",
    )
    report = export_onnx(
        model.eval(), args.output, input_size, args.opset, metadata=meta,
        static_batch=args.static_batch,
    )  # fmt: skip
    json.dump(report.as_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    if report.max_abs_diff > MAX_ABS_DIFF:
        raise SystemExit(f"onnxruntime differs from PyTorch by {report.max_abs_diff:.2e}")
    spec = PoseSpec(input_size=input_size, keypoint_names=kset.keypoints)
    check_onnx_signature(args.output, spec)  # raises on mismatch
    print(f"{args.output}: serving signature OK", file=sys.stderr)
    return 0


def git_commit() -> str:
    """The commit of the training code (``+dirty`` when the tree has changes)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "training", "service"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
