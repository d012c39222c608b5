"""Which model and version serves a request, and what the service says about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.repository.records import ModelRecord, RecordCache, read_defaults
from service.settings import Settings
from service.triton.client import ModelRef

from .errors import UnknownModel

FALLBACK_DEFAULTS = {"detector": "rtmdet-nano", "pose_model": "rtmpose-m"}


@dataclass(frozen=True)
class ServedModel:
    ref: ModelRef
    task: str
    meta: dict[str, Any]

    @property
    def trained(self) -> bool:
        return bool(self.meta.get("trained", True))

    @property
    def warning(self) -> str | None:
        if self.trained:
            return self.meta.get("notice")  # e.g. the bundled model: not the official weights
        return (
            f"{self.ref.name} v{self.ref.version} is an UNTRAINED export with seeded random "
            "weights: its keypoints are meaningless. Pull official weights "
            f"(rtmserve models pull {self.ref.name}) or register a trained model."
        )


class ModelIndex:
    """Reads the runtime repository's records (cached by file mtime)."""

    def __init__(self, repository: Path, settings: Settings | None = None) -> None:
        self.repository = Path(repository)
        self.settings = settings
        self.records = RecordCache(repository)

    def record(self, name: str) -> ModelRecord:
        try:
            return self.records.get(name)
        except KeyError:
            known = ", ".join(self.records.names()) or "none"
            raise UnknownModel(f"no model named {name!r} (available: {known})") from None

    def default(self, task: str) -> str:
        """The model a request that names none gets: the setting, else ``prepare``'s choice."""
        key = "pose_model" if task == "pose" else "detector"
        explicit = getattr(self.settings, key) if self.settings else None
        return explicit or read_defaults(self.repository).get(key) or FALLBACK_DEFAULTS[key]

    def serving(self, name: str | None, task: str) -> ServedModel:
        """The serving version of ``name`` (``None``: the default model of that task)."""
        name = name or self.default(task)
        record = self.record(name)
        if record.task != task:
            raise UnknownModel(f"{name!r} is a {record.task} model, not a {task} model")
        v = record.serving_version
        return ServedModel(ModelRef(name, v), task, record.versions.get(v, {}))

    def keypoint_names(self, model: ServedModel | None) -> tuple[str, ...]:
        if model is None:
            return ()
        spec = self.record(model.ref.name).parsed_spec
        return spec.keypoint_names  # type: ignore[union-attr]  # pose models only

    def all(self) -> list[ModelRecord]:
        return [self.records.get(n) for n in self.records.names()]
