"""``rtmserve.json``: what rtmserve knows about one model in the runtime repository.

It sits next to Triton's ``config.pbtxt`` and holds the model's pre/post spec, which version
serves, and per-version metadata (source, checksum, trained or not, evaluation). The Triton
pipeline model and the gateway both read it, so it is plain JSON, written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.core.specs import DetectorSpec, PoseSpec, spec_from_dict

RECORD_FILE = "rtmserve.json"
DEFAULTS_FILE = "defaults.json"  # repository level: which models serve when none is named


@dataclass
class ModelRecord:
    name: str
    task: str  # "detector" | "pose"
    spec: dict[str, Any]
    serving_version: int
    versions: dict[int, dict[str, Any]] = field(default_factory=dict)
    previous_version: int | None = None  # served before the last switch; kept loaded

    @property
    def parsed_spec(self) -> DetectorSpec | PoseSpec:
        return spec_from_dict(self.spec)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "spec": self.spec,
            "serving_version": self.serving_version,
            "previous_version": self.previous_version,
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
        )


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
