"""Keypoint sets as data: names, mirror pairs, OKS sigmas, skeleton and colours of every set
the model zoo uses (COCO-17, Halpe-26, COCO-WholeBody-133, hand-21, AP-10K-17, face-106), read
from ``keypoint_sets.json`` (written by ``tools/keypoint_sets.py`` from the datasets' metainfo in
mmpose). The catalogue, the pipeline, responses, tracking, the renderer, evaluation and training
all read a set from here; nothing else spells out a keypoint count."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).with_name("keypoint_sets.json")
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class KeypointSet:
    name: str
    dataset: str
    keypoints: tuple[str, ...]
    flip_indices: tuple[int, ...]  # each keypoint's mirror image (itself on the midline)
    sigmas: tuple[float, ...]  # OKS; empty where the dataset defines none (face-106: LaPa)
    skeleton: tuple[tuple[int, int], ...]  # 0-based links
    link_colors: tuple[RGB, ...]  # MMPose's visualiser, RGB
    keypoint_colors: tuple[RGB, ...]

    def __len__(self) -> int:
        return len(self.keypoints)


@cache
def keypoint_sets() -> dict[str, KeypointSet]:
    raw = json.loads(DATA.read_text())
    return {
        name: KeypointSet(
            name=name,
            dataset=s["dataset"],
            keypoints=tuple(s["keypoints"]),
            flip_indices=tuple(s["flip_indices"]),
            sigmas=tuple(s["sigmas"]),
            skeleton=tuple(tuple(link) for link in s["skeleton"]),  # type: ignore[misc]
            link_colors=tuple(tuple(c) for c in s["link_colors"]),  # type: ignore[misc]
            keypoint_colors=tuple(tuple(c) for c in s["keypoint_colors"]),  # type: ignore[misc]
        )
        for name, s in raw.items()
    }


def keypoint_set(name: str) -> KeypointSet:
    try:
        return keypoint_sets()[name]
    except KeyError:
        known = ", ".join(keypoint_sets())
        raise KeyError(f"unknown keypoint set {name!r} (known: {known})") from None


def set_of(names: tuple[str, ...]) -> KeypointSet | None:
    """The set with exactly these keypoint names, in this order (None: a custom model)."""
    return next((s for s in keypoint_sets().values() if s.keypoints == tuple(names)), None)


def set_name(names: tuple[str, ...] | list[str] | None) -> str | None:
    found = set_of(tuple(names)) if names else None
    return found.name if found else None


COCO = keypoint_set("coco")
COCO_KEYPOINTS: tuple[str, ...] = COCO.keypoints
COCO_FLIP_INDICES: tuple[int, ...] = COCO.flip_indices
COCO_SIGMAS: tuple[float, ...] = COCO.sigmas
COCO_SKELETON: tuple[tuple[int, int], ...] = COCO.skeleton
