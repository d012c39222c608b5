"""One image -> ``PoseResponse``: the flow behind ``POST /v1/pose`` and gRPC ``Estimate``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from service.metrics.observe import observe_result
from service.settings import Settings
from service.triton.client import InferenceFailed, PipelineClient, TritonUnavailable

from .errors import ServiceUnavailable, UpstreamError
from .format import pose_response
from .models import ModelIndex
from .schemas import PoseResponse

ImageLoader = Callable[[], Awaitable[tuple[np.ndarray, str]]]


@dataclass(frozen=True)
class PoseQuery:
    """Request options; ``None`` takes the server's setting."""

    score_threshold: float | None = None
    max_persons: int | None = None
    pose_model: str | None = None
    detector: str | None = None
    keypoints: bool = True


async def estimate_pose(
    settings: Settings,
    client: PipelineClient,
    index: ModelIndex,
    query: PoseQuery,
    load: ImageLoader,
) -> PoseResponse:
    """Models are resolved before ``load`` reads the image, so a bad name costs no upload."""
    t0 = time.perf_counter()
    det = index.serving(query.detector, "detector")
    pose_served = index.serving(query.pose_model, "pose") if query.keypoints else None
    names = index.keypoint_names(pose_served)
    image, fmt = await load()
    t1 = time.perf_counter()
    try:
        result = await client.infer(
            image,
            det.ref,
            pose_served.ref if pose_served else None,
            settings.score_threshold if query.score_threshold is None else query.score_threshold,
            query.max_persons or settings.max_persons,
        )
    except TritonUnavailable as exc:
        raise ServiceUnavailable(f"inference server unavailable: {exc}") from exc
    except InferenceFailed as exc:
        raise UpstreamError(f"inference failed: {exc}") from exc
    t2 = time.perf_counter()
    response = pose_response(
        image,
        fmt,
        result,
        det,
        pose_served,
        names,
        decode_ms=(t1 - t0) * 1e3,
        inference_ms=(t2 - t1) * 1e3,
        total_ms=(time.perf_counter() - t0) * 1e3,
    )
    format_s = time.perf_counter() - t2  # arrays -> response models
    observe_result("image", response.timings, len(response.persons), format_s)
    return response
