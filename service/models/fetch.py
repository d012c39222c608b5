"""Get a verified ONNX file for a model into the local cache: ``<dest_dir>/<name>/model.onnx``.

Resolution order (first hit wins):

1. the cache itself, when the file there still verifies;
2. local mirror directories (``mirror=`` or ``$RTMSERVE_MODEL_MIRROR``, ``os.pathsep``-separated),
   searched recursively for the official artifact by file name, or by checksum for any name;
   zips, ``.pth`` checkpoints and already-extracted ONNX files are all accepted;
3. the official OpenMMLab URL (skipped with ``allow_download=False``).

Machines that serve models are often offline, hence the mirror and the precise
:class:`ModelUnavailable` message. Every write goes to a temporary file in the target directory
and is renamed into place only once verified, so no partial file is ever left behind.
"""

from __future__ import annotations

import fnmatch
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from .catalogue import (
    CATALOGUE,
    ModelEntry,
    ModelSpec,
    Source,
    get_entry,
    model_spec_from_dict,
)
from .checksums import Checksums, Digests, file_digests
from .convert import convert_checkpoint_to_onnx, ensure_converter_available

ENV_MIRROR = "RTMSERVE_MODEL_MIRROR"
ENV_HOME = "RTMSERVE_HOME"
DEFAULT_HOME = "~/.cache/rtmserve"
MODEL_FILE = "model.onnx"
SOURCE_FILE = "source.json"
_TMP_PREFIX = ".rtmserve-"
_CHUNK = 1 << 20
_PTH_SUFFIXES = (".pth", ".pt", ".ckpt")


class ModelUnavailable(RuntimeError):
    """The model file could not be found or downloaded; the message says how to supply it."""


class ChecksumMismatch(ValueError):
    """A file is not the one expected; the message names expected and found checksums."""

    def __init__(self, what: str, mismatches: list[tuple[str, str, str]]) -> None:
        self.mismatches = mismatches
        detail = "; ".join(f"expected {k} {exp}, found {got}" for k, exp, got in mismatches)
        super().__init__(f"checksum mismatch for {what}: {detail}")


@dataclass(frozen=True)
class PulledModel:
    """A verified ONNX file in the cache and what is known about it."""

    name: str
    path: Path  # <dest_dir>/<name>/model.onnx
    entry: ModelEntry
    sha256: str
    git_sha1: str
    size: int
    origin: str  # "mirror:<path>", "import:<path>" or the URL it was downloaded from
    verified: bool  # matched a published checksum (False: none published; sha256 recorded)
    from_cache: bool = False

    @property
    def spec(self) -> ModelSpec:
        return self.entry.spec

    @property
    def source_json(self) -> Path:
        return self.path.parent / SOURCE_FILE


# --------------------------------------------------------------------------- locations


