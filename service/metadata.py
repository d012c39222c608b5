"""What rtmserve records about a model, on disk, as JSON written atomically. One module for
every record, so each is read and written one way:

- ``source.json`` beside a cached ONNX file (``<home>/models/<name>/``): where it came from,
  its checksums and signature (``service.models``);
- ``rtmserve.json`` beside Triton's ``config.pbtxt`` in the runtime repository: the model's
  pre/post spec, which version serves, and per-version metadata (source, checksum, trained or
  not, evaluation);
- ``defaults.json`` at the repository's root: the models ``prepare`` chose to serve;
- the ``metadata_props`` an export writes into the ONNX file (training recipe, commit).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from service.core.contract import RECORD_FILE as RECORD_FILE  # re-exported
from service.core.names import MODEL_NAME as MODEL_NAME  # re-exported: one rule
from service.core.names import check_model_name, is_model_name
from service.core.specs import ModelSpec, spec_from_dict

# what a model may be called: service.core.names (also read by the Triton pipeline)
SOURCE_FILE = "source.json"
ONNX_FILE = "model.onnx"  # each version's network: <repository>/<model>/<version>/model.onnx
DEFAULTS_FILE = "defaults.json"  # repository level: which models serve when none is named


@dataclass
class ModelRecord:
    name: str
    task: str  # a spec kind: "detector", "pose", "one-stage"
    spec: dict[str, Any]
    serving_version: int
    versions: dict[int, dict[str, Any]] = field(default_factory=dict)
    previous_version: int | None = None  # served before the last switch; kept loaded
    # a version on trial beside the serving one (service.repository.candidates): version,
    # mode ("shadow" | "canary"), share, rule, started
    candidate: dict[str, Any] | None = None

    @property
    def candidate_version(self) -> int | None:
        return int(self.candidate["version"]) if self.candidate else None

    @property
    def parsed_spec(self) -> ModelSpec:
        return spec_from_dict(self.spec)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "spec": self.spec,
            "serving_version": self.serving_version,
            "previous_version": self.previous_version,
            "candidate": self.candidate,
            "versions": {str(k): v for k, v in sorted(self.versions.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecord:
        return cls(
            name=data["name"],
            task=data["task"],
            spec=data["spec"],
            serving_version=int(data["serving_version"]),
            versions={int(k): v for k, v in data.get("versions", {}).items()},
            previous_version=data.get("previous_version"),
            candidate=data.get("candidate"),
        )


def model_path(root: Path, name: str) -> Path:
    """``root/name`` (the repository or the cache), once ``name`` is proven a plain folder name:
    every path built from a model name goes through here."""
    return Path(root) / check_model_name(name)


def read_record(model_dir: Path) -> ModelRecord:
    return ModelRecord.from_dict(json.loads((model_dir / RECORD_FILE).read_text()))


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file + rename so readers never see a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(model_dir: Path, record: ModelRecord) -> None:
    write_atomic(model_dir / RECORD_FILE, json.dumps(record.to_dict(), indent=2) + "\n")


class RecordCache:
    """Reads records lazily and re-reads one only when its file changed (cheap per request)."""

    def __init__(self, repository: Path) -> None:
        self.repository = Path(repository)
        self._cache: dict[str, tuple[int, ModelRecord]] = {}

    def get(self, name: str) -> ModelRecord:
        if not is_model_name(name):  # never a path outside the repository
            raise KeyError(name)
        path = self.repository / name / RECORD_FILE
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            raise KeyError(name) from None
        cached = self._cache.get(name)
        if cached is None or cached[0] != mtime:
            cached = (mtime, read_record(path.parent))
            self._cache[name] = cached
        return cached[1]

    def names(self) -> list[str]:
        return sorted(p.parent.name for p in self.repository.glob(f"*/{RECORD_FILE}"))


def read_defaults(repository: Path) -> dict[str, str]:
    try:
        return json.loads((Path(repository) / DEFAULTS_FILE).read_text())
    except FileNotFoundError:
        return {}


def write_defaults(repository: Path, **defaults: str) -> None:
    current = read_defaults(repository)
    write_atomic(Path(repository) / DEFAULTS_FILE, json.dumps({**current, **defaults}, indent=2))


def read_source(model_dir: Path) -> dict[str, Any] | None:
    """A cached model's ``source.json``, or None when missing or unreadable."""
    try:
        record = json.loads((Path(model_dir) / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def onnx_metadata(path: Path) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def onnx_input_batch(path: Path) -> int | None:
    """The fixed batch size of the first input, or None when its batch axis is dynamic."""
    model = onnx.load(str(path), load_external_data=False)
    first = model.graph.input[0].type.tensor_type.shape.dim[0]
    return first.dim_value if first.HasField("dim_value") and first.dim_value > 0 else None


def onnx_input_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a static-size NCHW input, as the specs write sizes."""
    model = onnx.load(str(path), load_external_data=False)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return (dims[3], dims[2]) if len(dims) == 4 and dims[2] > 0 and dims[3] > 0 else None
