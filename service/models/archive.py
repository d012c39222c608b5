"""What a model file is (ONNX, SDK zip, PyTorch checkpoint) and getting the ONNX out of a zip.

OpenMMLab ships MMDeploy SDK zips whose ONNX member sits under a folder named after the zip
(or deeper, for bundles): members are matched by a glob against the member path or any suffix
of it after a ``/``.

Zips are hostile until verified (most have no published checksum): before anything is read,
every member name must stay inside the archive's folder, none may be a link, and the declared
sizes must fit the caps; what is extracted is counted as it is written. Only the model member
is ever written, to a file the caller names.
"""

from __future__ import annotations

import fnmatch
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from .errors import UnsafeArchive

CHUNK = 1 << 20
PTH_SUFFIXES = (".pth", ".pt", ".ckpt")
# an ONNX file without external data is one protobuf message: at most 2 GiB
MAX_MEMBER_BYTES = 2 << 30
MAX_ARCHIVE_BYTES = 4 << 30  # all members together, as declared
MAX_MEMBERS = 10_000


def member_matches(member: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(member, pattern) or fnmatch.fnmatchcase(member, "*/" + pattern)


def detect_format(path: Path) -> str:
    """``onnx``, ``zip`` or ``pth``: by suffix where it says; sniffed otherwise (torch.save
    also writes zip files)."""
    suffix = path.suffix.lower()
    if suffix in PTH_SUFFIXES:
        return "pth"
    if suffix in (".onnx", ".zip"):
        return suffix[1:]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            torch = any(n.endswith("/data.pkl") or n == "data.pkl" for n in zf.namelist())
        return "pth" if torch else "zip"
    return "onnx"


def check_archive(zf: zipfile.ZipFile, archive: Path) -> None:
    """Raises :class:`UnsafeArchive` unless every member is a plain file or folder inside the
    archive's folder and the declared sizes fit the caps."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise UnsafeArchive(f"{archive}: {len(infos)} members (at most {MAX_MEMBERS}); refused")
    total = 0
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if not parts or name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise UnsafeArchive(
                f"{archive}: member {name!r} points outside the archive's folder; refused"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchive(f"{archive}: member {name!r} is a link; refused")
        if info.file_size > MAX_MEMBER_BYTES:
            raise UnsafeArchive(
                f"{archive}: member {name!r} unpacks to {info.file_size} bytes, more than any "
                f"model file ({MAX_MEMBER_BYTES}); refused"
            )
        total += info.file_size
    if total > MAX_ARCHIVE_BYTES:
        raise UnsafeArchive(
            f"{archive}: unpacks to {total} bytes (at most {MAX_ARCHIVE_BYTES}); refused"
        )


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: Path, archive: Path) -> None:
    """Write one member to ``out``, never more bytes than it declared or the cap allows."""
    limit = min(info.file_size, MAX_MEMBER_BYTES)
    written = 0
    with zf.open(info) as src, out.open("wb") as dst:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise UnsafeArchive(
                    f"{archive}: member {info.filename!r} unpacks to more than the {limit} "
                    "bytes it declares or the cap allows; refused"
                )
            dst.write(chunk)


def members(zf: zipfile.ZipFile, pattern: str) -> list[zipfile.ZipInfo]:
    return [i for i in zf.infolist() if not i.is_dir() and member_matches(i.filename, pattern)]


def extract_member(
    archive: Path, pattern: str, out: Path, accept: Callable[[Path], bool] | None
) -> str:
    """Copy the member matching ``pattern`` to ``out`` and return its name. Among several,
    the first that ``accept`` takes (the last if none: the caller's checks then report it).
    Raises ``LookupError`` when none matches, or several do and ``accept`` is None (nothing
    tells them apart), :class:`UnsafeArchive` when the archive fails :func:`check_archive`."""
    with zipfile.ZipFile(archive) as zf:
        check_archive(zf, archive)
        found = members(zf, pattern)
        if not found:
            names = ", ".join(zf.namelist()[:20])
            raise LookupError(f"{archive} has no member matching {pattern!r} (it has: {names})")
        for info in found:
            _copy_member(zf, info, out, archive)
            if len(found) == 1 or (accept is not None and accept(out)):
                return info.filename
        if accept is None:
            listed = ", ".join(m.filename for m in found)
            raise LookupError(
                f"{archive} has several members matching {pattern!r} ({listed}) and no "
                "published checksum tells which one is the model"
            )
        return found[-1].filename


def has_member(archive: Path, pattern: str, accept: Callable[[Path], bool], tmp: Path) -> bool:
    """Whether a member matching ``pattern`` passes ``accept`` (copied to ``tmp`` to check)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            check_archive(zf, archive)
            for info in members(zf, pattern):
                _copy_member(zf, info, tmp, archive)
                if accept(tmp):
                    return True
    except (zipfile.BadZipFile, OSError, UnsafeArchive):
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return False