def rtmserve_home(home: str | Path | None = None) -> Path:
    """``home``, else ``$RTMSERVE_HOME``, else ``~/.cache/rtmserve``."""
    return Path(home or os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser()


def models_dir(home: str | Path | None = None) -> Path:
    return rtmserve_home(home) / "models"


def mirror_dirs(mirror: str | Path | Sequence[str | Path] | None = None) -> list[Path]:
    """Mirror paths from the argument, else from ``$RTMSERVE_MODEL_MIRROR``."""
    if mirror is None:
        items: list[str] = os.environ.get(ENV_MIRROR, "").split(os.pathsep)
    elif isinstance(mirror, str | Path):
        items = str(mirror).split(os.pathsep)
    else:
        items = [str(m) for m in mirror]
    return [Path(i).expanduser().resolve() for i in items if i.strip()]


# --------------------------------------------------------------------------- the cache


def _read_record(model_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((model_dir / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _entry_from_record(name: str, record: dict[str, Any]) -> ModelEntry:
    """The entry of a model imported under a new name (its spec lives in source.json)."""
    spec = model_spec_from_dict(record["spec"])
    return ModelEntry(
        name=name,
        task=spec.kind,
        spec=spec,
        source=Source(url=record.get("url", ""), format="onnx"),
        dataset=record.get("dataset", "custom"),
        summary=record.get("summary", "imported"),
    )


def _verify_cached(entry: ModelEntry, model_dir: Path) -> PulledModel | None:
    model = model_dir / MODEL_FILE
    if not model.is_file():
        return None
    record = _read_record(model_dir)
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
        name=entry.name,
        path=model,
        entry=entry,
        sha256=digests.sha256,
        git_sha1=digests.git_sha1,
        size=digests.size,
        origin=(record or {}).get("origin", "cache"),
        verified=bool((record or {}).get("verified", entry.onnx_checksums.known)),
        from_cache=True,
    )


def cached_model(name: str, dest_dir: str | Path) -> PulledModel | None:
    """The verified cached copy of ``name`` (catalogue or imported), or None."""
    model_dir = Path(dest_dir) / name
    if name in CATALOGUE:
        return _verify_cached(CATALOGUE[name], model_dir)
    record = _read_record(model_dir)
    if record is None or "spec" not in record:
        return None
    return _verify_cached(_entry_from_record(name, record), model_dir)


def list_cached(dest_dir: str | Path) -> list[str]:
    """Names with a model file in the cache (not re-verified: cheap, for listings)."""
    dest_dir = Path(dest_dir)
    if not dest_dir.is_dir():
        return []
    return sorted(p.parent.name for p in dest_dir.glob(f"*/{MODEL_FILE}") if p.is_file())


# --------------------------------------------------------------------------- pull


def pull(
    name: str | ModelEntry,
    dest_dir: str | Path,
    mirror: str | Path | Sequence[str | Path] | None = None,
    allow_download: bool = True,
    *,
    progress: bool = True,
) -> PulledModel:
    """Return a verified ``dest_dir/<name>/model.onnx``, fetching it if needed.

    ``name`` is a catalogue name, a name imported earlier, or a :class:`ModelEntry` (to pull
    something the catalogue does not list). Raises :class:`ModelUnavailable` when no source
    has the file, :class:`ChecksumMismatch` when one has a different file, ``SignatureMismatch``
    when the file's inputs/outputs do not fit the spec.
    """
    dest_dir = Path(dest_dir)
    if isinstance(name, ModelEntry):
        entry = name
    elif name in CATALOGUE:
        entry = CATALOGUE[name]
    else:
        hit = cached_model(name, dest_dir)
        if hit is not None:
            return hit
        entry = get_entry(name)  # raises UnknownModel with suggestions
    hit = _verify_cached(entry, dest_dir / entry.name)
    if hit is not None:
        return hit
    if entry.source.url.startswith("file:"):  # bundled with rtmserve: local, even offline
        local = Path(url2pathname(urlparse(entry.source.url).path))
        return install_file(entry, local, dest_dir, origin=f"bundled:{local}")
    if entry.source.format == "pth":
        ensure_converter_available()  # before fetching a checkpoint we could not convert
    dirs = mirror_dirs(mirror)
    hit = _pull_from_mirrors(entry, dest_dir, dirs)
    if hit is not None:
        return hit
    if not allow_download:
        raise ModelUnavailable(_missing_message(entry, dest_dir, dirs, "offline"))
    return _pull_from_url(entry, dest_dir, dirs, progress)


def _missing_message(entry: ModelEntry, dest_dir: Path, dirs: list[Path], reason: str) -> str:
    src = entry.source
    if src.format == "zip":
        what = f"the ONNX inside it ({src.member}): {entry.onnx_checksums.describe()}"
        alt = f" (or the {src.member} unpacked from it, or {src.stem}.onnx)"
    elif src.format == "pth":
        what = f"the checkpoint: {src.checksums.describe()} (converted to ONNX locally)"
        alt = ""
    else:
        what = entry.onnx_checksums.describe()
        alt = ""
    if dirs:
        searched = ", ".join(f"{d}{'' if d.exists() else ' (does not exist)'}" for d in dirs)
    else:
        searched = f"none (${ENV_MIRROR} is not set)"
    return (
        f"model {entry.name!r} is not available ({reason}).\n"
        f"  missing file:      {src.filename}\n"
        f"  official URL:      {src.url}\n"
        f"  expected checksum: {what}\n"
        f"  looked in:         cache {dest_dir / entry.name}; mirrors: {searched}\n"
        f"To supply it, fetch that URL where there is internet access, then either\n"
        f"  - put the file{alt} in a directory DIR and set {ENV_MIRROR}=DIR "
        f"(or pass --mirror DIR) and pull again, or\n"
        f"  - run: rtmserve models import {entry.name} FILE"
    )


def _pull_from_mirrors(entry: ModelEntry, dest_dir: Path, dirs: list[Path]) -> PulledModel | None:
    from .importer import SignatureMismatch

    failures: list[Exception] = []
    for candidate in _mirror_candidates(entry, dirs, skip=dest_dir / entry.name):
        try:
            return install_file(entry, candidate, dest_dir, origin=f"mirror:{candidate}")
        except (ChecksumMismatch, SignatureMismatch) as exc:
            failures.append(exc)  # a later candidate may still be the right file
    if failures:
        # the mirror holds a file by the official name but not the official content: say so
        # rather than silently downloading over it
        raise failures[0]
    return None


def _member_matches(member: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(member, pattern) or fnmatch.fnmatchcase(member, "*/" + pattern)


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
                if not fn.startswith(_TMP_PREFIX) and p.is_file():
                    yield root, p


def _name_matches(entry: ModelEntry, root: Path, path: Path) -> bool:
    if path.name in entry.official_names:
        return True
    src = entry.source
    if src.format != "zip" or src.member is None:
        return False
    rel = PurePosixPath(path.relative_to(root).as_posix())
    parts = rel.parts
    if src.stem in parts[:-1]:  # an unpacked SDK zip: <zip stem>/.../end2end.onnx
        rest = "/".join(parts[parts.index(src.stem) + 1 :])
        if _member_matches(rest, src.member):
            return True
    # a layout-specific member (rtmpose-ort/rtmdet-nano/end2end.onnx) unpacked anywhere
    return "/" in src.member and _member_matches(rel.as_posix(), src.member)


def _mirror_candidates(entry: ModelEntry, dirs: list[Path], skip: Path) -> Iterator[Path]:
    """Files by official name first, then any file whose checksum proves it is the one."""
    files = list(_walk(dirs, skip))
    named = [p for root, p in files if _name_matches(entry, root, p)]
    yield from named
    onnx_ck, src_ck = entry.onnx_checksums, entry.source.checksums
    for _, p in files:
        if p in named:
            continue
        suffix = p.suffix.lower()
        if suffix == ".onnx" and onnx_ck.known:
            if onnx_ck.matches(file_digests(p)):
                yield p
        elif suffix in _PTH_SUFFIXES and entry.source.format == "pth" and src_ck.known:
            if src_ck.matches(file_digests(p)):
                yield p
        elif (
            suffix == ".zip"
            and entry.source.format == "zip"
            and (
                (src_ck.known and src_ck.matches(file_digests(p)))
                or (onnx_ck.known and _zip_has_member_matching(p, entry))
            )
        ):
            yield p


def _zip_members(zf: zipfile.ZipFile, pattern: str) -> list[zipfile.ZipInfo]:
    return [i for i in zf.infolist() if not i.is_dir() and _member_matches(i.filename, pattern)]


def _zip_has_member_matching(path: Path, entry: ModelEntry) -> bool:
    assert entry.source.member is not None
    try:
        with zipfile.ZipFile(path) as zf:
            for info in _zip_members(zf, entry.source.member):
                with tempfile.TemporaryDirectory(prefix=_TMP_PREFIX) as td:
                    out = Path(td) / "member.onnx"
                    with zf.open(info) as src, out.open("wb") as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
                    if entry.onnx_checksums.matches(file_digests(out)):
                        return True
    except (zipfile.BadZipFile, OSError):
        return False
    return False


def _pull_from_url(
    entry: ModelEntry, dest_dir: Path, dirs: list[Path], progress: bool
) -> PulledModel:
    model_dir = dest_dir / entry.name
    created = _mkdirs(model_dir)
    fd, name = tempfile.mkstemp(
        dir=model_dir, prefix=_TMP_PREFIX, suffix="-" + entry.source.filename
    )
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            _download(entry.source.url, tmp, entry.name if progress else None)
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            TimeoutError,
            ConnectionError,
        ) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ModelUnavailable(
                _missing_message(entry, dest_dir, dirs, f"download failed: {reason}")
            ) from exc
        return install_file(entry, tmp, dest_dir, origin=entry.source.url)
    finally:
        tmp.unlink(missing_ok=True)
        _rmdirs_if_empty(created)


def _download(url: str, out: Path, label: str | None) -> None:
    """Stream ``url`` into ``out`` (the caller owns and removes ``out``)."""
    req = urllib.request.Request(url, headers={"User-Agent": "rtmserve-models/0.1"})
    with urllib.request.urlopen(req, timeout=60) as resp, out.open("wb") as f:
        total = int(resp.headers.get("Content-Length") or 0)
        bar = _Progress(label, total) if label else None
        done = 0
        while chunk := resp.read(_CHUNK):
            f.write(chunk)
            done += len(chunk)
            if bar:
                bar.update(done)
        if bar:
            bar.close(done)
    if total and done != total:
        raise http.client.IncompleteRead(b"", total - done)


class _Progress:
    """Download progress on stderr: one updating line on a terminal, every 10% otherwise."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.tty = sys.stderr.isatty()
        self.last_t = 0.0
        self.last_step = -1

    def _line(self, done: int) -> str:
        mib = done / 2**20
        if self.total:
            return (
                f"downloading {self.label}: {mib:.1f}/{self.total / 2**20:.1f} MiB "
                f"({100 * done // self.total}%)"
            )
        return f"downloading {self.label}: {mib:.1f} MiB"

    def update(self, done: int) -> None:
        if self.tty:
            now = time.monotonic()
            if now - self.last_t >= 0.2:
                self.last_t = now
                print("\r" + self._line(done), end="", file=sys.stderr, flush=True)
            return
        step = (10 * done // self.total) if self.total else done // (16 * 2**20)
        if step != self.last_step:
            self.last_step = step
            print(self._line(done), file=sys.stderr, flush=True)

    def close(self, done: int) -> None:
        if self.tty:
            print("\r" + self._line(done), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- install


def _mkdirs(path: Path) -> list[Path]:
    """mkdir -p, returning the directories it created (deepest last) for cleanup."""
    created = []
    for p in [*reversed(path.parents), path]:
        if not p.exists():
            p.mkdir()
            created.append(p)
    return created


def _rmdirs_if_empty(created: list[Path]) -> None:
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            break  # not empty (or gone): leave it and its parents


def _detect_format(path: Path) -> str:
    """By suffix where it says; sniff otherwise (torch.save also writes zip files)."""
    suffix = path.suffix.lower()
    if suffix in _PTH_SUFFIXES:
        return "pth"
    if suffix in (".onnx", ".zip"):
        return suffix[1:]
    if zipfile.is_zipfile(path):
        return "pth" if _is_torch_zip(path) else "zip"
    return "onnx"


def _is_torch_zip(path: Path) -> bool:
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/data.pkl") or n == "data.pkl" for n in zf.namelist())


def _extract_member(entry: ModelEntry, archive: Path, out: Path) -> str:
    """Copy the entry's ONNX member of ``archive`` to ``out``; return the member name."""
    pattern = entry.source.member or "*.onnx"
    with zipfile.ZipFile(archive) as zf:
        members = _zip_members(zf, pattern)
        if not members:
            names = ", ".join(zf.namelist()[:20])
            raise ModelUnavailable(
                f"{archive} has no member matching {pattern!r} for {entry.name} (it has: {names})"
            )
        for info in members:
            with zf.open(info) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            if len(members) == 1 or entry.onnx_checksums.matches(file_digests(out)):
                return info.filename
        if not entry.onnx_checksums.known:
            listed = ", ".join(m.filename for m in members)
            raise ModelUnavailable(
                f"{archive} has several members matching {pattern!r} ({listed}) and no "
                f"published checksum for {entry.name} tells which one is the model"
            )
        return members[-1].filename  # none verified: the checksum check below reports it


def install_file(
    entry: ModelEntry,
    file: str | Path,
    dest_dir: str | Path,
    origin: str,
    *,
    like: str | None = None,
) -> PulledModel:
    """Verify ``file`` (ONNX, SDK zip or .pth) as ``entry`` and install it into the cache.

    Checks every known checksum of the file and of the resulting ONNX, and the ONNX signature
    against ``entry.spec``; only then renames it to ``dest_dir/<name>/model.onnx`` and writes
    ``source.json``. Used by mirror pulls, downloads and ``import``.
    """
    from .importer import check_onnx_signature

    file, dest_dir = Path(file), Path(dest_dir)
    model_dir = dest_dir / entry.name
    created = _mkdirs(model_dir)
    tmps: list[Path] = []

    def tmp(suffix: str) -> Path:
        fd, name = tempfile.mkstemp(dir=model_dir, prefix=_TMP_PREFIX, suffix=suffix)
        os.close(fd)
        tmps.append(Path(name))
        return tmps[-1]

    try:
        fmt = _detect_format(file)
        source_digests: Digests | None = None
        member = None
        verified_by: list[str] = []
        onnx_tmp = tmp(".onnx")
        if fmt in ("zip", "pth"):
            source_digests = file_digests(file)
            if entry.source.format == fmt:
                bad = entry.source.checksums.mismatches(source_digests)
                if bad:
                    raise ChecksumMismatch(f"{entry.name} ({file.name})", bad)
                if entry.source.checksums.known:
                    verified_by.append(
                        f"{entry.source.filename}: {entry.source.checksums.describe()}"
                    )
        if fmt == "zip":
            member = _extract_member(entry, file, onnx_tmp)
        elif fmt == "pth":
            if entry.source.format != "pth" or entry.variant is None:
                raise ValueError(
                    f"{file} is a PyTorch checkpoint but {entry.name} is not published as one; "
                    "convert it to ONNX first"
                )
            convert_checkpoint_to_onnx(file, onnx_tmp, entry.variant, entry.input_size)
        else:
            shutil.copyfile(file, onnx_tmp)
        digests = file_digests(onnx_tmp)
        bad = entry.onnx_checksums.mismatches(digests)
        if bad:
            what = f"{entry.name} ONNX ({file.name}" + (f":{member}" if member else "") + ")"
            raise ChecksumMismatch(what, bad)
        if entry.onnx_checksums.known:
            verified_by.append(f"ONNX: {entry.onnx_checksums.describe()}")
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
            "sha256": digests.sha256,
            "git_sha1": digests.git_sha1,
            "size": digests.size,
            "verified": bool(verified_by),
            "verified_by": verified_by,
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
            "pulled_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        json_tmp = tmp(".json")
        json_tmp.write_text(json.dumps(record, indent=2) + "\n")
        for f in (onnx_tmp, json_tmp):  # mkstemp makes 0600; Triton may run as another user
            f.chmod(0o644)
        os.replace(onnx_tmp, model_dir / MODEL_FILE)
        os.replace(json_tmp, model_dir / SOURCE_FILE)
        return PulledModel(
            name=entry.name,
            path=model_dir / MODEL_FILE,
            entry=entry,
            sha256=digests.sha256,
            git_sha1=digests.git_sha1,
            size=digests.size,
            origin=origin,
            verified=bool(verified_by),
        )
    finally:
        for p in tmps:
            p.unlink(missing_ok=True)
        _rmdirs_if_empty(created)


__all__ = [
    "DEFAULT_HOME",
    "ENV_HOME",
    "ENV_MIRROR",
    "MODEL_FILE",
    "SOURCE_FILE",
    "ChecksumMismatch",
    "Checksums",
    "ModelUnavailable",
    "PulledModel",
    "cached_model",
    "install_file",
    "list_cached",
    "mirror_dirs",
    "models_dir",
    "pull",
    "rtmserve_home",
]
