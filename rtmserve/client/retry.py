"""When to try a request again: exponential backoff with full jitter, capped, and the server's
``Retry-After`` when it names one (HTTP 429/503, gRPC UNAVAILABLE/RESOURCE_EXHAUSTED)."""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRY_STATUS = frozenset({429, 502, 503, 504})
RETRY_GRPC = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})
# a stream cut midway by a server that went away (or a balancer's reset): resumable
RESUME_GRPC = frozenset({"UNAVAILABLE", "INTERNAL", "UNKNOWN"})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # in all, the first one included; 1 = never retry
    base: float = 0.25  # seconds before the first retry (scaled by 2 each time)
    cap: float = 10.0  # never wait longer than this between attempts
    deadline: float = 60.0  # give up once this much time has passed since the first attempt

    def wait(self, attempt: int, retry_after: float | None, rng: random.Random = random) -> float:
        """Seconds before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        backoff = rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        if retry_after is not None:  # the server knows best; a little jitter spreads the herd
            return min(self.cap, retry_after) + rng.uniform(0, self.base)
        return backoff


NO_RETRY = RetryPolicy(attempts=1)


def retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: rare from rtmserve; fall back to backoff
        return None


class Attempts:
    """One call's attempts: ``next_wait`` says how long to sleep before the next one, or None
    when the policy is spent (the caller then raises what it got)."""

    def __init__(self, policy: RetryPolicy) -> None:
        import time

        self.policy, self.count, self._clock = policy, 1, time.monotonic
        self.start = self._clock()

    def next_wait(self, retry_after: float | None) -> float | None:
        wait = self.policy.wait(self.count, retry_after)
        if self.count >= self.policy.attempts or (
            self._clock() - self.start + wait > self.policy.deadline
        ):
            return None
        self.count += 1
        return wait
