"""Skeleton overlays: the one drawing implementation (HTTP render, video, CLI, client, tests).

Two styles. ``mmpose``: each keypoint set's keypoint and limb colours from MMPose's dataset
metainfo, as its ``PoseLocalVisualizer`` draws them (COCO: left side green, right side orange,
face and torso blue). ``openpose``: the 18-point OpenPose layout (a neck between the
shoulders) with its 17 limb colours, as rtmlib and DWPose draw it, usually on a black
background. Images are BGR uint8 (the
palettes are written in RGB, as upstream, and flipped once here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from .keypoints import COCO, KeypointSet

Style = Literal["mmpose", "openpose"]
RGB = tuple[int, int, int]

# mmpose style: each keypoint set's own colours (MMPose's metainfo, ``service.core.keypoints``)
MMPOSE_LINK_COLORS: tuple[RGB, ...] = COCO.link_colors
MMPOSE_KEYPOINT_COLORS: tuple[RGB, ...] = COCO.keypoint_colors

# OpenPose-18 (nose, neck, r/l arm, r/l leg, eyes, ears) from COCO-17; -1 is the neck.
OPENPOSE_FROM_COCO = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
OPENPOSE_LINKS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
OPENPOSE_COLORS: tuple[RGB, ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
BOX_COLOR: RGB = (255, 255, 255)


@dataclass(frozen=True)
class RenderOptions:
    style: Style = "mmpose"
    kpt_thr: float = 0.3  # keypoints (and limbs touching them) under this score are not drawn
    radius: int = 3
    thickness: int = 2
    boxes: bool = True
    track_ids: bool = True
    black_background: bool = False


def bgr(color: RGB) -> tuple[int, int, int]:
    return color[2], color[1], color[0]


def openpose_points(kpts: np.ndarray) -> np.ndarray:
    """[17, 3] COCO -> [18, 3] OpenPose; the neck is the shoulders' midpoint, scored by the
    weaker shoulder (absent when either is)."""
    out = np.zeros((len(OPENPOSE_FROM_COCO), 3), np.float64)
    for i, j in enumerate(OPENPOSE_FROM_COCO):
        if j >= 0:
            out[i] = kpts[j]
    left, right = kpts[5], kpts[6]
    out[1] = [(left[0] + right[0]) / 2, (left[1] + right[1]) / 2, min(left[2], right[2])]
    return out


def _layout(
    style: Style, kpts: np.ndarray, kset: KeypointSet
) -> tuple[np.ndarray, list, list, list]:
    """Points, links, link colours and point colours of one person in ``style``."""
    if style == "openpose":
        if kset.keypoints[: len(COCO)] != COCO.keypoints:
            raise ValueError(f"the openpose style draws COCO bodies, not {kset.name}")
        pts = openpose_points(kpts)
        return pts, list(OPENPOSE_LINKS), list(OPENPOSE_COLORS[: len(OPENPOSE_LINKS)]), list(
            OPENPOSE_COLORS)  # fmt: skip
    if style != "mmpose":
        raise ValueError(f"unknown style {style!r}: mmpose or openpose")
    return kpts, list(kset.skeleton), list(kset.link_colors), list(kset.keypoint_colors)


def render(
    image: np.ndarray,
    boxes: np.ndarray,
    keypoints: np.ndarray,
    track_ids: list[int] | None = None,
    options: RenderOptions | None = None,
    kset: KeypointSet = COCO,
) -> np.ndarray:
    """A new BGR image: ``image`` (or black) with every person drawn. ``boxes`` [N, 4+] xyxy,
    ``keypoints`` [N, K, 3] (x, y, score) of ``kset`` in image pixels; [N, 0, 3] draws boxes
    only. The openpose style draws the COCO body (the first 17 of Halpe and whole-body)."""
    o = options or RenderOptions()
    canvas = np.zeros_like(image) if o.black_background else image.copy()
    if not len(boxes):  # nobody found: the image as it is
        return canvas
    for n, kpts in enumerate(np.asarray(keypoints, np.float64).reshape(len(boxes), -1, 3)):
        if o.boxes:
            x1, y1, x2, y2 = (round(v) for v in np.asarray(boxes[n][:4], float).tolist())
            cv2.rectangle(canvas, (x1, y1), (x2, y2), bgr(BOX_COLOR), max(o.thickness // 2, 1))
            if o.track_ids and track_ids is not None:
                at = (x1 + 2, max(y1 - 4, 12))
                font = cv2.FONT_HERSHEY_SIMPLEX
                cv2.putText(
                    canvas, f"#{track_ids[n]}", at, font, 0.5, bgr(BOX_COLOR), 1, cv2.LINE_AA
                )
        if not len(kpts):
            continue
        pts, links, link_colors, point_colors = _layout(o.style, kpts, kset)
        visible = pts[:, 2] >= o.kpt_thr
        xy = np.round(pts[:, :2]).astype(np.int64)
        for (a, b), color in zip(links, link_colors, strict=True):
            if visible[a] and visible[b]:
                cv2.line(canvas, tuple(xy[a]), tuple(xy[b]), bgr(color), o.thickness, cv2.LINE_AA)
        for i in np.flatnonzero(visible):
            cv2.circle(canvas, tuple(xy[i]), o.radius, bgr(point_colors[i]), -1, cv2.LINE_AA)
    return canvas


def encode(image: np.ndarray, media_type: str) -> bytes:
    """BGR -> JPEG (quality 90) or PNG bytes."""
    ext, params = (".png", []) if media_type == "image/png" else (
        ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90])  # fmt: skip
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"cannot encode {media_type}")
    return buf.tobytes()
