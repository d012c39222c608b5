"""``rtmserve models {list,pull,import}``: the catalogue and the local model cache from a shell.

Each sub-command stores its handler in ``args.func`` (returning an exit code). The cache is
``<home>/models``: ``--home``, else ``RTMSERVE_HOME``, else ``~/.cache/rtmserve`` (Settings).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.core.contract import SignatureMismatch
from service.models import (
    CATALOGUE,
    MIRROR_SETTING,
    ChecksumMismatch,
    ConversionUnavailable,
    ModelUnavailable,
    PulledModel,
    UnknownModel,
    cached_model,
    import_model,
    list_cached,
    list_entries,
    pull,
)
from service.settings import Settings

from .fallbacks import training_fallbacks

_ERRORS = (
    ModelUnavailable,
    ChecksumMismatch,
    SignatureMismatch,
    ConversionUnavailable,
    UnknownModel,
    FileNotFoundError,
    ValueError,
)


def add_models_commands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Register the ``models`` command group; returns its sub-command parsers."""
    models = subparsers.add_parser(
        "models",
        help="list, pull and import detector/pose models",
        description="Models the service knows, and the local cache of verified ONNX files.",
    )
    home_help = "cache root (models go in HOME/models; default RTMSERVE_HOME or ~/.cache/rtmserve)"
    models.add_argument("--home", help=home_help)
    # also accepted after the sub-command; SUPPRESS keeps the group's value when absent
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help=home_help)
    sub = models.add_subparsers(dest="models_command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list", parents=[common], help="the catalogue, and what is in the cache")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("pull", parents=[common], help="fetch a model into the cache and verify it")
    p.add_argument("name", help="catalogue name (see `models list`)")
    p.add_argument(
        "--mirror",
        action="append",
        metavar="DIR",
        help=f"local directory holding model files (repeatable; default {MIRROR_SETTING})",
    )
    p.add_argument("--offline", action="store_true", help="never download; cache/mirror only")
    p.set_defaults(func=_cmd_pull)

    p = sub.add_parser(
        "import",
        parents=[common],
        help="install a local file as a model",
        description="Install FILE as model NAME. For a catalogue NAME the file must be the "
        "official one (checksums checked); for a new NAME give --like CATALOGUE_NAME to borrow "
        "its pre/post-processing (the ONNX signature is checked against it).",
    )
    p.add_argument("name")
    p.add_argument("file", type=Path)
    p.add_argument("--like", metavar="NAME", help="catalogue model whose spec the file follows")
    p.set_defaults(func=_cmd_import)
    return sub


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(**({"home": args.home} if getattr(args, "home", None) else {}))


def _dest(args: argparse.Namespace) -> Path:
    return _settings(args).models_dir


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cmd_list(args: argparse.Namespace) -> int:
    dest = _dest(args)
    present = set(list_cached(dest))
    rows = [["NAME", "TASK", "INPUT(HxW)", "DATASET", "AP", "PARAMS(M)", "CACHED", "SOURCE"]]
    for e in list_entries():
        rows.append(
            [
                e.name,
                e.task,
                e.input_hw,
                e.dataset,
                "-" if e.ap is None else f"{e.ap:.1f}",
                "-" if e.params_m is None else f"{e.params_m:g}",
                "yes" if e.name in present else "no",
                e.source.url,
            ]
        )
    for name in sorted(present - set(CATALOGUE)):  # user imports
        hit = cached_model(name, dest)
        if hit is not None:
            w, h = hit.entry.input_size
            rows.append(
                [name, hit.entry.task, f"{h}x{w}", hit.entry.dataset, "-", "-", "yes", hit.origin]
            )
    print(_table(rows))
    print(f"\ncache: {dest}")
    return 0


def _report(m: PulledModel) -> None:
    state = "verified" if m.verified else "no full published checksum; held to its first pull"
    where = "already in the cache" if m.from_cache else f"from {m.origin}"
    print(f"{m.name}: {m.path} ({where})\n  sha256 {m.sha256} ({state})")


def _cmd_pull(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        m = pull(
            args.name,
            settings.models_dir,
            mirror=args.mirror or settings.model_mirror,
            allow_download=not (args.offline or settings.offline),
            convert=training_fallbacks().convert,
        )
    except _ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _report(m)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    try:
        convert = training_fallbacks().convert
        m = import_model(args.name, args.file, _dest(args), like=args.like, convert=convert)
    except _ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _report(m)
    return 0
