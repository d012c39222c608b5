"""What the deployment files say, read as Docker Compose and Kubernetes would: ``.env`` and the
health-check commands, made runnable on this machine."""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

from tests.support.paths import REPO


def dotenv() -> dict[str, str]:
    """``.env`` beside the compose file, which ``docker compose`` reads for interpolation."""
    lines = (REPO / ".env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def local_command(command: list[str], url: str, repository: Path | None = None) -> list[str]:
    """A container's ``python -m service.healthcheck ...`` command, to run here: its URL's host
    and port replaced by ``url``'s and the container's repository path by ``repository``."""
    assert command[:3] in (["python", "-m", "service.healthcheck"],
                           ["python3", "-m", "service.healthcheck"])  # fmt: skip
    out = [sys.executable, *command[1:3]]
    for arg in command[3:]:
        if "://" in arg:
            rest = arg.split("://", 1)[1]
            arg = url + (f"/{rest.split('/', 1)[1]}" if "/" in rest else "")
        elif arg.startswith("/var/lib/rtmserve/") and repository is not None:
            arg = str(repository)
        out.append(arg)
    return out


def dockerignore_excludes(context: Path, relative: str) -> bool:
    """.dockerignore semantics, simplified: patterns match the path or a parent, the last
    matching pattern wins, ``!`` re-includes."""
    ignore = context / ".dockerignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    parts = Path(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatch(c, pattern) for c in candidates):
            excluded = not negated
    return excluded
