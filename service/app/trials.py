"""A candidate version on trial beside the live one (``service.repository.candidates``): who
answers a request, the copies that compare the two versions, and the rule that ends a trial.

Copies run on the copy pipeline (``COPY_PIPELINE_MODEL``: one low-priority instance) after the
client's answer is in hand: they wait in a bounded queue that ``trial_copies_in_flight``
workers empty, so a slow, failing or hung copy never delays or fails a client. Under a load
that leaves no CPU to spare the queue absorbs bursts and drains when the clients pause; a copy
due while it is full is skipped and counted. A copy that times out pauses its trial for as long
as the timeout (copies due meanwhile are skipped), so a hung candidate costs one timeout per
worker, not one per queued copy.
Shares are exact rather than random: the n-th request is picked when ``floor((n+1) s)``
exceeds ``floor(n s)``, so any N requests pick ``N s`` of them, give or take one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.core.agreement import agreement
from service.core.contract import COPY_PIPELINE_MODEL
from service.core.keypoints import set_of
from service.metadata import ModelRecord
from service.metrics.families import (
    POSE_ANSWERS,
    TRIAL_AGREEMENT,
    TRIAL_COPIES,
    TRIAL_PERSON_DIFF,
    TRIAL_POSE_TIME,
    TRIAL_SHARE,
)
from service.repository.candidates import (
    Rule,
    TrialStats,
    end_trial,
    read_trial_stats,
    write_trial_stats,
)
from service.settings import Settings
from service.triton.client import PipelineRequest, PipelineResult
from service.triton.control import TritonControl
from service.triton.keeper import unhealthy_model

log = logging.getLogger(__name__)
LIVE, CANARY, SHADOW = "live", "canary", "shadow"
KEEP_TIMES = 2000  # recent pose times kept per version for the p95s
POSE_STAGE, DETECTOR_STAGE = 2, 1  # in STAGE_MS


@dataclass(frozen=True)
class Trial:
    name: str
    version: int
    mode: str
    share: float
    rule: Rule | None
    live_version: int
    started: str
    id: str

    @classmethod
    def of(cls, record: ModelRecord) -> Trial | None:
        c = record.candidate
        if not c or int(c["version"]) not in record.versions:
            return None
        rule = Rule(**c["rule"]) if c.get("rule") else None
        live = record.serving_version
        return cls(record.name, int(c["version"]), c["mode"], float(c["share"]), rule, live,
                   str(c.get("started", "")), str(c.get("id", "")))  # fmt: skip

    @property
    def key(self) -> tuple[str, int, str]:
        return self.name, self.version, self.id


class ShareCounter:
    """Exact shares per (trial, purpose): see the module docstring."""

    def __init__(self) -> None:
        self._n: dict[tuple[Any, ...], int] = defaultdict(int)

    def pick(self, key: tuple[Any, ...], share: float) -> bool:
        n = self._n[key]
        self._n[key] = n + 1
        return math.floor((n + 1) * share) > math.floor(n * share)


def replica_id() -> str:
    """One file of trial figures per gateway process: host (the pod) and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _model_ms(result: PipelineResult, one_stage: bool) -> float:
    """The pose network's time; a one-stage model's is its whole network (detector stage)."""
    stages = np.asarray(result.stage_ms, np.float64)
    return float(stages[DETECTOR_STAGE] + stages[POSE_STAGE] if one_stage else stages[POSE_STAGE])


