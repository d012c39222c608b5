"""Per-model pre/post-processing parameters.

A spec travels as JSON (catalogue -> runtime repository -> Triton pipeline model), so it is a
plain frozen dataclass with ``to_dict``/``from_dict`` rather than a pydantic model: this module
is imported inside Triton's Python backend, where only numpy and OpenCV are guaranteed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from .keypoints import COCO_KEYPOINTS

RGB_MEAN = (123.675, 116.28, 103.53)
RGB_STD = (58.395, 57.12, 57.375)
BGR_MEAN = RGB_MEAN[::-1]
BGR_STD = RGB_STD[::-1]
# Crops per pose-model call on exports with a batch axis: the rendered max_batch_size.
POSE_MAX_BATCH = 64
# Whole images per one-stage model call, where the export has a batch axis (GPU, BLS).
ONE_STAGE_MAX_BATCH = 8


class _Spec:
    """JSON round trip shared by every spec (lists come back as the tuples they were)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        )

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DetectorSpec(_Spec):
    """A person detector exported the MMDeploy way (NMS inside the graph: ``dets``, ``labels``).

    ``input_size`` is (width, height). ``mean``/``std`` apply to the channel order the model
    was trained with: BGR unless ``to_rgb``.
    """

    kind: Literal["detector"] = "detector"
    input_size: tuple[int, int] = (320, 320)
    pad_value: int = 114
    mean: tuple[float, float, float] = BGR_MEAN
    std: tuple[float, float, float] = BGR_STD
    to_rgb: bool = False
    score_thr: float = 0.05  # the SDK's post-processing floor; callers add their own threshold
    person_label: int = 0
    batchable: bool = False  # official end2end exports with in-graph NMS only run at batch 1
    # "end2end": MMDeploy export (NMS in the graph: dets, labels); "yolox": Megvii's raw head
    # (images -> output [1, A, 5 + C]), decoded with class-aware NMS in service.core.yolox
    head: Literal["end2end", "yolox"] = "end2end"
    labels: tuple[int, ...] = ()  # the classes kept (COCO ids); empty: person_label only
    nms_thr: float = 0.45  # yolox head only (end2end exports do NMS in the graph)


@dataclass(frozen=True)
class PoseSpec(_Spec):
    """A top-down SimCC pose model (RTMPose): crop in, ``simcc_x``/``simcc_y`` out."""

    kind: Literal["pose"] = "pose"
    input_size: tuple[int, int] = (192, 256)
    mean: tuple[float, float, float] = RGB_MEAN
    std: tuple[float, float, float] = RGB_STD
    to_rgb: bool = True
    bbox_padding: float = 1.25
    # "sdk": MMDeploy SDK crop-resize-pad (default); "affine": mmpose/rtmlib warpAffine
    crop: Literal["sdk", "affine"] = "sdk"
    simcc_split_ratio: float = 2.0
    keypoint_names: tuple[str, ...] = field(default=COCO_KEYPOINTS)
    # crops per call: POSE_MAX_BATCH with a batch axis, 1 for an export fixed at batch 1 (the
    # pipeline then sends crops one at a time and Triton serves it with max_batch_size 0)
    max_batch: int = POSE_MAX_BATCH
    # the detector of the model's family (hands: the hand detector) when a request names none;
    # None: the service's default person detector
    detector: str | None = None


@dataclass(frozen=True)
class OneStageSpec(_Spec):
    """RTMO: whole image in, ``dets`` [B,N,5] + ``keypoints`` [B,N,K,3] out (no detector stage).

    Preprocessing is mmpose's ``BottomupResize`` (``service.core.onestage``) on raw BGR pixels.
    """

    kind: Literal["one-stage"] = "one-stage"
    input_size: tuple[int, int] = (640, 640)
    pad_value: int = 114
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    to_rgb: bool = False
    score_thr: float = 0.1
    nms_thr: float = 0.65  # applied inside the exported graph; recorded for reference
    keypoint_names: tuple[str, ...] = field(default=COCO_KEYPOINTS)
    # images per call: ONE_STAGE_MAX_BATCH with a batch axis, 1 for an export fixed at 1
    max_batch: int = ONE_STAGE_MAX_BATCH


ModelSpec = DetectorSpec | PoseSpec | OneStageSpec
SPEC_KINDS = {"detector": DetectorSpec, "pose": PoseSpec, "one-stage": OneStageSpec}


def spec_from_dict(data: dict[str, Any]) -> ModelSpec:
    return SPEC_KINDS[data["kind"]].from_dict(data)
