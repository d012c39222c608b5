"""Tracking and keypoint -> box derivation on synthetic people whose true poses are known.

The served pose model is untrained, so the quality of the skip-frame boxes and of the IDs is
checked here with a stand-in pose model that returns the true keypoints of the person a box
covers (plus pixel noise), the way a trained RTMPose behaves on a clear view.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from service.app.context import Services
from service.app.models import ServedModel
from service.app.options import StreamOptions
from service.app.video.session import StreamModels, StreamSession, tracking_params
from service.app.video.tracking import Candidate, Tracker, TrackingParams
from service.core.boxes import (
    greedy_assignment,
    iou_matrix,
    keypoints_to_box,
    oks,
)
from service.core.keypoints import COCO_SIGMAS
from service.core.specs import DetectorSpec, PoseSpec
from service.settings import Settings

DEFAULTS = tracking_params(StreamOptions())  # what a stream gets unless it asks otherwise

W, H = 640, 480
# COCO-17 keypoints of an upright person, in units of body height, about the box centre.
TEMPLATE = np.array(
    [[0, -0.42], [-0.03, -0.45], [0.03, -0.45], [-0.06, -0.43], [0.06, -0.43],
     [-0.12, -0.3], [0.12, -0.3], [-0.16, -0.12], [0.16, -0.12], [-0.18, 0.04], [0.18, 0.04],
     [-0.09, 0.04], [0.09, 0.04], [-0.1, 0.25], [0.1, 0.25], [-0.1, 0.46], [0.1, 0.46]]
)  # fmt: skip


class Person:
    def __init__(self, start: tuple[float, float], velocity: tuple[float, float], height: float):
        self.start, self.velocity, self.height = np.array(start), np.array(velocity), height

    def keypoints(self, t: int) -> np.ndarray:
        xy = self.start + t * self.velocity + TEMPLATE * self.height
        return np.concatenate([xy, np.full((17, 1), 0.9)], axis=1)

    def box(self, t: int) -> np.ndarray:
        """What a detector would return: the keypoint extent with a 5 % margin."""
        k = self.keypoints(t)[:, :2]
        (x1, y1), (x2, y2) = k.min(0), k.max(0)
        mx, my = 0.05 * (x2 - x1), 0.05 * (y2 - y1)
        return np.array([x1 - mx, y1 - my, x2 + mx, y2 + my])


class World:
    """Ground truth plus a stand-in detector and pose model."""

    def __init__(self, people: list[Person], seed: int = 0) -> None:
        self.people = people
        self.hidden: dict[int, set[int]] = {}  # person -> frames where it is fully occluded
        self.undetected: dict[int, set[int]] = {}  # person -> frames the detector misses it
        self.rng = np.random.default_rng(seed)

    def visible(self, p: int, t: int) -> bool:
        return t not in self.hidden.get(p, set())

    def detect(self, t: int) -> np.ndarray:
        boxes = [
            [*self.people[p].box(t), 0.9]
            for p in range(len(self.people))
            if self.visible(p, t) and t not in self.undetected.get(p, set())
        ]
        return np.array(boxes).reshape(-1, 5)

    def estimate(self, box: np.ndarray, t: int) -> np.ndarray:
        """True keypoints (+1 px noise) of the visible person the box covers best; else junk."""
        truth = [p for p in range(len(self.people)) if self.visible(p, t)]
        overlaps = [iou_matrix(box[None], self.people[p].box(t)[None])[0, 0] for p in truth]
        if overlaps and max(overlaps) > 0.2:
            k = self.people[truth[int(np.argmax(overlaps))]].keypoints(t)
            k[:, :2] += self.rng.normal(0, 1.0, (17, 2))
            return k
        junk = self.rng.uniform(box[:2], box[2:4], (17, 2))
        return np.concatenate([junk, np.full((17, 1), 0.1)], axis=1)

    def owner(self, box: np.ndarray, t: int) -> int | None:
        overlaps = [iou_matrix(box[None], p.box(t)[None])[0, 0] for p in self.people]
        best = int(np.argmax(overlaps))
        return best if overlaps[best] > 0.3 else None


def run(world: World, frames: int, det_interval: int, params: TrackingParams | None = None):
    """Per frame: [(true person, track id, box, detected)] as the session would report."""
    tracker = Tracker(params or DEFAULTS, np.array(COCO_SIGMAS))
    out = []
    for t in range(frames):
        detections = world.detect(t) if t % det_interval == 0 else None
        candidates = tracker.plan(detections, W, H)
        kpts = np.array([world.estimate(c.box, t) for c in candidates]).reshape(-1, 17, 3)
        update = tracker.update(candidates, kpts)
        out.append(
            [
                (world.owner(candidates[i].box, t), tid, candidates[i].box, candidates[i].detected)
                for i, tid in update.persons
            ]
        )
    return out


def ids_of(frames, person: int) -> list[int | None]:
    return [next((tid for p, tid, _, _ in f if p == person), None) for f in frames]


def test_keypoints_to_box_expands_the_visible_extent_and_clips():
    k = np.array([[100, 100, 0.9], [200, 300, 0.8], [150, 200, 0.6], [0, 0, 0.1]], float)
    box = keypoints_to_box(k, 0.5, 3, 1.25, W, H)
    np.testing.assert_allclose(box, [87.5, 75.0, 212.5, 325.0])  # centre (150, 200), 125x250
    assert keypoints_to_box(k, 0.7, 3, 1.25, W, H) is None  # only 2 visible
    assert keypoints_to_box(k, 0.5, None, 1.25, W, H) is not None  # ceil(4 / 2) = 2 needed
    clipped = keypoints_to_box(k, 0.5, 3, 4.0, 220, 500)
    np.testing.assert_allclose(clipped, [0, 0, 220, 500])
    same = np.array([[50, 50, 0.9]] * 4)
    assert keypoints_to_box(same, 0.5, 2, 1.25, W, H) is None  # no area, no box


def test_iou_oks_and_greedy_assignment():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    b = np.array([[0, 0, 10, 5], [100, 100, 110, 110]], float)
    np.testing.assert_allclose(iou_matrix(a, b), [[0.5, 0], [0, 0]])
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)
    k = Person((100, 100), (0, 0), 100).keypoints(0)
    box = np.array([50, 50, 150, 150], float)
    assert oks(k, box, k, box, np.array(COCO_SIGMAS)) == pytest.approx(1.0)
    shifted = k.copy()
    shifted[:, 0] += 30
    assert oks(k, box, shifted, box, np.array(COCO_SIGMAS)) < 0.2
    sim = np.array([[0.9, 0.8], [0.85, 0.1]])
    rows, cols = np.ones(2, bool), np.ones(2, bool)
    assert greedy_assignment(sim, 0.4, rows, cols) == [(0, 0)]  # (1, 1) is under 0.4
    assert not rows[0] and rows[1] and not cols[0] and cols[1]


def test_two_walkers_keep_their_ids_and_skip_frame_boxes_follow_them():
    world = World([Person((150, 240), (2.5, 0.3), 260), Person((480, 250), (-2.0, -0.2), 240)])
    frames = run(world, 60, det_interval=5)
    assert all(len(f) == 2 for f in frames)
    assert set(ids_of(frames, 0)) == {1} and set(ids_of(frames, 1)) == {2}
    for t, f in enumerate(frames):
        for p, _, box, detected in f:
            assert detected == (t % 5 == 0)
            # derived from last frame's keypoints, expanded 1.25x: still on the person
            assert iou_matrix(box[None], world.people[p].box(t)[None])[0, 0] > 0.6


def test_a_detector_miss_is_bridged_by_the_keypoints():
    world = World([Person((150, 240), (2, 0), 260), Person((480, 250), (-2, 0), 240)])
    world.undetected[1] = {5, 10, 15}
    frames = run(world, 25, det_interval=5)
    assert ids_of(frames, 1) == [2] * 25
    assert not any(d for p, _, _, d in frames[10] if p == 1)  # a continuation, not a detection


def test_short_occlusion_keeps_the_id_long_one_gets_a_new_never_reused_id():
    world = World([Person((150, 240), (1, 0), 260), Person((480, 250), (-1, 0), 240)])
    world.hidden[1] = set(range(10, 16)) | set(range(30, 42))  # 6 frames, then 12 > 10
    frames = run(world, 50, det_interval=1)
    ids = ids_of(frames, 1)
    assert ids[:10] == [2] * 10 and ids[10:16] == [None] * 6 and ids[16:30] == [2] * 14
    assert ids[30:42] == [None] * 12
    assert set(ids[42:]) == {3}  # the old track was dropped: a new ID, larger than any before
    assert set(ids_of(frames, 0)) == {1}


def test_missing_tracks_rejoin_by_iou_on_a_detection_frame():
    world = World([Person((300, 240), (0.5, 0), 260)])
    world.hidden[0] = {6, 7, 8}
    frames = run(world, 16, det_interval=5)
    ids = ids_of(frames, 0)
    assert ids[:6] == [1] * 6 and ids[6:10] == [None] * 4  # no detection until frame 10
    assert ids[10:] == [1] * 6


def test_a_new_detection_duplicating_a_continued_track_takes_over_its_id():
    tracker = Tracker(DEFAULTS, np.array(COCO_SIGMAS))
    person = Person((300, 240), (0, 0), 200)
    first = tracker.plan(np.array([[*person.box(0), 0.9]]), W, H)
    assert tracker.update(first, person.keypoints(0)[None]).persons == [(0, 1)]
    # The detector now reports the person with a box that matches no track (IoU < 0.4): the
    # track continues from its keypoints, and both poses land on the same person.
    odd = np.array([[250.0, 60.0, 350.0, 200.0, 0.8]])
    candidates = tracker.plan(odd, W, H)
    assert [(c.track_id, c.detected) for c in candidates] == [(None, True), (1, False)]
    kpts = np.stack([person.keypoints(1), person.keypoints(1)])
    update = tracker.update(candidates, kpts)
    assert update.persons == [(0, 1)] and update.started == []
    assert [t.id for t in tracker.tracks] == [1]
    np.testing.assert_allclose(tracker.tracks[0].detected_box, odd[0, :4])


def test_invalid_continuations_go_missing_and_detections_are_always_reported():
    tracker = Tracker(replace(DEFAULTS, track_max_missing=2))
    weak = np.concatenate([np.full((17, 2), 100.0), np.full((17, 1), 0.2)], axis=1)
    weak[:, :2] += np.arange(17)[:, None]
    c = tracker.plan(np.array([[80, 80, 140, 140, 0.7]]), W, H)
    assert tracker.update(c, weak[None]).persons == [(0, 1)]  # a detection, even weak
    for expected_missing in (1, 2):
        c = tracker.plan(None, W, H)
        assert len(c) == (1 if expected_missing == 1 else 0)  # only visible tracks continue
        update = tracker.update(c, np.array([weak] * len(c)))
        assert update.persons == [] and tracker.tracks[0].missing == expected_missing
    update = tracker.update([], np.zeros((0, 17, 3)))
    assert update.ended == [1] and tracker.tracks == []


def test_candidates_are_what_the_session_sends():
    tracker = Tracker(DEFAULTS)
    assert tracker.plan(None, W, H) == []
    c = tracker.plan(np.array([[10, 10, 50, 90, 0.9]]), W, H)
    assert isinstance(c[0], Candidate) and c[0].score == pytest.approx(0.9)


def test_a_session_tracks_and_smooths_with_its_streams_options(tmp_path):
    services = Services.create(Settings(home=tmp_path), client=None)  # type: ignore[arg-type]
    models = StreamModels(
        ServedModel("det", 1, "detector", DetectorSpec(), {}),
        ServedModel("pose", 1, "pose", PoseSpec(), {}),
    )
    asked = StreamOptions(track_iou_thr=0.3, track_max_missing=4, smoothing_beta=0.5)
    session = StreamSession(services, models, asked)
    assert session.tracker.params == replace(DEFAULTS, track_iou_thr=0.3, track_max_missing=4)
    assert session.one_euro.beta == 0.5
    assert session.tracker.sigmas is not None  # COCO-17: pose NMS by OKS
    # unasked, MMDeploy PoseTracker's defaults, as the README documents them
    default = StreamSession(services, models, StreamOptions())
    assert default.tracker.params == TrackingParams(0.7, 0.5, None, 1.25, 0.5, 0.4, 10)
