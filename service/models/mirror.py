"""Find a model's official file in local mirror folders, for machines that cannot download.

A mirror is any folder tree: files are recognised by their official name (the download's own
name, rtmlib's ``<zip stem>.onnx``, or an SDK zip unpacked in place), then any other file by a
published checksum that proves it is the one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from . import archive
from .catalogue import ModelEntry
from .checksums import file_digests

TMP_PREFIX = ".rtmserve-"  # files being written by a pull: never candidates


def mirror_dirs(mirror: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """Folders from one ``os.pathsep``-separated string (``RTMSERVE_MODEL_MIRROR``) or a list."""
    if mirror is None:
        return []
    items = str(mirror).split(os.pathsep) if isinstance(mirror, str | Path) else map(str, mirror)
    return [Path(i).expanduser().resolve() for i in items if i.strip()]


def _walk(dirs: list[Path], skip: Path) -> Iterator[tuple[Path, Path]]:
    """(mirror root, file) for every regular file under the mirrors, in a stable order."""
    skip = skip.resolve()
    for root in dirs:
        if root.is_file():
            yield root.parent, root
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            here = Path(dirpath)
            if here.resolve() == skip:
                dirnames.clear()
                continue
            for fn in sorted(filenames):
                p = here / fn
                if not fn.startswith(TMP_PREFIX) and p.is_file():
                    yield root, p


def _name_matches(entry: ModelEntry, root: Path, path: Path) -> bool:
    if path.name in entry.official_names:
        return True
    src = entry.source
    if src.format != "zip" or src.member is None:
        return False
    parts = PurePosixPath(path.relative_to(root).as_posix()).parts
    if src.stem in parts[:-1]:  # an unpacked SDK zip: <zip stem>/.../end2end.onnx
        rest = "/".join(parts[parts.index(src.stem) + 1 :])
        if archive.member_matches(rest, src.member):
            return True
    # a layout-specific member (rtmpose-ort/rtmdet-nano/end2end.onnx) unpacked anywhere
    return "/" in src.member and archive.member_matches("/".join(parts), src.member)


def _proven_by_checksum(entry: ModelEntry, path: Path) -> bool:
    onnx_ck, src_ck = entry.onnx_checksums, entry.source.checksums
    suffix, fmt = path.suffix.lower(), entry.source.format
    if suffix == ".onnx":
        return onnx_ck.known and onnx_ck.matches(file_digests(path))
    if suffix in archive.PTH_SUFFIXES:
        return fmt == "pth" and src_ck.known and src_ck.matches(file_digests(path))
    if suffix != ".zip" or fmt != "zip":
        return False
    if src_ck.known and src_ck.matches(file_digests(path)):
        return True
    if not onnx_ck.known or entry.source.member is None:
        return False
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".onnx")
    os.close(fd)
    accept = lambda p: onnx_ck.matches(file_digests(p))  # noqa: E731
    return archive.has_member(path, entry.source.member, accept, Path(tmp))


def candidates(entry: ModelEntry, dirs: list[Path], skip: Path) -> Iterator[Path]:
    """Files by official name first, then any file whose checksum proves it is the one."""
    walked = list(_walk(dirs, skip))
    named = [p for root, p in walked if _name_matches(entry, root, p)]
    yield from named
    yield from (p for _, p in walked if p not in named and _proven_by_checksum(entry, p))