class Trials:
    """The gateway's side of every running trial: routing, copies, figures, rules."""

    def __init__(
        self,
        settings: Settings,
        index: Any,
        client: Any,
        report: Callable[[str, float], None] | None = None,
    ) -> None:
        """``report``: a model whose Python-backend stub is dead (the keeper reloads it)."""
        self.settings, self.index, self.client = settings, index, client
        self.report = report
        self.repository: Path = settings.repository_dir
        self.replica = replica_id()
        self.counter = ShareCounter()
        self.stats: dict[tuple[str, int, str], TrialStats] = {}
        self.dirty: set[tuple[str, int, str]] = set()
        self.queue: asyncio.Queue[tuple] = asyncio.Queue(settings.trial_copy_queue)
        self.workers: list[asyncio.Task] = []
        self.paused: dict[tuple[str, int, str], float] = {}  # trial -> until (monotonic)

    # -- who answers ---------------------------------------------------------------------
    def canary(self, trial: Trial | None, stream: bool) -> bool:
        """Whether this request (or this whole stream) is the candidate's to answer."""
        if trial is None or trial.mode != CANARY:
            return False
        return self.counter.pick((*trial.key, "stream" if stream else "image"), trial.share)

    # -- copies --------------------------------------------------------------------------
    def after(
        self,
        image: np.ndarray | bytes,
        pose: Any,
        result: PipelineResult,
        options: dict[str, Any],
    ) -> None:
        """Called with every pose answer: count it and, when due, copy the request to the
        trial's other version."""
        if pose is None:
            return
        POSE_ANSWERS.labels(pose.name, str(pose.version), pose.role).inc()
        trial = self.index.trial(pose.name)
        if trial is None:
            return
        if pose.role == CANARY:  # the candidate answered: the live version gets the copy
            other = self.index.serving(pose.name, "pose")
        elif trial.mode == SHADOW and self.counter.pick((*trial.key, "copy"), trial.share):
            other = self.index.candidate(trial, SHADOW)
        else:
            return
        if other.version == pose.version:
            return
        if not self.workers:
            self.workers = [
                asyncio.get_running_loop().create_task(self._work(), name=f"trial-copies-{i}")
                for i in range(self.settings.trial_copies_in_flight)
            ]
        if self._is_paused(trial):
            self._skip(trial)
            return
        try:
            self.queue.put_nowait((trial, image, pose, other, result, options))
        except asyncio.QueueFull:
            self._skip(trial)

    def _is_paused(self, trial: Trial) -> bool:
        return time.monotonic() < self.paused.get(trial.key, 0.0)

    def _skip(self, trial: Trial) -> None:
        self.stats.setdefault(trial.key, TrialStats()).skipped += 1
        self.dirty.add(trial.key)
        TRIAL_COPIES.labels(trial.name, str(trial.version), trial.mode, "skipped").inc()

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                if self._is_paused(job[0]):
                    self._skip(job[0])
                else:
                    await self._copy(*job)
            except Exception:  # never let a worker die
                log.exception("trial copy failed")

    async def _copy(
        self,
        trial: Trial,
        image: np.ndarray | bytes,
        answered: Any,
        other: Any,
        result: PipelineResult,
        options: dict[str, Any],
    ) -> None:
        labels = (trial.name, str(trial.version))
        stats = self.stats.setdefault(trial.key, TrialStats())
        sent = time.monotonic()
        try:
            if other.one_stage:  # it finds its people itself: the whole image
                copy_options = {k: options[k] for k in ("score_threshold", "max_persons")
                                if k in options}  # fmt: skip
            else:  # the same boxes: the comparison is of keypoints alone
                copy_options = {"boxes": result.boxes}
            if not other.one_stage and len(result.boxes) == 0:
                stats.empty += 1  # nobody to estimate: nothing to compare, nothing to run
                TRIAL_COPIES.labels(*labels, trial.mode, "empty").inc()
                return
            request = PipelineRequest(
                image, None, other.ref, model=COPY_PIPELINE_MODEL,
                timeout_s=self.settings.trial_copy_timeout_s, **copy_options,
            )  # fmt: skip
            copy = await self.client.infer(request)
        except Exception as exc:  # the copy's failure is the trial's figure, nobody else's
            timeout = self.settings.trial_copy_timeout_s
            if time.monotonic() - sent >= 0.9 * timeout:  # hung: stop queueing behind it
                self.paused[trial.key] = time.monotonic() + timeout
            dead = unhealthy_model(str(exc))
            if dead is not None and self.report is not None:  # e.g. the copy pipeline's stub
                self.report(dead, sent)
            stats.failed += 1
            TRIAL_COPIES.labels(*labels, trial.mode, "failed").inc()
            log.info("trial copy of %s v%d failed: %s", trial.name, other.version, exc)
            return
        finally:
            self.dirty.add(trial.key)
        live, cand = (copy, result) if answered.role == CANARY else (result, copy)
        kset = set_of(answered.keypoint_names)
        sigmas = np.array(kset.sigmas) if kset and kset.sigmas else None
        a = agreement(live.boxes, live.keypoints, cand.boxes, cand.keypoints, sigmas)
        stats.compared += 1
        stats.oks_sum += a.oks
        stats.person_diff_sum += a.person_diff
        stats.person_diff_pairs += a.person_diff > 0
        TRIAL_COPIES.labels(*labels, trial.mode, "compared").inc()
        TRIAL_AGREEMENT.labels(*labels).observe(a.oks)
        TRIAL_PERSON_DIFF.labels(*labels).observe(a.person_diff)
        for role, res, times in ((LIVE, live, stats.live_ms),
                                 ("candidate", cand, stats.candidate_ms)):  # fmt: skip
            ms = _model_ms(res, answered.one_stage)
            times.append(round(ms, 3))
            del times[:-KEEP_TIMES]
            TRIAL_POSE_TIME.labels(*labels, role).observe(ms / 1e3)

    # -- figures and rules -----------------------------------------------------------------
    async def run(self) -> None:
        """Every ``trial_flush_s``: write this replica's figures, check the rules."""
        while True:
            await asyncio.sleep(self.settings.trial_flush_s)
            try:
                await self.flush()
            except Exception:  # never let the loop die
                log.exception("trial bookkeeping failed")

    async def flush(self) -> None:
        active: dict[str, Trial] = {}
        for record in self.index.all():
            trial = Trial.of(record)
            TRIAL_SHARE.labels(record.name, SHADOW).set(
                trial.share if trial and trial.mode == SHADOW else 0
            )
            TRIAL_SHARE.labels(record.name, CANARY).set(
                trial.share if trial and trial.mode == CANARY else 0
            )
            if trial is not None:
                active[record.name] = trial
        for key in list(self.stats):
            if active.get(key[0]) is None or active[key[0]].key != key:
                self.stats.pop(key)  # the trial ended: its figures are in the record
        # a copy that finishes after its trial ended marks a key with no figures any more
        dirty, self.dirty = self.dirty & self.stats.keys(), set()
        for key in sorted(dirty):
            name, version, _ = key
            write_trial_stats(self.repository, name, version, self.replica, self.stats[key])
        for trial in active.values():
            if trial.rule is None:
                continue
            merged = read_trial_stats(self.repository, trial.name, trial.version)
            decision = trial.rule.decide(merged)
            if decision is None:
                continue
            outcome, why = decision
            log.warning("trial of %s v%d: %s by its rule (%s)", trial.name, trial.version,
                        outcome, why)  # fmt: skip
            control = TritonControl(self.settings.triton_http_url)
            await asyncio.to_thread(
                end_trial, self.repository, trial.name, outcome, self.settings.serving_options,
                control, expect_version=trial.version, reason=f"rule: {why}",
            )  # fmt: skip

    async def close(self) -> None:
        for task in self.workers:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self.workers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.flush()
