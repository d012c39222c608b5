"""Which model and version serves a request, and what the service says about it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.core.specs import ModelSpec
from service.metadata import ModelRecord, RecordCache, is_model_name, read_defaults
from service.settings import OFFICIAL_POSE_MODEL, Settings
from service.triton.client import ModelRef

from .errors import InvalidParameter, UnknownModel
from .trials import Trial

# what a request's ``pose_model`` may name: a top-down pose model or a one-stage one (RTMO)
POSE_TASKS = ("pose", "one-stage")


@dataclass(frozen=True)
class ServedModel:
    name: str
    version: int
    task: str
    spec: ModelSpec
    meta: dict[str, Any]
    role: str = "live"  # "canary": a candidate on trial answers this request

    @property
    def ref(self) -> ModelRef:
        """How the pipeline model is told about it."""
        return ModelRef(self.name, self.version, self.spec_json)

    @property
    def spec_json(self) -> str:
        """The spec as the pipeline model reads it with each request."""
        return json.dumps(self.spec.to_dict(), separators=(",", ":"))

    @property
    def one_stage(self) -> bool:
        return self.task == "one-stage"

    @property
    def trained(self) -> bool:
        return bool(self.meta.get("trained", True))

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        return getattr(self.spec, "keypoint_names", ())

    @property
    def warning(self) -> str | None:
        if self.trained:
            return self.meta.get("notice")  # e.g. the bundled model: not the official weights
        return (
            f"{self.name} v{self.version} is an UNTRAINED export with seeded random "
            "weights: its keypoints are meaningless. Pull official weights "
            f"(rtmserve models pull {self.name}) or register a trained model."
        )


class ModelIndex:
    """Reads the runtime repository's records (cached by file mtime)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.repository = settings.repository_dir
        self.records = RecordCache(self.repository)
        # versions READY on this gateway's Triton (the model keeper's last look); None: unknown
        self.loaded: Callable[[], dict[str, set[int]] | None] = lambda: None
        # decides which requests a canary answers (service.app.trials); None: no trials
        self.canary: Callable[[Trial | None, bool], bool] = lambda trial, stream: False

    def wanted_versions(self) -> list[tuple[str, int]]:
        """Every model's serving version, and a candidate on trial (for the model keeper)."""
        wanted = []
        for r in self.all():
            wanted.append((r.name, r.serving_version))
            if r.candidate_version is not None:
                wanted.append((r.name, r.candidate_version))
        return wanted

    def _here(self, name: str, version: int) -> bool:
        """Ready on this gateway's Triton (True while the keeper has not looked yet)."""
        loaded = self.loaded()
        return loaded is None or version in loaded.get(name, set())

    def trial(self, name: str) -> Trial | None:
        """The trial of ``name``, when its candidate is ready here."""
        try:
            trial = Trial.of(self.records.get(name))
        except KeyError:
            return None
        return trial if trial is not None and self._here(name, trial.version) else None

    def candidate(self, trial: Trial, role: str) -> ServedModel:
        """The trial's candidate as it answers (``canary``) or gets copies (``shadow``)."""
        record = self.records.get(trial.name)
        v = trial.version
        return ServedModel(trial.name, v, record.task, record.parsed_spec, record.versions[v], role)

    def record(self, name: str) -> ModelRecord:
        if not is_model_name(name):  # never a path outside the repository
            raise UnknownModel(f"{name!r} is not a model name")
        try:
            return self.records.get(name)
        except KeyError:
            known = ", ".join(self.records.names()) or "none"
            raise UnknownModel(f"no model named {name!r} (available: {known})") from None

    def default(self, task: str) -> str:
        """The model a request that names none gets: the setting, else ``prepare``'s choice."""
        if task == "detector":
            return self.settings.detector
        return self.settings.pose_model or read_defaults(self.repository).get(
            "pose_model", OFFICIAL_POSE_MODEL
        )

    def serving(self, name: str | None, task: str) -> ServedModel:
        """The serving version of ``name`` (``None``: the default model of that task)."""
        name = name or self.default(task)
        record = self.record(name)
        if record.task != task and not (task == "pose" and record.task in POSE_TASKS):
            raise UnknownModel(f"{name!r} is a {record.task} model, not a {task} model")
        v = record.serving_version
        here = (self.loaded() or {}).get(name)
        if here and v not in here:  # switched by another replica, not loaded here yet: the
            ready = [x for x in here if x in record.versions]  # newest version that is
            v = max(ready) if ready else v
        return ServedModel(name, v, record.task, record.parsed_spec, record.versions.get(v, {}))

    def resolve(
        self,
        detector: str | None,
        pose_model: str | None,
        keypoints: bool = True,
        stream: bool = False,
    ) -> tuple[ServedModel | None, ServedModel | None]:
        """(detector, pose) for a request: no detector for a one-stage pose model, which
        finds the people itself (naming one anyway is a mistake worth a 422); otherwise the
        one named, else the pose model's family detector (hands: the hand detector), else the
        default person detector. A canary on trial answers its share of requests (``stream``:
        a whole stream, so its tracks never change version midway)."""
        pose = self.serving(pose_model, "pose") if keypoints else None
        trial = self.trial(pose.name) if pose is not None else None
        if trial is not None and self.canary(trial, stream):
            pose = self.candidate(trial, "canary")
        if pose is not None and pose.one_stage:
            if detector:
                raise InvalidParameter(
                    f"{pose.name} is a one-stage model: it finds the people itself and takes "
                    "no detector; leave detector unset"
                )
            return None, pose
        family = getattr(pose.spec, "detector", None) if pose is not None else None
        if not detector and family and family not in self.records.names():
            raise UnknownModel(
                f"{pose.name} finds its subjects with {family}, which is not installed: "  # type: ignore[union-attr]
                f"rtmserve models pull {family} (or name a detector)"
            )
        return self.serving(detector or family, "detector"), pose

    def all(self) -> list[ModelRecord]:
        return [self.records.get(n) for n in self.records.names()]
