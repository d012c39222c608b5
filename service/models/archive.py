"""What a model file is (ONNX, SDK zip, PyTorch checkpoint) and getting the ONNX out of a zip.

OpenMMLab ships MMDeploy SDK zips whose ONNX member sits under a folder named after the zip
(or deeper, for bundles): members are matched by a glob against the member path or any suffix
of it after a ``/``.
"""

from __future__ import annotations

import fnmatch
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 20
PTH_SUFFIXES = (".pth", ".pt", ".ckpt")


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


def members(zf: zipfile.ZipFile, pattern: str) -> list[zipfile.ZipInfo]:
    return [i for i in zf.infolist() if not i.is_dir() and member_matches(i.filename, pattern)]


def extract_member(
    archive: Path, pattern: str, out: Path, accept: Callable[[Path], bool] | None
) -> str:
    """Copy the member matching ``pattern`` to ``out`` and return its name. Among several,
    the first that ``accept`` takes (the last if none: the caller's checks then report it).
    Raises ``LookupError`` when none matches, or several do and ``accept`` is None (nothing
    tells them apart)."""
    with zipfile.ZipFile(archive) as zf:
        found = members(zf, pattern)
        if not found:
            names = ", ".join(zf.namelist()[:20])
            raise LookupError(f"{archive} has no member matching {pattern!r} (it has: {names})")
        for info in found:
            with zf.open(info) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
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
            for info in members(zf, pattern):
                with zf.open(info) as src, tmp.open("wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                if accept(tmp):
                    return True
    except (zipfile.BadZipFile, OSError):
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return False
