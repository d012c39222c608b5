"""Put models into the runtime repository as numbered versions, and keep configs in step.

Writes are ordered so that every crash point leaves a valid repository: a version is staged
under a dot-name and appears by one rename (Triton ignores folders its config does not list),
then the configs are written, then the record (each file replaced atomically). A version added
without being served yet is ``pending``: listed in the config so Triton can load it before
anyone is told to use it.
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.core.contract import COPY_PIPELINE_MODEL, PIPELINE_MODEL
from service.core.plans import tensorrt_for_release, usable_plans
from service.core.specs import (
    ONE_STAGE_MAX_BATCH,
    POSE_MAX_BATCH,
    ModelSpec,
    OneStageSpec,
    PoseSpec,
)
from service.metadata import (
    ONNX_FILE,
    RECORD_FILE,
    ModelRecord,
    model_path,
    onnx_input_batch,
    read_record,
    write_atomic,
    write_record,
)
from service.settings import ServingOptions

from .configs import render_model, render_pipeline, templates_dir

TRT_CACHE = "trt-cache"  # beside the repository: engines the TensorRT provider builds
PENDING, SERVED, FAILED, ABANDONED = "pending", "served", "failed", "abandoned"
HELD = "held"  # registered, loaded once to prove it loads, serving nobody (a candidate-to-be)


def version_dirs(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def loaded_versions(record: ModelRecord) -> list[int]:
    """What Triton keeps loaded: the serving version, the one served before it (so requests
    that named it finish, and rollback to it is instant), any pending one and a candidate
    on trial (shadow or canary)."""
    pending = {v for v, m in record.versions.items() if m.get("state") == PENDING}
    keep = {record.serving_version, record.previous_version, record.candidate_version, *pending}
    return sorted(v for v in keep if v is not None)


def trt_cache_dir(repository: Path, name: str) -> Path:
    return repository.parent / TRT_CACHE / name


def _write_model_configs(repository: Path, record: ModelRecord, options: ServingOptions) -> None:
    """Render and write a model's configs, and create every folder they name. ONNX Runtime's
    TensorRT provider creates only the last level of its engine-cache path and fails to load
    the model when the parent is missing, so the whole path exists before Triton reads it."""
    versions = loaded_versions(record)
    model_dir = model_path(repository, record.name)
    tensorrt = tensorrt_for_release(options.triton_release)
    plans = usable_plans([model_dir / str(v) for v in versions], tensorrt)
    cache = trt_cache_dir(repository, record.name)
    cache.mkdir(parents=True, exist_ok=True)
    files = render_model(record.name, record.parsed_spec, versions, options, plans, str(cache))
    _write_configs(model_dir, files)


def _write_configs(model_dir: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = model_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)


def save(repository: Path, record: ModelRecord, options: ServingOptions) -> None:
    """Configs first, then the record: Triton may load what the record will point at."""
    _write_model_configs(repository, record, options)
    write_record(model_path(repository, record.name), record)


def sync_configs(repository: Path, name: str, options: ServingOptions) -> ModelRecord:
    record = read_record(model_path(repository, name))
    _write_model_configs(repository, record, options)
    return record


def _clean_staging(model_dir: Path) -> None:
    """Staging folders left by a crashed install never became versions: remove them."""
    for stale in model_dir.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)


def crash_point(name: str) -> None:
    """Fault injection for the crash-safety tests: ``RTMSERVE_CRASH_AT=<name>`` kills the
    process here, as a power cut or ``kill -9`` would."""
    if os.environ.get("RTMSERVE_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def install_model(
    repository: Path,
    name: str,
    spec: ModelSpec,
    onnx_file: Path,
    meta: dict[str, Any],
    options: ServingOptions,
    serve: bool = True,
) -> int:
    """Add ``onnx_file`` as the next version of ``name``: serving now, or ``pending``."""
    spec = _with_batch(spec, onnx_file)
    model_dir = model_path(repository, name)
    model_dir.mkdir(parents=True, exist_ok=True)
    _clean_staging(model_dir)
    record = read_record(model_dir) if (model_dir / RECORD_FILE).exists() else None
    if record is not None and record.spec.get("kind") != spec.kind:
        raise ValueError(f"{name} is a {record.task} model; cannot add a {spec.kind} version")
    version = max([0, *version_dirs(model_dir), *(record.versions if record else [])]) + 1

    staging = model_dir / f".staging-{version}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        shutil.copyfile(onnx_file, staging / ONNX_FILE)
        shutil.copyfile(templates_dir() / "onnx" / "model.py", staging / "model.py")
        crash_point("staged")
        staging.rename(model_dir / str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    crash_point("version_dir")

    meta = {"created": datetime.now(UTC).isoformat(timespec="seconds"), **meta}
    if record is None:
        record = ModelRecord(name, spec.kind, spec.to_dict(), version, {version: meta})
        record.versions[version]["state"] = SERVED
    else:
        for m in record.versions.values():  # an older registration that never finished
            if m.get("state") == PENDING:
                m["state"] = ABANDONED
        meta["state"] = PENDING
        record.versions[version] = meta
        record.spec = spec.to_dict()
        if serve:
            switch_serving(record, version)
    _write_model_configs(repository, record, options)
    crash_point("configs")
    write_record(model_dir, record)
    return version


def _with_batch(spec: ModelSpec, onnx_file: Path) -> ModelSpec:
    """A pose or one-stage export fixed at batch 1 is served one crop or image at a time
    (``max_batch`` 1); one with a batch axis lets Triton batch them."""
    if not isinstance(spec, PoseSpec | OneStageSpec):
        return spec
    batch = onnx_input_batch(onnx_file)
    if batch is None:
        most = POSE_MAX_BATCH if isinstance(spec, PoseSpec) else ONE_STAGE_MAX_BATCH
        return spec if spec.max_batch > 1 else replace(spec, max_batch=most)
    if batch != 1:
        raise ValueError(
            f"{onnx_file.name} is exported at a fixed batch of {batch}: export it with a dynamic "
            "batch axis, or at batch 1 (served one crop at a time)"
        )
    return replace(spec, max_batch=1)


def switch_serving(record: ModelRecord, version: int) -> None:
    """``version`` serves now (in memory: the caller saves); the one before stays loaded."""
    if version != record.serving_version:
        record.previous_version = record.serving_version
    record.serving_version = version
    record.versions[version]["state"] = SERVED
    if record.candidate_version == version:  # served now (rolled back to, say): no trial
        record.candidate = None


def set_serving_version(
    repository: Path, name: str, version: int, options: ServingOptions
) -> ModelRecord:
    record = read_record(model_path(repository, name))
    if version not in record.versions:
        raise KeyError(f"{name} has no version {version} (has {sorted(record.versions)})")
    switch_serving(record, version)
    save(repository, record, options)
    return record


def mark_version(
    repository: Path, name: str, version: int, state: str, options: ServingOptions, **extra: Any
) -> ModelRecord:
    record = read_record(model_path(repository, name))
    record.versions[version].update(state=state, **extra)
    save(repository, record, options)
    return record


def ensure_pipeline(repository: Path, options: ServingOptions) -> None:
    """(Re)write the pipeline models from the templates: code updates apply on every start."""
    for name, copies in ((PIPELINE_MODEL, False), (COPY_PIPELINE_MODEL, True)):
        model_dir = repository / name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(templates_dir() / "pipeline" / "model.py", model_dir / "1" / "model.py")
        _write_configs(model_dir, render_pipeline(options, copies))


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
