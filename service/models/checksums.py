"""File digests and the checksums a model artifact is expected to have.

Three kinds of evidence exist for the official files, and a file is checked against whichever
are known:

- a full sha256 (measured on a file we have seen);
- a git blob SHA-1 (what a repository that committed the file records; the only record left for
  the body7 RTMPose ONNX files whose blobs are missing from the snapshots);
- the sha256 prefix OpenMMLab puts in checkpoint file names (``...-63eb25f7_20230126.pth``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Digests:
    """What we measured on one file; both digests come from a single read."""

    sha256: str
    git_sha1: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "git_sha1": self.git_sha1, "size": self.size}


def file_digests(path: str | Path) -> Digests:
    """sha256 and git blob SHA-1 of a file, reading it once."""
    path = Path(path)
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(f"blob {size}\0".encode())
    read = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
            read += len(chunk)
    if read != size:  # the file changed under us: the header would be wrong
        raise OSError(f"{path} changed size while being hashed ({size} -> {read} bytes)")
    return Digests(sha256=sha256.hexdigest(), git_sha1=sha1.hexdigest(), size=size)


def sha256_file(path: str | Path) -> str:
    return file_digests(path).sha256


def git_blob_sha1(path: str | Path) -> str:
    """The id ``git hash-object FILE`` prints: sha1(b"blob <size>\\0" + content)."""
    return file_digests(path).git_sha1


@dataclass(frozen=True)
class Checksums:
    """Expected checksums of one file; any field may be unknown (None)."""

    sha256: str | None = None
    git_sha1: str | None = None
    sha256_prefix: str | None = None  # OpenMMLab names checkpoints after their sha256[:8]

    def __post_init__(self) -> None:
        for name, value in self.to_dict().items():
            if value is not None and (not value or set(value) - set("0123456789abcdef")):
                raise ValueError(f"{name} must be lower-case hex, got {value!r}")

    @property
    def known(self) -> bool:
        return any(v is not None for v in self.to_dict().values())

    @property
    def strong(self) -> bool:
        """A full digest is known: the name prefix alone (32 bits) is matched in minutes, so it
        only catches accidents, never proves a file."""
        return self.sha256 is not None or self.git_sha1 is not None

    def mismatches(self, digests: Digests) -> list[tuple[str, str, str]]:
        """(kind, expected, found) for every known checksum the file fails; empty = verified."""
        out = []
        if self.sha256 is not None and digests.sha256 != self.sha256:
            out.append(("sha256", self.sha256, digests.sha256))
        if self.git_sha1 is not None and digests.git_sha1 != self.git_sha1:
            out.append(("git blob sha1", self.git_sha1, digests.git_sha1))
        if self.sha256_prefix is not None and not digests.sha256.startswith(self.sha256_prefix):
            out.append(("sha256 prefix", self.sha256_prefix, digests.sha256))
        return out

    def matches(self, digests: Digests) -> bool:
        """True only when at least one checksum is known and all known ones agree."""
        return self.known and not self.mismatches(digests)

    def describe(self) -> str:
        parts = []
        if self.sha256:
            parts.append(f"sha256 {self.sha256}")
        if self.git_sha1:
            parts.append(f"git blob sha1 {self.git_sha1}")
        if self.sha256_prefix:
            parts.append(f"sha256 starting {self.sha256_prefix}")
        return ", ".join(parts) if parts else "no published checksum"

    def to_dict(self) -> dict[str, str | None]:
        return {
            "sha256": self.sha256,
            "git_sha1": self.git_sha1,
            "sha256_prefix": self.sha256_prefix,
        }
