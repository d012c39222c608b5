"""``rtmserve models register|rollback|versions|shadow|canary|promote|drop``: manage versions
of a served model, and trial a candidate on live traffic before it serves."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from service.core.specs import PoseSpec
from service.metadata import model_path, read_record
from service.models import get_entry
from service.repository.candidates import (
    DROPPED,
    PROMOTED,
    Rule,
    TrialError,
    end_trial,
    start_trial,
)
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
            evaluate_live=_evaluate_live(settings), hold=args.hold,
        )  # fmt: skip
    except GateRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 3
    live = f" (live AP {done.live_ap:.4f})" if done.live_ap is not None else ""
    ap = f"AP {done.ap:.4f}" if done.ap is not None else "no AP"
    if args.hold:
        trial = f"rtmserve models shadow|canary {done.name} {done.version}"
        held = f"{done.name} v{done.version} registered and held (v{done.previous} serves)"
        print(f"{held}, {ap}{live}: try it with {trial}")
        return 0
    print(f"{done.name} v{done.version} registered and serving, {ap}{live}; was v{done.previous}")
    return 0


def _trial(args: argparse.Namespace) -> int:
    settings = _settings(args)
    rule = None
    if args.auto:
        rule = Rule(args.min_agreement, args.max_p95_ratio, args.min_requests)
    try:
        start_trial(
            settings.repository_dir, args.name, args.version, args.mode, args.share,
            settings.serving_options, _triton(args, settings), rule,
        )  # fmt: skip
    except TrialError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 3
    what = "gets a copy of" if args.mode == "shadow" else "answers"
    auto = f"; {rule} decides" if rule else "; end it with promote or drop"
    print(f"{args.name} v{args.version} {what} {args.share:.0%} of requests{auto}")
    return 0


def _end(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        record = end_trial(
            settings.repository_dir, args.name, args.outcome, settings.serving_options,
            _triton(args, settings),
        )  # fmt: skip
    except TrialError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 3
    assert record is not None
    print(f"{args.name}: trial {args.outcome}; v{record.serving_version} serves")
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
    record = read_record(model_path(_settings(args).repository_dir, args.name))
    for v, meta in sorted(record.versions.items()):
        mark = "*" if v == record.serving_version else " "
        ap = meta.get("ap")
        print(
            f"{mark} v{v}  {meta.get('state', ''):9} trained={meta.get('trained', True)!s:5} "
            f"AP={'-' if ap is None else f'{ap:.4f}'}  {meta.get('created', '')}  "
            f"{meta.get('source', '')}"
        )
    if record.candidate:
        c = record.candidate
        print(f"  trial: v{c['version']} {c['mode']} share {c['share']} rule {c.get('rule')}")
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
    reg.add_argument(
        "--hold", action="store_true", help="add it without serving it (a candidate to trial)"
    )
    common(reg)
    reg.set_defaults(func=_register)

    rb = models.add_parser("rollback", help="serve an earlier version again, live")
    rb.add_argument("name")
    rb.add_argument("version", type=int)
    common(rb)
    rb.set_defaults(func=_rollback)

    for mode, share, what in (
        ("shadow", 0.2, "sends it a copy of a share of live requests, off the response path"),
        ("canary", 0.1, "lets it answer a share of requests (whole streams)"),
    ):
        t = models.add_parser(mode, help=f"trial a version beside the live one: {what}")
        t.add_argument("name")
        t.add_argument("version", type=int)
        t.add_argument("--share", type=float, default=share, help=f"default {share}")
        t.add_argument("--auto", action="store_true", help="promote or drop by the rule below")
        t.add_argument("--min-agreement", type=float, default=0.9, help="mean OKS to promote")
        t.add_argument("--max-p95-ratio", type=float, default=2.0, help="pose time p95 ratio")
        t.add_argument("--min-requests", type=int, default=100, help="pairs before deciding")
        common(t)
        t.set_defaults(func=_trial, mode=mode)
    for command, outcome, what in (
        ("promote", PROMOTED, "the candidate on trial serves everyone"),
        ("drop", DROPPED, "end the trial: the live version serves everyone"),
    ):
        e = models.add_parser(command, help=what)
        e.add_argument("name")
        common(e)
        e.set_defaults(func=_end, outcome=outcome)

    ls = models.add_parser("versions", help="a model's versions and which one serves")
    ls.add_argument("name")
    common(ls, triton=False)
    ls.set_defaults(func=_versions)
