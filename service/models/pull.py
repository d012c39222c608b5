"""Get a verified ONNX file for a model into the cache, first hit wins:

1. the cache itself, when the file there still verifies;
2. local mirror folders (``RTMSERVE_MODEL_MIRROR``), for machines that cannot download;
3. the official OpenMMLab URL (skipped offline).

Offline with nothing found, :class:`ModelUnavailable` says which file is missing, where it comes
from, its checksum, where it looked and how to supply it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from service.core.contract import SignatureMismatch

from .cache import (
    CheckpointConverter,
    PulledModel,
    cached_model,
    install_file,
    mkdirs,
    rmdirs_if_empty,
    verify_cached,
)
from .catalogue import CATALOGUE, ModelEntry, get_entry
from .download import DownloadFailed, download
from .errors import (
    TRAIN_EXTRA_HINT,
    ChecksumMismatch,
    ConversionUnavailable,
    ModelUnavailable,
    UnsafeArchive,
)
from .mirror import TMP_PREFIX, candidates, mirror_dirs

MIRROR_SETTING = "RTMSERVE_MODEL_MIRROR"


def pull(
    name: str | ModelEntry,
    cache: str | Path,
    mirror: str | Path | Sequence[str | Path] | None = None,
    allow_download: bool = True,
    *,
    progress: bool = True,
    convert: CheckpointConverter | None = None,
) -> PulledModel:
    """A verified ``cache/<name>/model.onnx``, fetched if needed.

    ``name`` is a catalogue name, a name imported earlier, or a :class:`ModelEntry`. ``convert``
    turns an official ``.pth`` into ONNX (``training.convert``); without it such models are
    :class:`ConversionUnavailable`. Raises :class:`ModelUnavailable` when no source has the
    file, :class:`ChecksumMismatch` when one has another file, ``SignatureMismatch`` when the
    file's inputs/outputs do not fit the spec.
    """
    cache = Path(cache)
    if isinstance(name, ModelEntry):
        entry = name
    elif name in CATALOGUE:
        entry = CATALOGUE[name]
    else:
        if hit := cached_model(name, cache):
            return hit
        entry = get_entry(name)  # raises UnknownModel with suggestions
    if not entry.released:
        raise ModelUnavailable(f"{entry.name}: {entry.notes}")
    if hit := verify_cached(entry, cache / entry.name):
        return hit
    if not entry.convertible:
        raise ModelUnavailable(f"{entry.name}: {entry.notes}")
    if entry.source.url.startswith("file:"):  # bundled with rtmserve: local, even offline
        local = Path(url2pathname(urlparse(entry.source.url).path))
        return install_file(entry, local, cache, origin=f"bundled:{local}")
    if entry.source.format == "pth" and convert is None:  # before fetching what we cannot use
        raise ConversionUnavailable(
            f"{entry.name} is published as a PyTorch checkpoint (.pth) that must be converted "
            f"to ONNX, which needs torch and rtmserve's training package: {TRAIN_EXTRA_HINT}"
        )
    dirs = mirror_dirs(mirror)
    if hit := _from_mirrors(entry, cache, dirs, convert):
        return hit
    if not allow_download:
        raise ModelUnavailable(_missing(entry, cache, dirs, "offline"))
    return _from_url(entry, cache, dirs, progress, convert)


def _missing(entry: ModelEntry, cache: Path, dirs: list[Path], reason: str) -> str:
    src = entry.source
    alt = ""
    if src.format == "zip":
        what = f"the ONNX inside it ({src.member}): {entry.onnx_checksums.describe()}"
        alt = f" (or the {src.member} unpacked from it, or {src.stem}.onnx)"
    elif src.format == "pth":
        what = f"the checkpoint: {src.checksums.describe()} (converted to ONNX locally)"
    else:
        what = entry.onnx_checksums.describe()
    if dirs:
        searched = ", ".join(f"{d}{'' if d.exists() else ' (does not exist)'}" for d in dirs)
    else:
        searched = f"none ({MIRROR_SETTING} is not set)"
    return (
        f"model {entry.name!r} is not available ({reason}).\n"
        f"  missing file:      {src.filename}\n"
        f"  official URL:      {src.url}\n"
        f"  expected checksum: {what}\n"
        f"  looked in:         cache {cache / entry.name}; mirrors: {searched}\n"
        f"To supply it, fetch that URL where there is internet access, then either\n"
        f"  - put the file{alt} in a directory DIR and set {MIRROR_SETTING}=DIR "
        f"(or pass --mirror DIR) and pull again, or\n"
        f"  - run: rtmserve models import {entry.name} FILE"
    )


def _from_mirrors(
    entry: ModelEntry, cache: Path, dirs: list[Path], convert: CheckpointConverter | None
) -> PulledModel | None:
    failures: list[Exception] = []
    for candidate in candidates(entry, dirs, skip=cache / entry.name):
        try:
            return install_file(
                entry, candidate, cache, origin=f"mirror:{candidate}", convert=convert
            )
        except (ChecksumMismatch, SignatureMismatch, UnsafeArchive) as exc:
            failures.append(exc)  # a later candidate may still be the right file
    if failures:
        # a file by the official name but not the official content: say so rather than
        # silently downloading over it
        raise failures[0]
    return None


def _from_url(
    entry: ModelEntry,
    cache: Path,
    dirs: list[Path],
    progress: bool,
    convert: CheckpointConverter | None,
) -> PulledModel:
    model_dir = cache / entry.name
    created = mkdirs(model_dir)
    fd, name = tempfile.mkstemp(
        dir=model_dir, prefix=TMP_PREFIX, suffix="-" + entry.source.filename
    )
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            download(entry.source.url, tmp, entry.name if progress else None)
        except DownloadFailed as exc:
            raise ModelUnavailable(_missing(entry, cache, dirs, f"download failed: {exc}")) from exc
        return install_file(entry, tmp, cache, origin=entry.source.url, convert=convert)
    finally:
        tmp.unlink(missing_ok=True)
        rmdirs_if_empty(created)
