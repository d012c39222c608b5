"""The models the service knows by name: where the official file is, how to check it, how to run it.

The entries are data (``catalogue.json``), read and validated here. Every entry points at
OpenMMLab's own download (``download.openmmlab.com``) so that what we serve is traceable to the
published model zoo. Checksums come from files actually seen (shared/models/SOURCES.md) or, for
checkpoints, from OpenMMLab's naming convention; where nothing is known the entry says so and a
pull records the sha256 it observed.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from service.core.keypoints import keypoint_set, set_name
from service.core.names import MODEL_NAME
from service.core.specs import SPEC_KINDS, ModelSpec, PoseSpec, spec_from_dict

from .checksums import Checksums

Task = Literal["detector", "pose", "one-stage"]
ArtifactFormat = Literal["onnx", "zip", "pth"]


@dataclass(frozen=True)
class Source:
    """One official artifact: a bare ONNX, an MMDeploy SDK zip, or a training checkpoint."""

    url: str
    format: ArtifactFormat
    # zip only: the ONNX member, a glob matched against the member path or any suffix of it
    # after a "/" (so "end2end.onnx" matches "<folder>/end2end.onnx").
    member: str | None = None
    # checksums of the downloaded file itself (the .pth name prefix; unknown for the zips,
    # whose 8-hex tag is the checkpoint's, not the zip's)
    checksums: Checksums = field(default_factory=Checksums)

    def __post_init__(self) -> None:
        if (self.format == "zip") != (self.member is not None):
            raise ValueError("a zip source needs a member pattern, other formats none")

    @property
    def filename(self) -> str:
        return PurePosixPath(urlparse(self.url).path).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.filename).stem


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: Task
    spec: ModelSpec
    source: Source
    dataset: str
    summary: str
    # checksums of the ONNX file that ends up served (for zips: the extracted member)
    onnx_checksums: Checksums = field(default_factory=Checksums)
    ap: float | None = None  # published COCO val2017 AP, for information
    ap_note: str = ""
    params_m: float | None = None  # published parameter count (millions), for information
    variant: str | None = None  # RTMPose size ("t", "s", "m", "l") to rebuild a .pth
    notes: str = ""
    # body, body-feet, wholebody, hand, animal, face (pose models); what the detector finds
    family: str = "body"
    released: bool = True  # False: announced upstream, weights not published (pull says so)
    # False: a checkpoint training/ cannot rebuild (pruned widths): import its ONNX instead
    convertible: bool = True

    def __post_init__(self) -> None:
        if self.spec.kind != self.task:
            raise ValueError(f"{self.name}: task {self.task!r} but spec kind {self.spec.kind!r}")
        if self.source.format == "pth" and self.variant is None:
            raise ValueError(f"{self.name}: a .pth source needs the RTMPose variant to rebuild")

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height), as in the specs."""
        return self.spec.input_size

    @property
    def input_hw(self) -> str:
        """The size the way OpenMMLab's tables write it (height x width)."""
        w, h = self.spec.input_size
        return f"{h}x{w}"

    @property
    def trust(self) -> str:
        """``published checksum``: a full sha256 or git blob id of the download (or of the ONNX
        it holds, unless converted) proves the file. ``first pull``: nothing does (no record,
        or only the 8-hex tag in a checkpoint's name), so the sums seen at the first pull are
        recorded and every later pull must match them."""
        converted = self.source.format == "pth"
        if self.source.checksums.strong or (self.onnx_checksums.strong and not converted):
            return "published checksum"
        return "first pull"

    @property
    def official_names(self) -> frozenset[str]:
        """File names under which the official artifact (or its ONNX) is commonly stored:
        the download's own name and, for SDK zips, ``<zip stem>.onnx`` (rtmlib's renaming)."""
        names = {self.source.filename}
        if self.source.format == "zip":
            names.add(f"{self.source.stem}.onnx")
        return frozenset(names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "spec": self.spec.to_dict(),
            "url": self.source.url,
            "format": self.source.format,
            "member": self.source.member,
            "download_checksums": self.source.checksums.to_dict(),
            "onnx_checksums": self.onnx_checksums.to_dict(),
            "trust": self.trust,
            "dataset": self.dataset,
            "summary": self.summary,
            "ap": self.ap,
            "ap_note": self.ap_note,
            "params_m": self.params_m,
            "variant": self.variant,
            "family": self.family,
            "keypoint_set": set_name(getattr(self.spec, "keypoint_names", None)),
            "released": self.released,
        }


