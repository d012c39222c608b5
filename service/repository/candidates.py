"""Trial a registered version on live traffic before it serves: shadow, canary, promote, drop.

A trial is the record's ``candidate`` (version, mode, share, optional rule). ``shadow``: each
gateway sends a copy of ``share`` of its pose requests to the candidate, off the response path,
and compares the two answers; ``canary``: the candidate answers ``share`` of the requests
(streams stay with the version they started on) and the live version gets the copy. Gateways
write what they measured to ``<model>/trials/<version>/<replica>.json`` (one writer per file,
so replicas sharing the repository never overwrite each other); ``promote`` and ``drop`` fold
the merged figures into the version's record, where they stay.

Starting, promoting and dropping hold a lock on the model folder: a gateway's automatic rule
and an operator may end the same trial at once, and only the first ends it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from service.metadata import ModelRecord, model_path, read_record, write_atomic
from service.settings import ServingOptions
from service.triton.control import TritonControl

from .install import ONNX_FILE, save, switch_serving

MODES = ("shadow", "canary")
TRIALS_DIR = "trials"  # not a number: Triton ignores it
LOCK_FILE = ".trial.lock"
PROMOTED, DROPPED = "promoted", "dropped"


class TrialError(ValueError):
    """A trial that cannot start or end as asked (no such version, none running...)."""


@dataclass(frozen=True)
class Rule:
    """Ends a trial by itself once ``min_requests`` pairs were compared: promotes when the
    mean agreement (OKS) reaches ``min_agreement`` and the candidate's p95 pose time is at most
    ``max_p95_ratio`` times the live version's, drops otherwise."""

    min_agreement: float = 0.9
    max_p95_ratio: float = 2.0
    min_requests: int = 100

    def decide(self, stats: TrialStats) -> tuple[str, str] | None:
        """(promoted | dropped, why), or None while too few pairs were compared."""
        if stats.compared < self.min_requests:
            return None
        why = (
            f"{stats.compared} pairs: agreement {stats.agreement:.4f} (min "
            f"{self.min_agreement:g}), p95 ratio {stats.p95_ratio:.2f} (max {self.max_p95_ratio:g})"
        )
        good = stats.agreement >= self.min_agreement and stats.p95_ratio <= self.max_p95_ratio
        return (PROMOTED if good else DROPPED), why


