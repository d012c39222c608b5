"""The cache of verified model files: ``<home>/models/<name>/model.onnx`` + ``source.json``.

A file enters only through ``install_file``, which checks every known checksum of what was
given and of the resulting ONNX, and the ONNX signature against the entry's spec, then renames
it into place: a failed or interrupted install leaves nothing behind.

Where nothing strong is published (only OpenMMLab's 8-hex name tag, or nothing), the first pull
is trusted and its sha256 sums are recorded in ``source.json`` (``first_pull``); every later
install of that artifact must match them (the download before it is extracted or converted),
until the model's cache folder is deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from service.core.contract import check_onnx_signature
from service.core.specs import ModelSpec, spec_from_dict
from service.metadata import SOURCE_FILE, is_model_name, model_path, read_source

from . import archive
from .catalogue import CATALOGUE, ModelEntry, Source
from .checksums import Digests, file_digests
from .errors import (
    TRAIN_EXTRA_HINT,
    ChecksumMismatch,
    ConversionUnavailable,
    ModelUnavailable,
    UnsafeArchive,
)
from .mirror import TMP_PREFIX

MODEL_FILE = "model.onnx"
# (checkpoint, output ONNX, RTMPose size, (width, height)): training.convert provides one
CheckpointConverter = Callable[[Path, Path, str, tuple[int, int]], None]


@dataclass(frozen=True)
class PulledModel:
    """A verified ONNX file in the cache and what is known about it."""

    name: str
    path: Path  # <cache>/<name>/model.onnx
    entry: ModelEntry
    sha256: str
    git_sha1: str
    size: int
    origin: str  # "mirror:<path>", "import:<path>", "bundled:<path>" or the URL
    verified: bool  # matched a published checksum (False: none published; sha256 recorded)
    from_cache: bool = False

    @property
    def spec(self) -> ModelSpec:
        return self.entry.spec

    @property
    def source_json(self) -> Path:
        return self.path.parent / SOURCE_FILE


def entry_from_record(name: str, record: dict) -> ModelEntry:
    """The entry of a model imported under a new name (its spec lives in source.json)."""
    spec = spec_from_dict(record["spec"])
    return ModelEntry(
        name=name,
        task=spec.kind,
        spec=spec,
        source=Source(url=record.get("url", ""), format="onnx"),
        dataset=record.get("dataset", "custom"),
        summary=record.get("summary", "imported"),
    )


def verify_cached(entry: ModelEntry, model_dir: Path) -> PulledModel | None:
    model = model_dir / MODEL_FILE
    if not model.is_file():
        return None
    record = read_source(model_dir)
    digests = file_digests(model)
    if entry.onnx_checksums.known:
        ok = entry.onnx_checksums.matches(digests)
    else:  # nothing published: trust what was recorded when it was first pulled
        ok = (
            record is not None
            and record.get("sha256") == digests.sha256
            and (entry.name not in CATALOGUE or record.get("url") == entry.source.url)
        )
    if not ok:
        return None
    return PulledModel(
        entry.name, model, entry, digests.sha256, digests.git_sha1, digests.size,
        origin=(record or {}).get("origin", "cache"),
        verified=bool((record or {}).get("verified", entry.onnx_checksums.known)),
        from_cache=True,
    )  # fmt: skip


def cached_model(name: str, cache: Path) -> PulledModel | None:
    """The verified cached copy of ``name`` (catalogue or imported), or None."""
    if not is_model_name(name):
        return None
    model_dir = Path(cache) / name
    if name in CATALOGUE:
        return verify_cached(CATALOGUE[name], model_dir)
    record = read_source(model_dir)
    if record is None or "spec" not in record:
        return None
    return verify_cached(entry_from_record(name, record), model_dir)


def list_cached(cache: Path) -> list[str]:
    """Names with a model file in the cache (not re-verified: cheap, for listings)."""
    cache = Path(cache)
    if not cache.is_dir():
        return []
    return sorted(p.parent.name for p in cache.glob(f"*/{MODEL_FILE}") if p.is_file())


def mkdirs(path: Path) -> list[Path]:
    """mkdir -p, returning the directories it created (deepest last) for cleanup."""
    created = [p for p in [*reversed(path.parents), path] if not p.exists()]
    for p in created:
        p.mkdir()
    return created


def rmdirs_if_empty(created: list[Path]) -> None:
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            break  # not empty (or gone): leave it and its parents


def _to_onnx(
    entry: ModelEntry, file: Path, fmt: str, out: Path, convert: CheckpointConverter | None
) -> str | None:
    """Write the ONNX that ``file`` holds to ``out``; the zip member it came from, if any."""
    if fmt == "zip":
        checks = entry.onnx_checksums
        accept = (lambda p: checks.matches(file_digests(p))) if checks.known else None
        try:
            return archive.extract_member(file, entry.source.member or "*.onnx", out, accept)
        except LookupError as exc:
            raise ModelUnavailable(f"{entry.name}: {exc}") from None
        except (zipfile.BadZipFile, EOFError) as exc:  # a truncated or corrupt download
            raise UnsafeArchive(f"{file}: not a readable zip ({exc}); refused") from None
    if fmt == "pth":
        if entry.source.format != "pth" or entry.variant is None:
            raise ValueError(
                f"{file} is a PyTorch checkpoint but {entry.name} is not published as one; "
                "convert it to ONNX first"
            )
        if convert is None:
            raise ConversionUnavailable(
                f"{entry.name} is published as a PyTorch checkpoint (.pth) that must be "
                f"converted to ONNX, which needs torch and rtmserve's training package: "
                f"{TRAIN_EXTRA_HINT}"
            )
        convert(file, out, entry.variant, entry.input_size)
        return None
    shutil.copyfile(file, out)
    return None


def first_pull(entry: ModelEntry, model_dir: Path) -> dict[str, str | None] | None:
    """What the first install of ``entry``'s artifact recorded in ``source.json`` (``at``,
    ``source_sha256`` of the download, ``sha256`` of the ONNX), if one did. Records written
    before ``first_pull`` existed give their own sums."""
    record = read_source(model_dir)
    if record is None or record.get("url") != entry.source.url:
        return None
    if isinstance(record.get("first_pull"), dict):
        return record["first_pull"]
    converted = record.get("converted_from_checkpoint")
    return {
        "at": record.get("pulled_at"),
        "source_sha256": record.get("source_sha256"),
        "sha256": None if converted else record.get("sha256"),
    }


def _pin_mismatch(
    what: str, kind: str, first: dict[str, str | None], found: str, model_dir: Path
) -> ChecksumMismatch:
    expected = first[kind] or ""
    return ChecksumMismatch(
        what,
        [(f"sha256 recorded at the first pull ({first.get('at')})", expected, found)],
        hint=f"Nothing published pins this file, so the first one seen is trusted; to trust "
        f"another, delete {model_dir} and pull again",
    )


def install_file(
    entry: ModelEntry,
    file: str | Path,
    cache: str | Path,
    origin: str,
    *,
    like: str | None = None,
    convert: CheckpointConverter | None = None,
    trust_first_pull: bool = True,
) -> PulledModel:
    """Verify ``file`` (ONNX, SDK zip or .pth) as ``entry`` and install it into the cache.

    ``trust_first_pull``: hold the official artifact to the sums its first install recorded
    (False for a user's own model imported under a new name, which may be replaced)."""
    file, cache = Path(file), Path(cache)
    model_dir = model_path(cache, entry.name)
    created = mkdirs(model_dir)
    tmps: list[Path] = []

    def tmp(suffix: str) -> Path:
        fd, name = tempfile.mkstemp(dir=model_dir, prefix=TMP_PREFIX, suffix=suffix)
        os.close(fd)
        tmps.append(Path(name))
        return tmps[-1]

    try:
        fmt = archive.detect_format(file)
        first = first_pull(entry, model_dir) if trust_first_pull else None
        source_digests: Digests | None = None
        verified_by: list[str] = []
        strong = False  # a full published digest matched
        if fmt in ("zip", "pth"):  # checked before anything is extracted or unpickled
            source_digests = file_digests(file)
            expected = entry.source.checksums
            if entry.source.format == fmt:
                what = f"{entry.name} ({file.name})"
                if bad := expected.mismatches(source_digests):
                    raise ChecksumMismatch(what, bad)
                if expected.known:
                    verified_by.append(f"{entry.source.filename}: {expected.describe()}")
                strong = expected.strong
                pinned = None if strong or first is None else first.get("source_sha256")
                if pinned and source_digests.sha256 != pinned:
                    assert first is not None
                    raise _pin_mismatch(
                        what, "source_sha256", first, source_digests.sha256, model_dir
                    )
                if pinned:
                    verified_by.append(f"{entry.source.filename}: sha256 of the first pull")
        onnx_tmp = tmp(".onnx")
        member = _to_onnx(entry, file, fmt, onnx_tmp, convert)
        digests = file_digests(onnx_tmp)
        what = f"{entry.name} ONNX ({file.name}" + (f":{member}" if member else "") + ")"
        if bad := entry.onnx_checksums.mismatches(digests):
            raise ChecksumMismatch(what, bad)
        if entry.onnx_checksums.known:
            verified_by.append(f"ONNX: {entry.onnx_checksums.describe()}")
        converted = entry.source.format == "pth"  # torch's export: not byte-stable
        strong = strong or (entry.onnx_checksums.strong and not converted)
        pinned = None if strong or converted or first is None else first.get("sha256")
        if pinned and digests.sha256 != pinned:
            assert first is not None
            raise _pin_mismatch(what, "sha256", first, digests.sha256, model_dir)
        if pinned:
            verified_by.append("ONNX: sha256 of the first pull")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        this_pull = {
            "at": now,
            "source_sha256": source_digests.sha256
            if source_digests and fmt == entry.source.format
            else None,
            "sha256": None if converted else digests.sha256,
        }
        # the first pull's sums stay; ones it could not record (an unpacked file then, the
        # archive now) are recorded now
        pins = {k: (first or {}).get(k) or v for k, v in this_pull.items()}
        report = check_onnx_signature(
            onnx_tmp, entry.spec, label=f"{file}" + (f" (member {member})" if member else "")
        )
        record = {
            "name": entry.name,
            "task": entry.task,
            "url": entry.source.url,
            "official_file": entry.source.filename,
            "member": member,
            "origin": origin,
            "source_sha256": source_digests.sha256 if source_digests else None,
            "converted_from_checkpoint": fmt == "pth",
            "expected": {
                "download": entry.source.checksums.to_dict(),
                "onnx": entry.onnx_checksums.to_dict(),
            },
            **digests.to_dict(),
            "verified": strong,
            "verified_by": verified_by,
            "trust": "published checksum"
            if strong
            else ("first pull" if trust_first_pull else "signature only (a user's model)"),
            "first_pull": None if strong or not trust_first_pull else pins,
            "like": like,
            "dataset": entry.dataset,
            "summary": entry.summary,
            "spec": entry.spec.to_dict(),
            "signature": {
                "inputs": [str(t) for t in report.inputs],
                "outputs": [str(t) for t in report.outputs],
                "dynamic_batch": report.dynamic_batch,
                "notes": list(report.notes),
            },
            "pulled_at": now,
        }
        json_tmp = tmp(".json")
        json_tmp.write_text(json.dumps(record, indent=2) + "\n")
        for f in (onnx_tmp, json_tmp):  # mkstemp makes 0600; Triton may run as another user
            f.chmod(0o644)
        os.replace(onnx_tmp, model_dir / MODEL_FILE)
        os.replace(json_tmp, model_dir / SOURCE_FILE)
        return PulledModel(
            entry.name, model_dir / MODEL_FILE, entry, digests.sha256, digests.git_sha1,
            digests.size, origin, verified=strong,
        )  # fmt: skip
    finally:
        for p in tmps:
            p.unlink(missing_ok=True)
        rmdirs_if_empty(created)
