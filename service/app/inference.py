"""The one way the application calls the Triton pipeline: served models in, arrays out, and
Triton's failures as the API's errors: 503 when it cannot be reached or a model's stub crashed
(the keeper reloads it: retrying is right), 502 when it refuses the request."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from service.triton.client import (
    ModelRef,
    PipelineRequest,
    PipelineResult,
    TritonError,
    TritonUnavailable,
)
from service.triton.keeper import unhealthy_model

from .context import Services
from .errors import InferenceFailed, InvalidImage, Overloaded, ServiceUnavailable
from .format import public_meta
from .models import ServedModel

# what the pipeline model says of an encoded image it cannot decode (model_repository/pipeline)
INVALID_IMAGE = "invalid image"
# what Triton says when a model's queue policy rejects a request
QUEUE_FULL = ("Exceeds maximum queue size", "Request timeout expired")
# ... and of a model the repository lists but Triton is (re)loading: retry shortly
RELOADING = ("Request for unknown model", "has no available versions", "is not ready")


def ref(model: ServedModel | None) -> ModelRef | None:
    return None if model is None else model.ref


async def infer(
    services: Services,
    image: np.ndarray | bytes,
    detector: ServedModel | None,
    pose: ServedModel | None,
    probe: bool = False,
    **options: Any,
) -> PipelineResult:
    """``options``: the rest of a ``PipelineRequest`` (threshold, boxes, tracks...);
    ``probe``: the readiness probe's, which no trial counts or copies."""
    request = PipelineRequest(image, ref(detector), ref(pose), **options)
    sent = time.monotonic()
    try:
        result = await services.client.infer(request)
    except TritonUnavailable as exc:
        # its detail names internal addresses: the supervisor and keeper log what happened
        raise ServiceUnavailable("the inference server is unavailable", retry_after=1) from exc
    except TritonError as exc:
        message = public_meta(str(exc))  # no server paths in what a client reads
        if INVALID_IMAGE in message:  # an encoded image the pipeline could not decode
            raise InvalidImage(message.split(INVALID_IMAGE, 1)[1].strip(": ")) from exc
        if any(m in message for m in QUEUE_FULL):  # Triton's own admission (queue policy)
            raise Overloaded(f"Triton is at capacity: {message}", retry_after=1) from exc
        if any(m in message for m in RELOADING):
            raise ServiceUnavailable(f"a model is being loaded: {message}", retry_after=1) from exc
        model = unhealthy_model(message)
        if model is None:
            raise InferenceFailed(f"inference failed: {message}") from exc
        if services.keeper is not None:  # a crashed Python-backend stub: reload its model
            services.keeper.report(model, sent)
        raise ServiceUnavailable(f"{model} is restarting: {message}", retry_after=1) from exc
    if services.trials is not None and not probe:  # a candidate on trial may get a copy
        services.trials.after(image, pose, result, options)
    return result
