"""Which ``service.core`` this is: a hash of its source.

The Triton pipeline model runs ``model_repository/pipeline/model.py`` from the repository
(written by the gateway's ``prepare``) with the ``service.core`` installed in the Triton image.
Should the two come from different checkouts (an image not rebuilt after a ``git pull``), the
pipeline refuses to load instead of serving keypoints computed by other code.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path


@cache
def fingerprint() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted([*here.glob("*.py"), *here.glob("*.json")]):  # code and keypoint sets
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def check(expected: str | None) -> None:
    """Raises when ``expected`` (what prepared the repository) is not this code."""
    if expected and expected != fingerprint():
        raise RuntimeError(
            f"the repository was prepared with service.core {expected}, but this Triton runs "
            f"service.core {fingerprint()}: rebuild the Triton image from the same checkout "
            "as the gateway (docker compose up --build)"
        )
