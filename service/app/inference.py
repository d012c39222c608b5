"""The one way the application calls the Triton pipeline: served models in, arrays out, and
Triton's failures as the API's errors (503 when it cannot be reached, 502 when it refuses)."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.triton.client import (
    ModelRef,
    PipelineRequest,
    PipelineResult,
    TritonError,
    TritonUnavailable,
)

from .context import PipelineClient
from .errors import InferenceFailed, ServiceUnavailable
from .models import ServedModel


def ref(model: ServedModel | None) -> ModelRef | None:
    return None if model is None else ModelRef(model.name, model.version, model.spec_json)


async def infer(
    client: PipelineClient,
    image: np.ndarray,
    detector: ServedModel | None,
    pose: ServedModel | None,
    **options: Any,
) -> PipelineResult:
    """``options``: the rest of a ``PipelineRequest`` (threshold, boxes, tracks...)."""
    request = PipelineRequest(image, ref(detector), ref(pose), **options)
    try:
        return await client.infer(request)
    except TritonUnavailable as exc:
        raise ServiceUnavailable(f"inference server unavailable: {exc}") from exc
    except TritonError as exc:
        raise InferenceFailed(f"inference failed: {exc}") from exc
