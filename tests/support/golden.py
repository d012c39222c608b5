"""Golden renderings: one real COCO photo with its ground-truth people, drawn in each style on
black (small PNGs). Regenerate after an intended change to the renderer, and look at them:

    python -m tests.support.golden
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from service.core.render import RenderOptions, render
from tests.support.paths import COCO_VAL, REPO

GOLDEN_DIR = REPO / "tests" / "data" / "golden"
PHOTO = "000000196141"  # several people, many keypoints labelled


def ground_truth(stem: str = PHOTO) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo (BGR), its people's boxes [N,4] xyxy and keypoints [N,17,3] (visibility as
    score: 0 unlabelled, 1 occluded, 2 visible -> 0, 0.5, 1)."""
    gt = json.loads((COCO_VAL / "person_keypoints.json").read_text())
    image_id = int(stem)
    people = [a for a in gt["annotations"] if a["image_id"] == image_id and a["num_keypoints"]]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in people)])
    kpts = np.array([a["keypoints"] for a in people], np.float64).reshape(-1, 17, 3)
    kpts[..., 2] /= 2
    return cv2.imread(str(COCO_VAL / "images" / f"{stem}.jpg")), boxes, kpts


def golden_path(style: str) -> Path:
    return GOLDEN_DIR / f"{PHOTO}_{style}.png"


def draw_golden(style: str) -> np.ndarray:
    image, boxes, kpts = ground_truth()
    return render(image, boxes, kpts, list(range(1, len(boxes) + 1)),
                  RenderOptions(style=style, black_background=True))  # fmt: skip


if __name__ == "__main__":
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for style in ("mmpose", "openpose"):
        cv2.imwrite(str(golden_path(style)), draw_golden(style))
        print(golden_path(style))
