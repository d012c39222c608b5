"""The ``rtmserve`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from service.api.stream_cli import add_stream_command
from service.models import ModelUnavailable, add_models_commands
from service.settings import Settings

SETTING_FLAGS = {
    "home": "RTMSERVE_HOME",
    "model_mirror": "RTMSERVE_MODEL_MIRROR",
    "triton_url": "RTMSERVE_TRITON_URL",
    "host": "RTMSERVE_HOST",
    "http_port": "RTMSERVE_HTTP_PORT",
    "detector": "RTMSERVE_DETECTOR",
    "pose_model": "RTMSERVE_POSE_MODEL",
}


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
    keys = (*SETTING_FLAGS, "offline", "http_port", "grpc_port")
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    return Settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    from service.server import serve

    return serve(settings_from_args(args), prepare=not args.no_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from service.prepare import prepare_repository

    report = prepare_repository(settings_from_args(args))
    print(f"repository: {report.repository}")
    for line in report.installed:
        print(f"installed {line}")
    for line in report.warnings:
        print(f"WARNING: {line}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtmserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start Triton (embedded, CPU) and the HTTP gateway")
    _add_setting_flags(serve)
    serve.add_argument("--host", help="bind address (RTMSERVE_HOST, default 0.0.0.0)")
    serve.add_argument("--port", dest="http_port", type=int, help="HTTP port (default 8080)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default 50051)")
    serve.add_argument(
        "--triton-url", help="use this running Triton (host:grpc-port) instead of starting one"
    )
    serve.add_argument(
        "--no-prepare", action="store_true", help="serve the repository as it is (no pulls)"
    )
    serve.set_defaults(func=_serve)

    prepare = sub.add_parser("prepare", help="pull the default models into the runtime repository")
    _add_setting_flags(prepare)
    prepare.set_defaults(func=_prepare)

    from service.repository.cli import add_version_commands

    add_models_commands(sub, extra=add_version_commands)
    add_stream_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
