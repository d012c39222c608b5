"""Trials without a server: the agreement measure, exact shares, the rule, and the repository
operations (start, promote, drop) on a real runtime repository in a temporary folder."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from service.app.models import ModelIndex
from service.app.trials import ShareCounter, Trial, Trials
from service.core.agreement import agreement
from service.core.keypoints import COCO_SIGMAS
from service.core.specs import PoseSpec
from service.metadata import read_record
from service.repository.candidates import (
    DROPPED,
    PROMOTED,
    Rule,
    TrialError,
    TrialStats,
    end_trial,
    read_trial_stats,
    start_trial,
    write_trial_stats,
)
from service.repository.install import HELD, install_model, loaded_versions, mark_version
from service.settings import Settings
from tests.support.paths import REPO

SHIPPED = REPO / "models" / "rtmserve-pose-n" / "model.onnx"
SIGMAS = np.array(COCO_SIGMAS)


def person(x: float, y: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    box = np.array([x, y, x + 100, y + 200, 0.9])
    kpts = np.column_stack(
        [x + rng.uniform(0, 100, 17), y + rng.uniform(0, 200, 17), rng.uniform(0.5, 1, 17)]
    )
    return box, kpts


def people(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pairs = [person(300.0 * i, 50.0, rng) for i in range(n)]
    return np.array([b for b, _ in pairs]), np.array([k for _, k in pairs])


def test_identical_answers_agree_fully_and_every_difference_lowers_it():
    boxes, kpts = people(3)
    assert agreement(boxes, kpts, boxes, kpts, SIGMAS).oks == 1.0
    assert agreement(boxes[:0], kpts[:0], boxes[:0], kpts[:0], SIGMAS).oks == 1.0
    moved = kpts.copy()
    moved[:, :, :2] += 5.0
    small = agreement(boxes, kpts, boxes, moved, SIGMAS).oks
    moved[:, :, :2] += 20.0
    large = agreement(boxes, kpts, boxes, moved, SIGMAS).oks
    assert 1.0 > small > large > 0.0
    lost = agreement(boxes, kpts, boxes[:2], kpts[:2], SIGMAS)
    assert lost.oks == pytest.approx(2 / 3) and lost.person_diff == 1
    # order does not matter: persons pair by their boxes
    flipped = agreement(boxes, kpts, boxes[::-1], kpts[::-1], SIGMAS)
    assert flipped.oks == 1.0 and flipped.person_diff == 0


def test_keypoints_the_live_version_does_not_see_do_not_count():
    boxes, kpts = people(1)
    unseen = kpts.copy()
    unseen[0, :5, 2] = 0.1  # the live version does not see the face
    moved = unseen.copy()
    moved[0, :5, :2] += 80.0  # the candidate puts it elsewhere
    assert agreement(boxes, unseen, boxes, moved, SIGMAS).oks == 1.0
    assert agreement(boxes, kpts, boxes, moved, SIGMAS).oks < 1.0


@pytest.mark.parametrize("share", [0.1, 0.25, 1 / 3, 0.5, 1.0])
def test_shares_are_exact_over_any_window(share):
    counter = ShareCounter()
    picks = [counter.pick(("m", 2, "image"), share) for _ in range(1000)]
    for start in (0, 17, 500):
        for n in (10, 100, 400):
            assert abs(sum(picks[start : start + n]) - n * share) <= 1
    assert sum(picks) == round(1000 * share)


def test_the_rule_waits_for_enough_pairs_then_promotes_or_drops():
    rule = Rule(min_agreement=0.95, max_p95_ratio=1.5, min_requests=10)
    good = TrialStats(compared=10, oks_sum=9.8, live_ms=[10.0] * 20, candidate_ms=[12.0] * 20)
    assert rule.decide(TrialStats(compared=9, oks_sum=9.0)) is None
    assert rule.decide(good)[0] == PROMOTED
    disagree = TrialStats(compared=10, oks_sum=9.0, live_ms=[10.0], candidate_ms=[10.0])
    assert rule.decide(disagree)[0] == DROPPED
    slow = TrialStats(compared=10, oks_sum=10.0, live_ms=[10.0] * 20, candidate_ms=[16.0] * 20)
    assert rule.decide(slow)[0] == DROPPED


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A pose model with a serving v1 and a held v2, v3."""
    options = Settings().serving_options
    spec = PoseSpec(input_size=(96, 128))
    for _ in range(3):
        install_model(tmp_path, "pose", spec, SHIPPED, {"trained": True}, options, serve=False)
    for v in (2, 3):
        mark_version(tmp_path, "pose", v, HELD, options)
    return tmp_path


