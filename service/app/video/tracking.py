"""Who is who across video frames (numpy only), after MMDeploy's PoseTracker.

Each frame the tracker first says which boxes the pose model should run on (``plan``), then,
given the poses, which person each one is (``update``):

- Detection frames: detections join tracks greedily by IoU, most overlapping pairs first, down
  to ``track_iou_thr``. A detection is compared both with where the track's last keypoints put
  it now and with where the detector last saw it, whichever overlaps more. A visible track the
  detector missed goes on from its keypoints unless its box duplicates a detection
  (IoU > ``det_nms_thr``).
- Frames in between: each visible track's box is the extent of its previous frame's visible
  keypoints expanded ``pose_bbox_scale`` times, so only the pose model runs.
- A pose that continues a track without a detection must be valid (at least
  ``pose_min_keypoints`` keypoints scoring >= ``pose_kpt_thr``) or the track goes missing.
  Detections are always reported, as ``POST /v1/pose`` reports them.
- Pose NMS: of two poses with OKS > ``pose_nms_thr`` (box IoU without keypoint sigmas) the
  lower-ranked one is dropped. Detections outrank continuations, and a new detection that
  duplicates a continued track takes over that track's ID.
- A track unseen for more than ``track_max_missing`` frames is dropped; IDs are never reused.

Deliberate differences from PoseTracker: no Kalman filter (a track's next box is its keypoints'
box, else its last box); on detection frames a detection replaces the track box it overlaps
(PoseTracker keeps the track's box), so every detection re-anchors drifting tracks; one IoU
matching round for all tracks (PoseTracker first matches visible tracks by keypoint distance,
then missing ones by IoU), so a drifting visible track cannot take the detection of a track
that was briefly lost; missing tracks wait for a detection instead of being estimated at a
predicted box.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.core.association import associate, track_table
from service.core.boxes import iou_matrix, keypoints_to_box, min_visible, oks, visible_count


@dataclass(frozen=True)
class TrackingParams:
    """As ``StreamOptions`` names them (its defaults are MMDeploy PoseTracker's)."""

    det_nms_thr: float
    pose_kpt_thr: float
    pose_min_keypoints: int | None  # None: half the keypoints, rounded up
    pose_bbox_scale: float
    pose_nms_thr: float
    track_iou_thr: float
    track_max_missing: int


@dataclass
class Track:
    id: int
    box: np.ndarray  # (4,) the box of its latest pose
    detected_box: np.ndarray  # (4,) its latest detection
    keypoints: np.ndarray  # (K, 3) its latest pose
    score: float  # its latest detection's score
    missing: int = 0  # frames since it was last seen


@dataclass(frozen=True)
class Candidate:
    """A box the pose model runs on in this frame."""

    box: np.ndarray  # (4,)
    score: float
    track_id: int | None  # None: a detection that joined no track
    detected: bool


@dataclass
class TrackUpdate:
    persons: list[tuple[int, int]]  # (candidate index, track id), ordered by track id
    started: list[int] = field(default_factory=list)  # new tracks and ones back from missing
    ended: list[int] = field(default_factory=list)  # dropped after too many missing frames


class Tracker:
    """State of one stream. ``sigmas`` (K,) enable OKS for pose NMS (COCO's for COCO-17)."""

    def __init__(self, params: TrackingParams, sigmas: np.ndarray | None = None) -> None:
        self.params = params
        self.sigmas = None if sigmas is None else np.asarray(sigmas, np.float64)
        self.tracks: list[Track] = []
        self._next_id = 1

    def predicted_box(self, track: Track, width: float, height: float) -> np.ndarray:
        """Where a track is expected in this frame: its keypoints' box if it was just seen."""
        if track.missing == 0:
            p = self.params
            box = keypoints_to_box(
                track.keypoints,
                p.pose_kpt_thr,
                p.pose_min_keypoints,
                p.pose_bbox_scale,
                width,
                height,
            )
            if box is not None:
                return box
        return track.box

    def table(self, width: float, height: float) -> np.ndarray:
        """The tracks as ``service.core.association`` (and the pipeline model) sees them."""
        return track_table(
            [self.predicted_box(t, width, height) for t in self.tracks],
            [t.score for t in self.tracks],
            [t.detected_box for t in self.tracks],
            [t.missing == 0 for t in self.tracks],
        )

    def plan(self, detections: np.ndarray | None, width: float, height: float) -> list[Candidate]:
        """Boxes to estimate. ``detections`` (D, 5) on detection frames, else None.

        On detection frames the first D candidates are the detections, in order; the rest are
        visible tracks the detector missed, continuing from their keypoints.
        """
        table = self.table(width, height)
        if detections is None:
            return self.candidates(np.zeros((0, 5)), [], np.flatnonzero(table[:, 9] > 0), table)
        p = self.params
        owner, continued = associate(detections, table, p.track_iou_thr, p.det_nms_thr)
        return self.candidates(detections, owner, continued, table)

    def candidates(
        self, detections: np.ndarray, owner, continued, table: np.ndarray
    ) -> list[Candidate]:
        """The detections, joined to the tracks ``owner`` names (-1: none), then the tracks
        ``continued`` from their keypoints: what ``associate`` decided, here or in Triton."""
        dets = np.asarray(detections, np.float64).reshape(-1, 5)
        ids = [self.tracks[int(o)].id if o >= 0 else None for o in owner]
        out = [Candidate(d[:4], float(d[4]), ids[i], True) for i, d in enumerate(dets)]
        for j in continued:
            out.append(Candidate(table[j, :4], float(table[j, 4]), self.tracks[int(j)].id, False))
        return out

    def update(self, candidates: list[Candidate], keypoints: np.ndarray) -> TrackUpdate:
        """Assign the poses (N, K, 3) estimated on ``candidates`` to tracks; age the others."""
        p = self.params
        kpts = np.asarray(keypoints, np.float64)
        kpts = kpts.reshape(len(candidates), -1, 3) if len(candidates) else np.zeros((0, 0, 3))
        need = min_visible(kpts.shape[1], p.pose_min_keypoints)
        ids = [c.track_id for c in candidates]
        valid = [
            c.detected or visible_count(kpts[i], p.pose_kpt_thr) >= need
            for i, c in enumerate(candidates)
        ]
        ranked = sorted(
            (i for i in range(len(candidates)) if valid[i]),
            key=lambda i: (candidates[i].detected, ids[i] is not None, float(kpts[i, :, 2].sum())),
            reverse=True,
        )
        kept: list[int] = []
        for i in ranked:
            dup = next((k for k in kept if self._same_person(candidates, kpts, i, k)), None)
            if dup is None:
                kept.append(i)
            elif ids[dup] is None:
                ids[dup] = ids[i]  # a new detection of a continued track takes it over

        update = TrackUpdate(persons=[])
        tracks = {t.id: t for t in self.tracks}
        seen: set[int] = set()
        for i in kept:
            c, track = candidates[i], tracks.get(ids[i]) if ids[i] is not None else None
            if track is None:
                track = Track(self._next_id, c.box, c.box, kpts[i], c.score)
                self._next_id += 1
                self.tracks.append(track)
                update.started.append(track.id)
            elif track.missing:
                update.started.append(track.id)
            track.box, track.keypoints, track.missing = np.asarray(c.box), kpts[i], 0
            if c.detected:
                track.detected_box, track.score = np.asarray(c.box), c.score
            seen.add(track.id)
            update.persons.append((i, track.id))
        for track in self.tracks:
            if track.id not in seen:
                track.missing += 1
        update.ended = [t.id for t in self.tracks if t.missing > p.track_max_missing]
        self.tracks = [t for t in self.tracks if t.missing <= p.track_max_missing]
        update.persons.sort(key=lambda pair: pair[1])
        return update

    def _same_person(self, candidates: list[Candidate], kpts: np.ndarray, i: int, k: int) -> bool:
        a, b = candidates[i].box, candidates[k].box
        if self.sigmas is not None and len(self.sigmas) == kpts.shape[1]:
            return oks(kpts[i], a, kpts[k], b, self.sigmas) > self.params.pose_nms_thr
        return float(iou_matrix(a[None], b[None])[0, 0]) > self.params.pose_nms_thr
