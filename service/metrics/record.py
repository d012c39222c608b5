"""Record what one image or frame cost and held, errors by API code, and streams.

Takes plain values (or anything with a ``Timings``' fields): this package knows nothing of
what it measures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from .families import ERRORS, PERSONS, STAGE_LATENCY, STREAM_FRAMES, STREAMS, STREAMS_OPEN


class Timings(Protocol):
    decode_ms: float
    inference_ms: float
    stages_ms: dict[str, float]


def observe_result(
    flow: str, timings: Timings, persons: int, format_s: float | None = None
) -> None:
    """Stages from the response's own timings, so the metrics and the JSON never disagree. A
    video frame that needed no Triton call (no detection due, nothing tracked) records none."""
    stage = STAGE_LATENCY.labels
    stage(flow, "decode").observe(timings.decode_ms / 1e3)
    if timings.inference_ms > 0:
        stage(flow, "inference").observe(timings.inference_ms / 1e3)
        for name, ms in timings.stages_ms.items():
            stage(flow, name).observe(ms / 1e3)
    if format_s is not None:
        stage(flow, "format").observe(format_s)
    PERSONS.labels(flow).observe(persons)


def observe_error(api: str, code: str) -> None:
    ERRORS.labels(api, code).inc()


class StreamMeter:
    """Per frame: frames answered, stages and persons, or the frame's error (the stream goes on)."""

    def __init__(self, api: str) -> None:
        self.api = api

    def frame(self, detected: bool, error: str | None, timings: Timings, persons: int) -> None:
        STREAM_FRAMES.labels(self.api, "true" if detected else "false").inc()
        if error is not None:
            observe_error(self.api, error)
        else:
            observe_result("video", timings, persons)


@contextmanager
def metered_stream(api: str) -> Iterator[StreamMeter]:
    """Open while the stream runs; ``api`` is ``http`` or ``grpc``."""
    STREAMS.labels(api).inc()
    STREAMS_OPEN.labels(api).inc()
    try:
        yield StreamMeter(api)
    finally:
        STREAMS_OPEN.labels(api).dec()