def test_a_trial_keeps_its_candidate_loaded_and_ends_once(repository):
    options = Settings().serving_options
    assert loaded_versions(read_record(repository / "pose")) == [1]
    start_trial(repository, "pose", 2, "shadow", 0.2, options, None, Rule(min_requests=5))
    record = read_record(repository / "pose")
    assert loaded_versions(record) == [1, 2]
    assert Trial.of(record).share == 0.2 and Trial.of(record).rule.min_requests == 5
    config = (repository / "pose" / "config.pbtxt").read_text()
    assert "versions: 1" in config and "versions: 2" in config
    # two replicas' figures merge
    write_trial_stats(repository, "pose", 2, "a", TrialStats(compared=3, oks_sum=3.0))
    write_trial_stats(repository, "pose", 2, "b", TrialStats(compared=2, oks_sum=1.0, skipped=1))
    merged = read_trial_stats(repository, "pose", 2)
    assert (merged.compared, merged.skipped, merged.agreement) == (5, 1, 0.8)
    # a rule and an operator ending it at once: exactly one ends it
    ends: list = []
    threads = [
        threading.Thread(
            target=lambda: ends.append(
                end_trial(repository, "pose", PROMOTED, options, None, expect_version=2)
            )
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(e is not None for e in ends) == 1
    record = read_record(repository / "pose")
    assert record.serving_version == 2 and record.previous_version == 1
    assert record.candidate is None
    (trial,) = record.versions[2]["trials"]
    assert trial["outcome"] == PROMOTED and trial["compared"] == 5
    assert json.loads(json.dumps(trial)) == trial
    with pytest.raises(TrialError, match="no candidate"):
        end_trial(repository, "pose", DROPPED, options, None)


def test_drop_unloads_the_candidate_and_refusals_are_clear(repository):
    options = Settings().serving_options
    with pytest.raises(TrialError, match="serving version"):
        start_trial(repository, "pose", 1, "canary", 0.1, options, None)
    with pytest.raises(TrialError, match="no version 9"):
        start_trial(repository, "pose", 9, "canary", 0.1, options, None)
    with pytest.raises(TrialError, match="share"):
        start_trial(repository, "pose", 3, "canary", 1.5, options, None)
    start_trial(repository, "pose", 3, "canary", 0.1, options, None)
    end_trial(repository, "pose", DROPPED, options, None)
    record = read_record(repository / "pose")
    assert record.serving_version == 1 and loaded_versions(record) == [1]
    assert record.versions[3]["state"] == DROPPED


def test_a_copy_that_finishes_after_its_trial_ended_leaves_the_bookkeeping_working(tmp_path):
    """The figures of an ended trial are dropped; a copy of it finishing later (marking it
    changed) must neither write them back nor stop the next trials' figures and rules."""
    settings = Settings(home=tmp_path)
    options = settings.serving_options
    repo = settings.repository_dir
    spec = PoseSpec(input_size=(96, 128))
    for _ in range(2):
        install_model(repo, "pose", spec, SHIPPED, {"trained": True}, options, serve=False)
    start_trial(repo, "pose", 2, "shadow", 0.5, options, None)
    index = ModelIndex(settings)
    trials = Trials(settings, index, client=None)
    trial = index.trial("pose")
    trials.stats[trial.key] = TrialStats(compared=1, oks_sum=1.0)
    trials.dirty.add(trial.key)
    asyncio.run(trials.flush())
    assert read_trial_stats(repo, "pose", 2).compared == 1
    end_trial(repo, "pose", DROPPED, options, None)
    asyncio.run(trials.flush())  # the trial ended: its figures go
    assert trial.key not in trials.stats
    trials.dirty.add(trial.key)  # a late copy's ``finally``
    asyncio.run(trials.flush())
    assert not trials.dirty and trial.key not in trials.stats
    start_trial(repo, "pose", 2, "shadow", 0.5, options, None)  # the next trial counts afresh
    again = index.trial("pose")
    trials.stats[again.key] = TrialStats(compared=3, oks_sum=3.0)
    trials.dirty.add(again.key)
    asyncio.run(trials.flush())
    assert read_trial_stats(repo, "pose", 2).compared == 3
