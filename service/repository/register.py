"""Register a new model version (evaluated, gated) and switch serving to it live; roll back.

``register``: check the ONNX against the serving signature, compare its AP with the live
version's on the same evaluation set (refused if lower unless forced), add it as a pending
version, have Triton load it (model-control API, no restart), then switch the record's
serving version. The gateway reads the record on every request, so responses move to the new
version the moment it is ready, while the previous one stays loaded for requests in flight.
``rollback`` switches back the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from service.core.contract import check_onnx_signature
from service.core.specs import PoseSpec, spec_from_dict
from service.metadata import (
    RECORD_FILE,
    ModelRecord,
    model_path,
    onnx_input_size,
    onnx_metadata,
    read_record,
)
from service.settings import ServingOptions
from service.triton.control import TritonControl, TritonControlError

from .install import (
    FAILED,
    HELD,
    ONNX_FILE,
    PENDING,
    crash_point,
    install_model,
    mark_version,
    save,
    set_serving_version,
)

EvaluateLive = Callable[[Path, dict[str, Any]], dict[str, Any]]


class GateRefused(RuntimeError):
    """The candidate evaluates worse than what is live (use force to register anyway)."""


@dataclass(frozen=True)
class Registered:
    name: str
    version: int
    previous: int | None
    ap: float | None
    live_ap: float | None


def comparable(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("gt_sha256", "boxes", "images", "image_ids")
    return all(a.get(k) == b.get(k) for k in keys)


def live_ap(
    repository: Path,
    record: ModelRecord,
    evaluation: dict[str, Any],
    evaluate_live: EvaluateLive | None,
) -> float | None:
    """The serving version's AP on the candidate's evaluation set: recorded, or measured now."""
    meta = record.versions[record.serving_version]
    for past in meta.get("evaluations", []):
        if comparable(past, evaluation):
            return float(past["ap"])
    if evaluate_live is None:
        return None
    onnx_file = repository / record.name / str(record.serving_version) / ONNX_FILE
    return float(evaluate_live(onnx_file, evaluation)["ap"])


def register(
    repository: Path,
    name: str,
    onnx_file: Path,
    evaluation: dict[str, Any] | None,
    options: ServingOptions,
    triton: TritonControl | None,
    spec: PoseSpec | None = None,
    force: bool = False,
    evaluate_live: EvaluateLive | None = None,
    extra_meta: dict[str, Any] | None = None,
    hold: bool = False,
) -> Registered:
    """``hold``: add the version (loaded once, to prove it loads) without serving it: a
    candidate for ``rtmserve models shadow`` / ``canary``, which judge it on live traffic,
    so the AP gate records its comparison instead of refusing."""
    model_dir = model_path(repository, name)
    record = read_record(model_dir) if (model_dir / RECORD_FILE).exists() else None
    if record is not None:
        spec = spec_from_dict(record.spec)  # a new version keeps the model's interface
    elif spec is not None:
        spec = replace(spec, input_size=onnx_input_size(onnx_file) or spec.input_size)
    if spec is None:
        raise ValueError(f"{name} is a new model: give its spec (e.g. --like rtmpose-m)")
    check_onnx_signature(onnx_file, spec)

    ap = float(evaluation["ap"]) if evaluation else None
    live = None
    if record is not None and evaluation is not None:
        live = live_ap(repository, record, evaluation, evaluate_live)
        if live is not None and ap is not None and ap < live and not (force or hold):
            raise GateRefused(
                f"{name}: candidate AP {ap:.4f} < live v{record.serving_version} AP {live:.4f} "
                f"on the same evaluation set ({evaluation.get('dataset')}); not registered "
                "(--force registers it anyway)"
            )
    if record is not None and evaluation is None and not (force or hold):
        raise GateRefused(f"{name}: no evaluation given; the gate needs one (or --force)")

    metadata = onnx_metadata(onnx_file)
    meta: dict[str, Any] = {
        "trained": True,
        "source": f"registered from {onnx_file.name}",
        "parent_version": record.serving_version if record else None,
        "ap": ap,
        "evaluations": [evaluation] if evaluation else [],
        "git_commit": metadata.get("rtmserve.git_commit", "unknown"),
        "checkpoint": metadata.get("rtmserve.checkpoint"),
        "recipe": json.loads(metadata["rtmserve.train_config"])
        if "rtmserve.train_config" in metadata else None,
        "forced": bool(force and live is not None and ap is not None and ap < live),
        **(extra_meta or {}),
    }  # fmt: skip
    version = install_model(repository, name, spec, onnx_file, meta, options, serve=record is None)
    if record is not None and hold:
        if triton is not None:
            try:
                triton.load(name)
                triton.wait_ready(name, version)
            finally:  # held, or failed: either way it leaves Triton
                loaded = triton.version_ready(name, version)
                mark_version(repository, name, version, HELD if loaded else FAILED, options)
                triton.load(name)
        else:
            mark_version(repository, name, version, HELD, options)
    elif record is not None and triton is not None:
        try:
            triton.load(name)
            triton.wait_ready(name, version)
        except TritonControlError as exc:
            mark_version(repository, name, version, FAILED, options, error=str(exc))
            triton.load(name)  # unload the failed version again
            raise
        crash_point("loaded")
        set_serving_version(repository, name, version, options)
        triton.load(name)  # settle: keep new + previous loaded, unload older ones
    elif record is None and triton is not None:
        triton.load(name)
        triton.wait_ready(name, version)
    elif record is not None:
        set_serving_version(repository, name, version, options)
    return Registered(name, version, record.serving_version if record else None, ap, live)


def rollback(
    repository: Path, name: str, version: int, options: ServingOptions, triton: TritonControl | None
) -> ModelRecord:
    """Serve an earlier (or any existing) version again, loading it first if needed."""
    record = read_record(model_path(repository, name))
    if version not in record.versions:
        raise KeyError(f"{name} has no version {version} (has {sorted(record.versions)})")
    if not (repository / name / str(version) / ONNX_FILE).exists():
        raise FileNotFoundError(f"{name} v{version} has no {ONNX_FILE} any more")
    if triton is not None and not triton.version_ready(name, version):
        record.versions[version]["state"] = PENDING
        save(repository, record, options)
        triton.load(name)
        triton.wait_ready(name, version)
    record = set_serving_version(repository, name, version, options)
    if triton is not None:
        triton.load(name)
    return record
