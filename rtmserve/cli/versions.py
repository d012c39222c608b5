"""``rtmserve models register|rollback|versions``: manage versions of a served model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from service.core.specs import PoseSpec
from service.metadata import read_record
from service.models import get_entry
from service.repository.register import GateRefused, register, rollback
from service.settings import Settings
from service.triton.control import TritonControl


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {"home": args.home} if getattr(args, "home", None) else {}
    return Settings(**overrides)


def _triton(args: argparse.Namespace, settings: Settings) -> TritonControl | None:
    if args.no_triton:
        return None
    return TritonControl(args.triton_http or settings.triton_http_url)


def _evaluate_live(settings: Settings):
    """Measure the live version on the candidate's evaluation set (needs the train extra)."""

    def run(onnx_file: Path, evaluation: dict[str, Any]) -> dict[str, Any]:
        from training.evaluate import evaluate, onnx_detector, onnx_estimator  # the train extra

        record = read_record(onnx_file.parents[1])
        spec = record.parsed_spec
        assert isinstance(spec, PoseSpec)
        detector = None
        if evaluation.get("boxes") == "detector":
            det = read_record(settings.repository_dir / settings.detector)
            det_file = settings.repository_dir / det.name / str(det.serving_version) / "model.onnx"
            detector = (det.parsed_spec, onnx_detector(det_file))
        ids = set(evaluation["image_ids"]) if evaluation.get("image_ids") else None
        return evaluate(
            evaluation["dataset"], (spec, onnx_estimator(onnx_file)), detector, ids
        ).to_dict()

    return run


def _register(args: argparse.Namespace) -> int:
    settings = _settings(args)
    evaluation = json.loads(Path(args.eval).read_text()) if args.eval else None
    spec = get_entry(args.like).spec if args.like else None
    try:
        done = register(
            settings.repository_dir, args.name, Path(args.onnx), evaluation,
            settings.serving_options, _triton(args, settings), spec=spec, force=args.force,
            evaluate_live=_evaluate_live(settings),
        )  # fmt: skip
    except GateRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 3
    live = f" (live AP {done.live_ap:.4f})" if done.live_ap is not None else ""
    ap = f"AP {done.ap:.4f}" if done.ap is not None else "no AP"
    print(f"{done.name} v{done.version} registered and serving, {ap}{live}; was v{done.previous}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    settings = _settings(args)
    record = rollback(
        settings.repository_dir, args.name, args.version, settings.serving_options,
        _triton(args, settings),
    )  # fmt: skip
    print(f"{args.name} now serves v{record.serving_version} (was v{record.previous_version})")
    return 0


def _versions(args: argparse.Namespace) -> int:
    record = read_record(_settings(args).repository_dir / args.name)
    for v, meta in sorted(record.versions.items()):
        mark = "*" if v == record.serving_version else " "
        ap = meta.get("ap")
        print(
            f"{mark} v{v}  {meta.get('state', ''):9} trained={meta.get('trained', True)!s:5} "
            f"AP={'-' if ap is None else f'{ap:.4f}'}  {meta.get('created', '')}  "
            f"{meta.get('source', '')}"
        )
    return 0


def add_version_commands(models: argparse._SubParsersAction) -> None:
    """Adds register/rollback/versions under an existing ``models`` sub-command group."""

    def common(p: argparse.ArgumentParser, triton: bool = True) -> None:
        p.add_argument("--home", type=Path, default=argparse.SUPPRESS, help="RTMSERVE_HOME")
        if triton:
            p.add_argument("--triton-http", help="Triton HTTP URL (default from settings)")
            p.add_argument(
                "--no-triton",
                action="store_true",
                help="only edit the repository (Triton is not running)",
            )

    reg = models.add_parser("register", help="add an evaluated ONNX as the next version, live")
    reg.add_argument("name")
    reg.add_argument("onnx")
    reg.add_argument("--eval", help="evaluation JSON (python -m training.evaluate --out)")
    reg.add_argument("--like", help="catalogue model whose spec a new model uses")
    reg.add_argument("--force", action="store_true", help="register even if AP is lower")
    common(reg)
    reg.set_defaults(func=_register)

    rb = models.add_parser("rollback", help="serve an earlier version again, live")
    rb.add_argument("name")
    rb.add_argument("version", type=int)
    common(rb)
    rb.set_defaults(func=_rollback)

    ls = models.add_parser("versions", help="a model's versions and which one serves")
    ls.add_argument("name")
    common(ls, triton=False)
    ls.set_defaults(func=_versions)
