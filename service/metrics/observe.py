"""Record what one image or frame cost (its ``Timings``) and how many persons it held."""

from __future__ import annotations

from service.gateway.schemas import Timings

from .families import ERRORS, PERSONS, STAGE_LATENCY


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
