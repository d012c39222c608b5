"""The ``rtmserve`` command line: serve, prepare, models, stream.

argparse (the standard library) rather than click/typer: no dependency, ``rtmserve --help``
stays quick, and every flag maps one to one onto a ``Settings`` field (environment first,
flags override).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from service.core.names import InvalidModelName
from service.logs import configure as configure_logging
from service.models import ModelUnavailable
from service.settings import Settings

from .fallbacks import training_fallbacks
from .models import add_models_commands
from .render import add_render_command
from .stream import add_stream_command
from .versions import add_version_commands

SETTING_FLAGS = (
    "home",
    "model_mirror",
    "triton_url",
    "host",
    "http_port",
    "grpc_port",
    "detector",
    "pose_model",
    "offline",
    "insecure",
)


def _add_setting_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", type=Path, help="cache and runtime repository (RTMSERVE_HOME)")
    p.add_argument(
        "--mirror", dest="model_mirror", help="local model mirror (RTMSERVE_MODEL_MIRROR)"
    )
    p.add_argument("--offline", action="store_true", default=None, help="never download")
    p.add_argument("--detector", help="default detector (RTMSERVE_DETECTOR)")
    p.add_argument("--pose-model", help="default pose model (RTMSERVE_POSE_MODEL)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment first, flags override."""
    overrides = {k: getattr(args, k) for k in SETTING_FLAGS if getattr(args, k, None) is not None}
    return Settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    from service.server import serve

    return serve(settings_from_args(args), not args.no_prepare, training_fallbacks())


def _prepare(args: argparse.Namespace) -> int:
    from service.prepare import prepare_repository

    report = prepare_repository(settings_from_args(args), training_fallbacks())
    print(f"repository: {report.repository}")
    for line in report.installed:
        print(f"installed {line}")
    for line in report.warnings:
        print(f"WARNING: {line}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtmserve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start Triton (embedded, CPU) and the HTTP gateway")
    _add_setting_flags(serve)
    serve.add_argument(
        "--host",
        help="bind address (RTMSERVE_HOST, default 127.0.0.1; others need API keys or --insecure)",
    )
    serve.add_argument("--port", dest="http_port", type=int, help="HTTP port (default 8080)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default 50051)")
    serve.add_argument(
        "--triton-url", help="use this running Triton (host:grpc-port) instead of starting one"
    )
    serve.add_argument(
        "--no-prepare", action="store_true", help="serve the repository as it is (no pulls)"
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="serve on a non-loopback --host without API keys (RTMSERVE_INSECURE)",
    )
    serve.set_defaults(func=_serve)

    prepare = sub.add_parser("prepare", help="pull the default models into the runtime repository")
    _add_setting_flags(prepare)
    prepare.set_defaults(func=_prepare)

    models = add_models_commands(sub)
    add_version_commands(models)
    add_stream_command(sub)
    add_render_command(sub)

    fleet = sub.add_parser(
        "fleet", help="N replicas sharing one repository behind Envoy, on this machine"
    )
    fleet.add_argument("--replicas", type=int, default=2)
    fleet.add_argument("--port", type=int, default=8080, help="the balancer's HTTP port")
    fleet.add_argument("--grpc-port", type=int, default=50051, help="the balancer's gRPC port")
    fleet.add_argument("--work", type=Path, help="the replicas' homes (default: a temp folder)")
    fleet.add_argument(
        "--metrics-port", type=int, help="the supervisor's Prometheus /metrics (default 9180)"
    )
    fleet.set_defaults(func=_fleet)
    return parser


def _fleet(args: argparse.Namespace) -> int:
    from rtmserve.fleet import run_fleet

    return run_fleet(args.replicas, args.port, args.grpc_port, args.work, args.metrics_port)


def main(argv: list[str] | None = None) -> int:
    configure_logging()  # every line filtered: no API key reaches a log
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ModelUnavailable, InvalidModelName) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
