"""The models the service knows by name: where the official file is, how to check it, how to run it.

Every entry points at OpenMMLab's own download (``download.openmmlab.com``) so that what we serve
is traceable to the published model zoo. Checksums come from files actually seen
(``/work/shared/models/SOURCES.md``) or, for checkpoints, from OpenMMLab's naming convention;
where nothing is known the entry says so and a pull records the sha256 it observed.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlparse

from service.core.keypoints import keypoint_set, set_name
from service.core.specs import DetectorSpec, ModelSpec, OneStageSpec, PoseSpec
from service.core.variants import RTMPOSE_SIZES

from .checksums import Checksums

Task = Literal["detector", "pose", "one-stage"]
ArtifactFormat = Literal["onnx", "zip", "pth"]

_OMM = "https://download.openmmlab.com/mmpose/v1/projects"


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


def _rtmpose(
    variant: str, suffix: str, source: Source, dataset: str, ap: float, **kw
) -> ModelEntry:
    trained_on = {"body7": "7 body datasets", "aic-coco": "AIC+COCO"}[dataset]
    return ModelEntry(
        name=f"rtmpose-{variant}{suffix}",
        task="pose",
        spec=PoseSpec(),
        source=source,
        dataset=dataset,
        summary=f"RTMPose-{variant} top-down pose, COCO-17, trained on {trained_on}"
        + (" (training checkpoint; converted to ONNX locally)" if source.format == "pth" else ""),
        ap=ap,
        ap_note="COCO val2017, flip test, 56.4-AP detector boxes",
        params_m=RTMPOSE_SIZES[variant].published_params_m,
        variant=variant,
        **kw,
    )


def _rtmpose_body7(variant: str, tag: str, ap: float, blob: str | None) -> ModelEntry:
    url = f"{_OMM}/rtmposev1/onnx_sdk/"
    url += f"rtmpose-{variant}_simcc-body7_pt-body7_420e-256x192-{tag}_20230504.zip"
    source = Source(url=url, format="zip", member="end2end.onnx")
    return _rtmpose(variant, "", source, "body7", ap, onnx_checksums=Checksums(git_sha1=blob))


def _rtmpose_aic_coco(variant: str, file_variant: str, tag: str, ap: float) -> ModelEntry:
    url = f"{_OMM}/rtmposev1/"
    url += f"rtmpose-{file_variant}_simcc-aic-coco_pt-aic-coco_420e-256x192-{tag}_20230126.pth"
    source = Source(url=url, format="pth", checksums=Checksums(sha256_prefix=tag))
    return _rtmpose(variant, "-aic-coco", source, "aic-coco", ap)


HAND_DETECTOR = "rtmdet-nano-hand"
ANIMAL_DETECTOR = "yolox-nano-coco80"
# COCO-80 ids of the mammals AP-10K covers: cat, dog, horse, sheep, cow, elephant, bear, zebra,
# giraffe
COCO_ANIMALS = (15, 16, 17, 18, 19, 20, 21, 22, 23)
# family -> (keypoint set, what it is)
_FAMILY = {
    "body": ("coco", "COCO-17 body"),
    "body-feet": ("halpe26", "Halpe-26 (body + feet)"),
    "wholebody": ("coco_wholebody", "COCO-WholeBody-133 (body, feet, face, hands)"),
    "hand": ("hand21", "hand-21"),
    "animal": ("ap10k", "AP-10K-17 (animals)"),
    "face": ("face106", "face-106"),
}
_README = "RTMPose README"
_MEGVII = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download"


def _family(name: str, family: str, size: tuple[int, int], source: Source, dataset: str,
            ap: float | None = None, ap_note: str = "", **kw: Any) -> ModelEntry:  # fmt: skip
    kset, what = _FAMILY[family]
    spec = PoseSpec(
        input_size=size,
        keypoint_names=keypoint_set(kset).keypoints,
        detector={"hand": HAND_DETECTOR, "animal": ANIMAL_DETECTOR}.get(family),
    )
    return ModelEntry(
        name=name,
        task="pose",
        spec=spec,
        source=source,
        dataset=dataset,
        summary=f"{name}: top-down {what}, {size[1]}x{size[0]}, trained on {dataset}",
        ap=ap,
        ap_note=ap_note,
        family=family,
        **kw,
    )


def _zip(stem: str, folder: str = "rtmposev1/onnx_sdk") -> Source:
    return Source(url=f"{_OMM}/{folder}/{stem}.zip", format="zip", member="end2end.onnx")


def _pth(stem: str) -> Source:
    tag = stem.split("-")[-1].split("_")[0]  # OpenMMLab names: ...-<sha256 prefix>_<date>
    return Source(url=f"{_OMM}/rtmposev1/{stem}.pth", format="pth",
                  checksums=Checksums(sha256_prefix=tag))  # fmt: skip


_BODY7_384 = "rtmpose-{}_simcc-body7_pt-body7_420e-384x288-{}_20230504"
_AIC_COCO_384 = "rtmpose-{}_simcc-aic-coco_pt-aic-coco_420e-384x288-{}_20230228"
_HALPE = "rtmpose-{}_simcc-body7_pt-body7-halpe26_700e-{}_{}"
_WHOLE = "rtmpose-{}_simcc-coco-wholebody_pt-aic-coco_270e-{}"
_RTMW = "rtmw-dw-{}_simcc-cocktail14_270e-{}_20231122"
_PRUNED = (
    "https://download.openmmlab.com/mmrazor/v1/pruning/group_fisher/rtmpose-s/"
    "group_fisher_finetune_rtmpose-s_8xb256-420e_aic-coco-256x192.pth"
)
_FACE = (
    "https://github.com/open-mmlab/mmpose/blob/main/projects/rtmpose/rtmpose/"
    "face_2d_keypoint/rtmpose-m_8xb64-120e_lapa-256x256.py"
)


def _families() -> list[ModelEntry]:
    """The seed's model zoo beyond COCO-17 at 256x192: the URLs OpenMMLab publishes (the SDK
    zips are the ones rtmlib downloads); AP as the RTMPose README gives it, where it does."""
    body_ap, whole_ap = f"COCO val2017 ({_README}, body7)", "COCO-WholeBody val, whole-body AP"
    hand_detector = ModelEntry(
        name=HAND_DETECTOR,
        task="detector",
        spec=DetectorSpec(),
        source=_zip("rtmdet_nano_8xb32-300e_hand-267f9c8f"),
        dataset="hand5",
        summary="RTMDet-nano hand detector (MMDeploy end2end, NMS in graph, batch 1)",
        ap=76.0,
        ap_note=f"OneHand10K bbox AP ({_README})",
        family="hand",
    )
    animal_detector = ModelEntry(
        name=ANIMAL_DETECTOR,
        task="detector",
        spec=DetectorSpec(
            input_size=(416, 416),
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            head="yolox",
            labels=COCO_ANIMALS,
            score_thr=0.1,
            nms_thr=0.45,
        ),
        source=Source(url=f"{_MEGVII}/0.1.1rc0/yolox_nano.onnx", format="onnx"),
        dataset="coco-80",
        summary="Megvii YOLOX-nano COCO-80 (raw head: decoded with class-aware NMS in the "
        "pipeline), kept to the animal classes: the AP-10K models' detector",
        ap=25.8,
        ap_note="COCO val2017 box AP, all 80 classes (Megvii's README)",
        params_m=0.91,
        family="animal",
    )
    return [
        hand_detector,
        animal_detector,
        _family(
            "rtmpose-m-384",
            "body",
            (288, 384),
            _pth(_BODY7_384.format("m", "65e718c4")),
            "body7",
            76.6,
            body_ap,
            variant="m",
        ),
        _family(
            "rtmpose-l-384",
            "body",
            (288, 384),
            _pth(_BODY7_384.format("l", "3f5a1437")),
            "body7",
            78.3,
            body_ap,
            variant="l",
        ),
        _family(
            "rtmpose-m-384-aic-coco",
            "body",
            (288, 384),
            _pth(_AIC_COCO_384.format("m", "a62a0b32")),
            "aic-coco",
            77.0,
            f"COCO val2017 ({_README}, AIC+COCO)",
            variant="m",
        ),
        _family(
            "rtmpose-l-384-aic-coco",
            "body",
            (288, 384),
            _pth(_AIC_COCO_384.format("l", "97d6cb0f")),
            "aic-coco",
            77.3,
            f"COCO val2017 ({_README}, AIC+COCO)",
            variant="l",
        ),
        _family(
            "rtmpose-x-384",
            "body",
            (288, 384),
            _zip("rtmpose-x_simcc-body7_pt-body7_700e-384x288-71d7b7e9_20230629"),
            "body7",
        ),
        _family(
            "rtmpose-s-halpe26",
            "body-feet",
            (192, 256),
            _zip(_HALPE.format("s", "256x192-7f134165", "20230605")),
            "body7",
        ),
        _family(
            "rtmpose-m-halpe26",
            "body-feet",
            (192, 256),
            _zip(_HALPE.format("m", "256x192-4d3e73dd", "20230605")),
            "body7",
        ),
        _family(
            "rtmpose-x-halpe26",
            "body-feet",
            (288, 384),
            _zip(_HALPE.format("x", "384x288-7fb6e239", "20230606")),
            "body7",
        ),
        _family(
            "rtmpose-m-wholebody",
            "wholebody",
            (192, 256),
            _pth(_WHOLE.format("m", "256x192-cd5e845c_20230123")),
            "coco-wholebody",
            60.4,
            whole_ap,
            variant="m",
        ),
        _family(
            "rtmpose-l-wholebody",
            "wholebody",
            (288, 384),
            _pth(_WHOLE.format("l", "384x288-eaeb96c8_20230125")),
            "coco-wholebody",
            67.0,
            whole_ap,
            variant="l",
        ),
        _family(
            "rtmw-l-m",
            "wholebody",
            (192, 256),
            _zip(_RTMW.format("l-m", "256x192"), "rtmw/onnx_sdk"),
            "cocktail14",
        ),
        _family(
            "rtmw-x-l",
            "wholebody",
            (288, 384),
            _zip(_RTMW.format("x-l", "384x288"), "rtmw/onnx_sdk"),
            "cocktail14",
        ),
        _family(
            "rtmpose-m-hand",
            "hand",
            (256, 256),
            _zip("rtmpose-m_simcc-hand5_pt-aic-coco_210e-256x256-74fb594_20230320"),
            "hand5",
            None,
            f"PCK@0.2 81.5 ({_README})",
        ),
        _family(
            "rtmpose-m-ap10k",
            "animal",
            (256, 256),
            _pth("rtmpose-m_simcc-ap10k_pt-aic-coco_210e-256x256-7a041aa1_20230206"),
            "ap10k",
            72.2,
            f"AP-10K val ({_README})",
            variant="m",
        ),
        _family(
            "rtmpose-s-pruned",
            "body",
            (192, 256),
            Source(url=_PRUNED, format="pth"),
            "aic-coco",
            69.4,
            f"COCO val2017 ({_README}, GroupFisher-pruned RTMPose-s)",
            variant="s",
            convertible=False,
            notes="RTMPose-s pruned with MMRazor's GroupFisher: its channel widths are not "
            "RTMPose-s's, so training/ cannot rebuild it; export it to ONNX with MMRazor and "
            "MMDeploy, then `rtmserve models import rtmpose-s-pruned FILE` (the I/O is "
            "RTMPose's)",
        ),
        _family(
            "rtmpose-m-face106",
            "face",
            (256, 256),
            Source(url=_FACE, format="onnx"),
            "lapa",
            released=False,
            notes="RTMPose face-106 is announced in the RTMPose README ('Coming soon') but "
            "OpenMMLab has not released its weights",
        ),
    ]


def _rtmo(variant: str, recipe: str, tag: str, ap: float) -> ModelEntry:
    return ModelEntry(
        name=f"rtmo-{variant}",
        task="one-stage",
        spec=OneStageSpec(),
        source=Source(
            url=f"{_OMM}/rtmo/onnx_sdk/rtmo-{variant}_{recipe}_body7-640x640-{tag}_20231211.zip",
            format="zip",
            member="end2end.onnx",
        ),
        dataset="body7",
        summary=f"RTMO-{variant} one-stage multi-person pose, COCO-17, trained on body7",
        ap=ap,
        ap_note="COCO val2017",
    )


def _build() -> dict[str, ModelEntry]:
    entries = [
        ModelEntry(
            name="rtmdet-nano",
            task="detector",
            spec=DetectorSpec(),
            source=Source(
                url=f"{_OMM}/rtmpose/rtmpose-cpu.zip",
                format="zip",
                # the bundle unpacks to rtmpose-ort/{rtmdet-nano,rtmpose-m}/ (possibly under a
                # rtmpose-cpu/ folder): the suffix match accepts both layouts
                member="rtmpose-ort/rtmdet-nano/end2end.onnx",
            ),
            onnx_checksums=Checksums(
                sha256="b8585adb6d1352796f6e86337e09c3459b830645a7e7192d9381670bea2facbd"
            ),
            dataset="coco-person",
            summary="RTMDet-nano person detector (MMDeploy end2end, NMS in graph, batch 1)",
            ap=None,
            ap_note="the zoo's 40.3 AP is for the later 100e coco-obj365-person checkpoint; this "
            "bundle holds rtmdet_nano_8xb32-300e_coco-person_in1kpretrain-96154d0b",
            params_m=0.99,
        ),
        ModelEntry(
            name="yolox-nano-humanart",
            task="detector",
            spec=DetectorSpec(
                input_size=(416, 416), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), to_rgb=False
            ),
            source=Source(
                url=f"{_OMM}/rtmposev1/onnx_sdk/yolox_nano_8xb8-300e_humanart-40f6f0d0.zip",
                format="zip",
                member="end2end.onnx",
            ),
            onnx_checksums=Checksums(
                sha256="1450966de24902b18aada1a78913d7efd8fc8dcd51bd4d0d5591476bd4a38821"
            ),
            dataset="humanart+coco",
            summary="YOLOX-nano person detector (rtmlib/DWPose default; static batch 1)",
            ap=38.9,
            ap_note="HumanArt, per the mmpose table quoted in SOURCES.md",
            params_m=0.92,
        ),
        _rtmpose_body7("t", "026a1439", 65.9, "7b0ba9f6c5129dc1bce2dbe48b0fea796970e642"),
        _rtmpose_body7("s", "acd4a1ef", 69.7, "484074be46b708d90c06c1b58cc418f6269cc88b"),
        _rtmpose_body7("m", "e48f03d0", 74.9, "99800164738d90c78002ba3c5939377856f12626"),
        _rtmpose_body7("l", "4dba18fc", 76.7, None),
        _rtmpose_aic_coco("t", "tiny", "cfc8f33d", 68.5),
        _rtmpose_aic_coco("s", "s", "fcb2599b", 72.2),
        _rtmpose_aic_coco("m", "m", "63eb25f7", 75.8),
        _rtmpose_aic_coco("l", "l", "f016ffe0", 76.5),
        _rtmo("s", "8xb32-600e", "dac2bf74", 68.6),
        _rtmo("m", "16xb16-600e", "39e78cc4", 72.6),
        _rtmo("l", "16xb16-600e", "b37118ce", 74.8),
        *_families(),
    ]
    return {e.name: e for e in entries}


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


CATALOGUE: dict[str, ModelEntry] = {**_build(), **{e.name: e for e in _bundled()}}


def list_entries() -> list[ModelEntry]:
    return list(CATALOGUE.values())


def get_entry(name: str) -> ModelEntry:
    try:
        return CATALOGUE[name]
    except KeyError:
        close = difflib.get_close_matches(name, CATALOGUE, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModel(f"unknown model {name!r}.{hint} Known: {', '.join(CATALOGUE)}") from None
