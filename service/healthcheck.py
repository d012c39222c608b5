"""``python -m service.healthcheck URL``: exit 0 when ``URL`` answers 200, else 1.

The container health checks (Dockerfile, docker-compose.yml, deploy/k8s) run it against
``/readyz`` and Triton: standard library only, since neither image needs curl.

``--serving REPOSITORY``: ``URL`` is Triton's HTTP root, and ready means that the versions the
repository's records serve answer, with the pipeline. Triton's own ``/v2/health/ready`` under
``--strict-readiness`` also counts every version still loading, so a registration or rollback
(minutes of TensorRT engine building on a GPU) would take a serving pod out of its Services.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

from service.core.contract import PIPELINE_MODEL, RECORD_FILE


def healthy(url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, ValueError):  # refused, timed out, non-2xx (HTTPError), malformed URL
        return False


def serving_versions(repository: Path) -> dict[str, int]:
    """{model: serving version} from the records (a record being rewritten is skipped: its
    model keeps serving what Triton has)."""
    out = {}
    for record in sorted(repository.glob(f"*/{RECORD_FILE}")):
        try:
            data = json.loads(record.read_text())
            out[data["name"]] = int(data["serving_version"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def not_serving(triton: str, repository: Path, timeout_s: float) -> list[str]:
    """What does not answer: empty when Triton is live and the serving versions are ready."""
    root = triton.rstrip("/")
    if not healthy(f"{root}/v2/health/live", timeout_s):
        return [f"{root}/v2/health/live"]
    models = {PIPELINE_MODEL: 1, **serving_versions(repository)}
    return [
        f"{name} v{version}"
        for name, version in models.items()
        if not healthy(f"{root}/v2/models/{name}/versions/{version}/ready", timeout_s)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.healthcheck", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds")
    parser.add_argument(
        "--serving", type=Path, default=None, metavar="REPOSITORY",
        help="URL is Triton's: ready when the repository's serving versions answer",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.serving is None:
        return 0 if healthy(args.url, args.timeout) else 1
    missing = not_serving(args.url, args.serving, args.timeout)
    if missing:
        print("not serving: " + ", ".join(missing), file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
