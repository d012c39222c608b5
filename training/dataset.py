"""COCO-format top-down keypoint data: a folder with ``images/`` and a person-keypoints JSON.

Every annotated person (not crowd, at least one labelled keypoint) is one training instance.
Keypoints a dataset does not label are ``v = 0`` and get zero loss weight, which is how
datasets with different keypoint sets train together (the paper's body7 recipe).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Instance:
    image: Path
    image_id: int
    ann_id: int
    bbox: np.ndarray  # (4,) x1, y1, x2, y2 clipped to the image
    keypoints: np.ndarray  # (K, 3) x, y, v (COCO visibility: 0 unlabelled, 1 occluded, 2 visible)
    source: str


def annotation_file(directory: Path) -> Path:
    files = sorted(directory.glob("*.json"))
    files = [f for f in files if "keypoints" in f.name] or files
    if not files:
        raise FileNotFoundError(f"no COCO keypoint JSON in {directory}")
    return files[0]


def load_instances(
    directory: str | Path, image_ids: set[int] | None = None, skip_flagged: bool = True
) -> list[Instance]:
    """Person instances of one COCO-format folder (optionally only some images).

    ``skip_flagged`` drops annotations a dataset marks as doubtful (LSPET's
    ``lr_torso_inconsistent``: left/right swapped between shoulders and hips).
    """
    directory = Path(directory)
    coco = json.loads(annotation_file(directory).read_text())
    images = {im["id"]: im for im in coco["images"]}
    person = {c["id"] for c in coco.get("categories", []) if c.get("name") == "person"} or {1}
    out = []
    for ann in coco["annotations"]:
        if ann.get("category_id", 1) not in person or ann.get("iscrowd", 0):
            continue
        if image_ids is not None and ann["image_id"] not in image_ids:
            continue
        if skip_flagged and ann.get("lr_torso_inconsistent"):
            continue
        kpts = np.asarray(ann["keypoints"], np.float32).reshape(-1, 3)
        if (kpts[:, 2] > 0).sum() == 0:
            continue
        im = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        x1, y1 = np.clip(x, 0, im["width"] - 1), np.clip(y, 0, im["height"] - 1)
        x2, y2 = np.clip(x + w, 0, im["width"] - 1), np.clip(y + h, 0, im["height"] - 1)
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        out.append(
            Instance(
                image=directory / "images" / im["file_name"],
                image_id=int(im["id"]),
                ann_id=int(ann["id"]),
                bbox=np.array([x1, y1, x2, y2], np.float32),
                keypoints=kpts,
                source=directory.name,
            )
        )
    return out


def split_images(directory: str | Path, holdout: float, seed: int = 0) -> tuple[set[int], set[int]]:
    """Deterministic image-level split into (train ids, held-back ids) of images with people."""
    coco = json.loads(annotation_file(Path(directory)).read_text())
    with_people = sorted(
        {a["image_id"] for a in coco["annotations"] if max(a.get("keypoints", [0])) > 0}
    )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(with_people))
    n_hold = round(len(with_people) * holdout)
    held = {with_people[i] for i in order[:n_hold]}
    return set(with_people) - held, held
