"""The renderer (``service.core.render``) on a real photo with its real (ground-truth) people."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from service.core.render import (
    MMPOSE_KEYPOINT_COLORS,
    OPENPOSE_COLORS,
    OPENPOSE_FROM_COCO,
    RenderOptions,
    bgr,
    render,
)
from tests.support.golden import draw_golden, golden_path, ground_truth

THR = 0.3


def lone_points(kpts: np.ndarray, radius: int) -> list[tuple[int, int, int]]:
    """(person, keypoint, drawing order) of visible keypoints no other visible keypoint comes
    within 2 radii of (where the centre pixel can only be its own colour)."""
    pts = [(n, i, kpts[n, i, :2]) for n in range(len(kpts)) for i in range(kpts.shape[1])
           if kpts[n, i, 2] >= THR]  # fmt: skip
    return [
        (n, i, k)
        for k, (n, i, p) in enumerate(pts)
        if all(np.abs(p - q).max() > 2 * radius for m, j, q in pts if (m, j) != (n, i))
    ]


def test_mmpose_style_keypoints_carry_their_colour_and_the_size_is_kept():
    image, boxes, kpts = ground_truth()
    out = render(image, boxes, kpts, options=RenderOptions(boxes=False))
    assert out.shape == image.shape and out.dtype == np.uint8
    checked = lone_points(kpts, 3)
    assert len(checked) >= 20
    for n, i, _ in checked:
        x, y = np.round(kpts[n, i, :2]).astype(int)
        assert tuple(out[y, x]) == bgr(MMPOSE_KEYPOINT_COLORS[i]), (n, i)


def test_openpose_style_uses_the_openpose_palette():
    image, boxes, kpts = ground_truth()
    out = render(image, boxes, kpts, options=RenderOptions(style="openpose", boxes=False))
    matched = 0
    for n, i, _ in lone_points(kpts, 3):
        op = OPENPOSE_FROM_COCO.index(i)
        x, y = np.round(kpts[n, i, :2]).astype(int)
        assert tuple(out[y, x]) == bgr(OPENPOSE_COLORS[op]), (n, i)
        matched += 1
    assert matched >= 20


@pytest.mark.parametrize("style", ["mmpose", "openpose"])
def test_nothing_is_drawn_for_keypoints_under_the_threshold(style):
    image, boxes, kpts = ground_truth()
    low = kpts.copy()
    low[..., 2] = np.where(low[..., 2] > 0, THR - 0.01, 0)
    opts = RenderOptions(style=style, kpt_thr=THR, boxes=False)
    assert np.array_equal(render(image, boxes, low, options=opts), image)
    one = low.copy()
    one[0, 0, 2] = 1.0  # one keypoint over: it alone is drawn (a dot, no limb)
    black = render(image, boxes, one, options=RenderOptions(style=style, kpt_thr=THR, boxes=False,
                                                           black_background=True))  # fmt: skip
    ys, xs = np.nonzero(black.any(axis=2))
    x, y = kpts[0, 0, :2]
    assert len(xs) and np.abs(xs - x).max() <= 4 and np.abs(ys - y).max() <= 4


def test_boxes_and_track_ids_are_drawn_inside_the_image_only_when_asked():
    image, boxes, _ = ground_truth()
    empty = np.zeros((len(boxes), 0, 3))
    plain = render(image, boxes, empty, options=RenderOptions(boxes=False))
    assert np.array_equal(plain, image)
    drawn = render(image, boxes, empty, [7] * len(boxes), RenderOptions(black_background=True))
    x1, y1, x2, _ = np.round(boxes[0]).astype(int)
    assert tuple(drawn[y1, (x1 + x2) // 2]) == (255, 255, 255)  # the box's top edge
    without_ids = render(image, boxes, empty, None, RenderOptions(black_background=True))
    assert (drawn.astype(int) - without_ids).any()  # the "#7" labels


def test_an_image_with_nobody_comes_back_unchanged():
    image, _, _ = ground_truth()
    none = np.zeros((0, 4)), np.zeros((0, 17, 3))
    assert np.array_equal(render(image, *none), image)
    tiny = np.full((1, 1, 3), 7, np.uint8)  # the smallest image an API accepts
    assert np.array_equal(render(tiny, *none, options=RenderOptions(black_background=True)),
                          np.zeros_like(tiny))  # fmt: skip


@pytest.mark.parametrize("style", ["mmpose", "openpose"])
def test_golden_image(style):
    """Against the reviewed drawing in tests/data/golden (``python -m tests.support.golden``);
    tolerates anti-aliasing differences of another OpenCV build on a few edge pixels."""
    want = cv2.imread(str(golden_path(style)))
    got = draw_golden(style)
    assert got.shape == want.shape
    off = np.abs(got.astype(int) - want).max(axis=2) > 24
    assert off.mean() < 0.002, f"{off.sum()} pixels differ from {golden_path(style).name}"
    assert (got.any(axis=2)).mean() > 0.01  # the golden is not blank