class UnknownModel(KeyError):
    """A name that is not in the catalogue; the message suggests close names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


HAND_DETECTOR = "rtmdet-nano-hand"
ANIMAL_DETECTOR = "yolox-nano-coco80"
CATALOGUE_FILE = Path(__file__).with_name("catalogue.json")


class _SourceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    format: ArtifactFormat
    member: str | None = None
    checksums: dict[str, str] = {}


class _EntryRecord(BaseModel):
    """One model of ``catalogue.json``: ``spec`` holds what differs from the kind's defaults,
    with ``keypoint_set`` naming a set of ``service/core/keypoint_sets.json``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=MODEL_NAME)
    task: Task
    spec: dict[str, Any] = {}
    source: _SourceRecord
    onnx_checksums: dict[str, str] = {}
    dataset: str
    summary: str
    ap: float | None = None
    ap_note: str = ""
    params_m: float | None = None
    variant: Literal["t", "s", "m", "l", "x"] | None = None
    notes: str = ""
    family: Literal["body", "body-feet", "wholebody", "hand", "animal", "face"] = "body"
    released: bool = True
    convertible: bool = True

    def entry(self) -> ModelEntry:
        spec = dict(self.spec)
        if "keypoint_set" in spec:
            spec["keypoint_names"] = keypoint_set(spec.pop("keypoint_set")).keypoints
        unknown = set(spec) - {f.name for f in fields(SPEC_KINDS[self.task])}
        if unknown:
            raise ValueError(f"{self.name}: no such {self.task} spec field(s): {sorted(unknown)}")
        data = self.model_dump(exclude={"spec", "source", "onnx_checksums"})
        source = Source(
            url=self.source.url,
            format=self.source.format,
            member=self.source.member,
            checksums=Checksums(**self.source.checksums),
        )
        return ModelEntry(
            **data,
            spec=spec_from_dict({"kind": self.task, **spec}),
            source=source,
            onnx_checksums=Checksums(**self.onnx_checksums),
        )


class _CatalogueFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    comment: str = Field(default="", alias="$comment")
    models: list[_EntryRecord]


def load_catalogue(path: Path = CATALOGUE_FILE) -> dict[str, ModelEntry]:
    """The catalogue as data: validated against its schema (``_EntryRecord``) as it is read,
    so a typo in a field, a family or a keypoint set is an error at start, not a wrong model."""
    records = _CatalogueFile.model_validate_json(path.read_text()).models
    entries: dict[str, ModelEntry] = {}
    for record in records:
        if record.name in entries:
            raise ValueError(f"{path.name}: {record.name} is listed twice")
        entries[record.name] = record.entry()
    return entries


BUNDLED_DIR = Path(__file__).resolve().parents[2] / "models"


def bundled_card() -> dict[str, Any] | None:
    """``card.json`` of the pose model shipped in ``models/`` (trained by rtmserve), if any."""
    cards = sorted(BUNDLED_DIR.glob("*/card.json"))
    if not cards:
        return None
    card = json.loads(cards[0].read_text())
    card["card"] = str(cards[0].with_name("MODEL_CARD.md").relative_to(BUNDLED_DIR.parent))
    card["file"] = cards[0].with_name(card["file"])
    return card


def _bundled() -> list[ModelEntry]:
    card = bundled_card()
    if card is None:
        return []
    return [
        ModelEntry(
            name=card["name"],
            task="pose",
            spec=PoseSpec(input_size=tuple(card["input_size"]), crop=card.get("crop", "sdk")),
            source=Source(url=card["file"].as_uri(), format="onnx"),
            onnx_checksums=Checksums(sha256=card["sha256"]),
            dataset=card["data_summary"],
            summary=card["summary"],
            ap=card["evaluation"]["ap"] * 100,
            ap_note="coco_val_subset (110 COCO val2017 images), GT boxes: NOT the official zoo",
            params_m=card["params_m"],
            variant=card["variant"],
        )
    ]


CATALOGUE: dict[str, ModelEntry] = {**load_catalogue(), **{e.name: e for e in _bundled()}}
# COCO-80 ids of the mammals AP-10K covers (cat ... giraffe): what the animal detector keeps
COCO_ANIMALS: tuple[int, ...] = CATALOGUE[ANIMAL_DETECTOR].spec.labels  # type: ignore[union-attr]


def list_entries() -> list[ModelEntry]:
    return list(CATALOGUE.values())


def get_entry(name: str) -> ModelEntry:
    try:
        return CATALOGUE[name]
    except KeyError:
        close = difflib.get_close_matches(name, CATALOGUE, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModel(f"unknown model {name!r}.{hint} Known: {', '.join(CATALOGUE)}") from None
