"""Put models into the runtime repository as numbered versions, and keep configs in step.

Order of writes makes every crash point safe: the version folder appears by one rename (Triton
ignores folders its config does not list), then the configs, then the record. A half-written
version is never visible: it is staged under a dot-name first.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.core.specs import DetectorSpec, PoseSpec

from .configs import (
    PIPELINE_MODEL,
    ServingOptions,
    render_detector,
    render_pipeline,
    render_pose,
    templates_dir,
)
from .records import RECORD_FILE, ModelRecord, read_record, write_atomic, write_record

ONNX_FILE = "model.onnx"


def version_dirs(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _write_configs(model_dir: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = model_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)


def loaded_versions(record: ModelRecord) -> list[int]:
    """Versions Triton keeps loaded: the serving one and the one before it (if any).

    Keeping the previous version loaded lets in-flight requests that named it finish after a
    switch, and makes rollback to it instant.
    """
    older = [v for v in record.versions if v < record.serving_version]
    return sorted({record.serving_version, *older[-1:]})


def _render(record: ModelRecord, options: ServingOptions) -> dict[str, str]:
    spec = record.parsed_spec
    render = render_detector if isinstance(spec, DetectorSpec) else render_pose
    return render(record.name, spec, loaded_versions(record), options)


def sync_configs(repository: Path, name: str, options: ServingOptions) -> ModelRecord:
    record = read_record(repository / name)
    _write_configs(repository / name, _render(record, options))
    return record


def install_model(
    repository: Path,
    name: str,
    spec: DetectorSpec | PoseSpec,
    onnx_file: Path,
    meta: dict[str, Any],
    options: ServingOptions,
    serve: bool = True,
) -> int:
    """Add ``onnx_file`` as the next version of ``name``; make it the serving one if ``serve``."""
    model_dir = repository / name
    model_dir.mkdir(parents=True, exist_ok=True)
    record = read_record(model_dir) if (model_dir / RECORD_FILE).exists() else None
    if record is not None and record.spec.get("kind") != spec.kind:
        raise ValueError(f"{name} is a {record.task} model; cannot add a {spec.kind} version")
    version = max([0, *version_dirs(model_dir), *(record.versions if record else [])]) + 1

    staging = model_dir / f".staging-{version}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        shutil.copyfile(onnx_file, staging / ONNX_FILE)
        shutil.copyfile(templates_dir() / "onnx" / "model.py", staging / "model.py")
        staging.rename(model_dir / str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    meta = {"created": datetime.now(UTC).isoformat(timespec="seconds"), **meta}
    if record is None:
        record = ModelRecord(name, spec.kind, spec.to_dict(), version, {version: meta})
    else:
        record.versions[version] = meta
        record.spec = spec.to_dict()
        if serve:
            record.serving_version = version
    _write_record_and_configs(repository, record, options)
    return version


def set_serving_version(
    repository: Path, name: str, version: int, options: ServingOptions
) -> ModelRecord:
    record = read_record(repository / name)
    if version not in record.versions:
        raise KeyError(f"{name} has no version {version} (has {sorted(record.versions)})")
    record.serving_version = version
    _write_record_and_configs(repository, record, options)
    return record


def _write_record_and_configs(
    repository: Path, record: ModelRecord, options: ServingOptions
) -> None:
    # Configs first so Triton can load the version before the gateway is told to use it.
    _write_configs(repository / record.name, _render(record, options))
    write_record(repository / record.name, record)


def ensure_pipeline(repository: Path, options: ServingOptions) -> None:
    """(Re)write the pipeline model from the templates: code updates apply on every start."""
    model_dir = repository / PIPELINE_MODEL
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(templates_dir() / "pipeline" / "model.py", model_dir / "1" / "model.py")
    _write_configs(model_dir, render_pipeline(options))


def refresh(repository: Path, options: ServingOptions) -> list[str]:
    """Re-render every model's configs (e.g. after the serving options changed)."""
    names = sorted(p.parent.name for p in repository.glob(f"*/{RECORD_FILE}"))
    for name in names:
        sync_configs(repository, name, options)
        for v in version_dirs(repository / name):
            shutil.copyfile(
                templates_dir() / "onnx" / "model.py", repository / name / str(v) / "model.py"
            )
    ensure_pipeline(repository, options)
    return names
