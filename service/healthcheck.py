"""``python -m service.healthcheck URL``: exit 0 when ``URL`` answers 200, else 1.

The container health checks (Dockerfile, docker-compose.yml) run it against ``/readyz`` and
Triton's ``/v2/health/ready``: standard library only, since neither image needs curl.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request


def healthy(url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, ValueError):  # refused, timed out, non-2xx (HTTPError), malformed URL
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.healthcheck", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds")
    args = parser.parse_args(argv)
    return 0 if healthy(args.url, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