@dataclass
class TrialStats:
    """What the gateways measured for one candidate: pairs compared (both answered), copies
    that failed, were skipped (the copy path was busy) or empty (no person to compare), OKS
    and person-count differences, and recent pose-stage times of both versions (the p95s)."""

    compared: int = 0
    failed: int = 0
    skipped: int = 0
    empty: int = 0
    oks_sum: float = 0.0
    person_diff_sum: int = 0
    person_diff_pairs: int = 0  # pairs whose person counts differ
    live_ms: list[float] = field(default_factory=list)
    candidate_ms: list[float] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return self.oks_sum / self.compared if self.compared else float("nan")

    @staticmethod
    def _p95(values: list[float]) -> float:
        return float(np.percentile(values, 95)) if values else float("nan")

    @property
    def p95_ratio(self) -> float:
        live = self._p95(self.live_ms)
        return self._p95(self.candidate_ms) / live if live > 0 else float("nan")

    def merge(self, other: TrialStats) -> TrialStats:
        return TrialStats(
            self.compared + other.compared,
            self.failed + other.failed,
            self.skipped + other.skipped,
            self.empty + other.empty,
            self.oks_sum + other.oks_sum,
            self.person_diff_sum + other.person_diff_sum,
            self.person_diff_pairs + other.person_diff_pairs,
            self.live_ms + other.live_ms,
            self.candidate_ms + other.candidate_ms,
        )

    def summary(self) -> dict[str, Any]:
        """The figures as ``/v1/models`` and the version's record show them."""

        def r(x: float, digits: int = 4) -> float | None:
            return None if np.isnan(x) else round(x, digits)

        return {
            "compared": self.compared,
            "failed": self.failed,
            "skipped": self.skipped,
            "empty": self.empty,
            "agreement_oks": r(self.agreement),
            "mean_person_diff": r(self.person_diff_sum / self.compared) if self.compared else None,
            "pairs_with_person_diff": self.person_diff_pairs,
            "live_p95_ms": r(self._p95(self.live_ms), 3),
            "candidate_p95_ms": r(self._p95(self.candidate_ms), 3),
            "p95_ratio": r(self.p95_ratio, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialStats:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def trial_dir(repository: Path, name: str, version: int) -> Path:
    return model_path(repository, name) / TRIALS_DIR / str(version)


def write_trial_stats(
    repository: Path, name: str, version: int, replica: str, stats: TrialStats
) -> None:
    folder = trial_dir(repository, name, version)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / f"{replica}.json", json.dumps(stats.to_dict()))


def read_trial_stats(repository: Path, name: str, version: int) -> TrialStats:
    """Every replica's figures for this candidate, merged."""
    total = TrialStats()
    for path in sorted(trial_dir(repository, name, version).glob("*.json")):
        with contextlib.suppress(OSError, ValueError, TypeError):
            total = total.merge(TrialStats.from_dict(json.loads(path.read_text())))
    return total


@contextlib.contextmanager
def _locked(model_dir: Path) -> Iterator[None]:
    with open(model_dir / LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def start_trial(
    repository: Path,
    name: str,
    version: int,
    mode: str,
    share: float,
    options: ServingOptions,
    triton: TritonControl | None,
    rule: Rule | None = None,
) -> ModelRecord:
    """Load ``version`` beside the serving one and start its trial (replacing any other)."""
    if mode not in MODES:
        raise TrialError(f"mode must be one of {MODES}, got {mode!r}")
    if not 0.0 < share <= 1.0:
        raise TrialError(f"share must be in (0, 1], got {share}")
    model_dir = model_path(repository, name)
    with _locked(model_dir):
        record = read_record(model_dir)
        if record.task != "pose":
            raise TrialError(f"{name} is a {record.task} model: trials compare pose models")
        if version not in record.versions:
            raise TrialError(f"{name} has no version {version} (has {sorted(record.versions)})")
        if version == record.serving_version:
            raise TrialError(f"{name} v{version} is the serving version: nothing to compare")
        if not (model_dir / str(version) / ONNX_FILE).exists():
            raise TrialError(f"{name} v{version} has no {ONNX_FILE} any more")
        for stale in trial_dir(repository, name, version).glob("*.json"):
            stale.unlink()  # a new trial starts from zero
        record.candidate = {
            "version": version,
            "mode": mode,
            "share": share,
            "rule": asdict(rule) if rule else None,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "live_version": record.serving_version,
            "id": uuid.uuid4().hex[:12],  # tells two trials of one version apart
        }
        record.versions[version]["state"] = mode
        save(repository, record, options)  # configs list it: Triton may load it
    if triton is not None:
        triton.load(name)
        triton.wait_ready(name, version)
    return record


def end_trial(
    repository: Path,
    name: str,
    outcome: str,
    options: ServingOptions,
    triton: TritonControl | None,
    expect_version: int | None = None,
    reason: str = "",
) -> ModelRecord | None:
    """Promote (the candidate serves everyone) or drop (it serves no one) the running trial.

    ``expect_version``: end only the trial of that version (an automatic rule racing an
    operator); returns None when there is no such trial to end."""
    model_dir = model_path(repository, name)
    with _locked(model_dir):
        record = read_record(model_dir)
        trial = record.candidate
        if trial is None or (expect_version is not None and trial["version"] != expect_version):
            if expect_version is not None:
                return None
            raise TrialError(f"{name} has no candidate on trial")
        version = int(trial["version"])
        stats = read_trial_stats(repository, name, version)
        meta = record.versions[version]
        meta.setdefault("trials", []).append(
            {
                **{k: trial[k] for k in ("mode", "share", "rule", "started", "live_version")},
                "ended": datetime.now(UTC).isoformat(timespec="seconds"),
                "outcome": outcome,
                "reason": reason or "by the operator",
                **stats.summary(),
            }
        )
        record.candidate = None
        if outcome == PROMOTED:
            switch_serving(record, version)
        elif outcome == DROPPED:
            meta["state"] = DROPPED  # configs no longer list it: Triton unloads it
        else:
            raise TrialError(f"outcome must be {PROMOTED} or {DROPPED}, got {outcome!r}")
        save(repository, record, options)
    if triton is not None:
        triton.load(name)
    return record
