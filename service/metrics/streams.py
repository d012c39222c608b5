"""Per-stream accounting: streams open and started, frames answered, per-frame stages, persons
and frame errors (a frame that cannot be decoded or inferred; the stream goes on)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from service.video.schemas import FrameResult

from .families import STREAM_FRAMES, STREAMS, STREAMS_OPEN
from .observe import observe_error, observe_result


class StreamMeter:
    def __init__(self, api: str) -> None:
        self.api = api

    def frame(self, result: FrameResult) -> None:
        STREAM_FRAMES.labels(self.api, "true" if result.detected else "false").inc()
        if result.error is not None:
            observe_error(self.api, result.error.code)
            return
        observe_result("video", result.timings, len(result.persons))


@contextmanager
def metered_stream(api: str) -> Iterator[StreamMeter]:
    """Open while the stream runs; ``api`` is ``http`` or ``grpc``."""
    STREAMS.labels(api).inc()
    STREAMS_OPEN.labels(api).inc()
    try:
        yield StreamMeter(api)
    finally:
        STREAMS_OPEN.labels(api).dec()
