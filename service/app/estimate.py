"""One image -> ``PoseResponse``: the flow behind ``POST /v1/pose`` and gRPC ``Estimate``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from service.metrics.record import observe_result

from .context import Services
from .decode import ImageIn
from .format import pose_response
from .inference import infer
from .options import PoseOptions
from .schemas import PoseResponse

ImageLoader = Callable[[], Awaitable[ImageIn]]


async def estimate_pose(
    services: Services,
    options: PoseOptions,
    load: ImageLoader,
    receive: Callable[[], Awaitable[None]] | None = None,
    then: Callable[[PoseResponse], Awaitable[None]] | None = None,
) -> PoseResponse:
    """Models are resolved before ``receive`` reads the upload, so a bad name costs no upload;
    the upload is received before a slot is taken, so a slow client holds none; ``load``
    checks the image only once admitted (``service.app.admission``). ``then`` (drawing the
    answer) runs before the slot is released: work the admission limit does not see would
    let more work run than it admits."""
    settings, index = services.settings, services.index
    t0 = time.perf_counter()
    detector, pose = index.resolve(options.detector, options.pose_model, options.keypoints)
    threshold = options.score_threshold
    if receive is not None:
        await receive()
    async with services.admission.slot():
        t_admitted = time.perf_counter()
        image = await load()
        t1 = time.perf_counter()
        result = await infer(
            services,
            image.payload,
            detector,
            pose,
            score_threshold=settings.score_threshold if threshold is None else threshold,
            max_persons=options.max_persons or settings.max_persons,
        )
        t2 = time.perf_counter()
        response = pose_response(
            image, result, detector, pose,
            decode_ms=(t1 - t_admitted) * 1e3,
            inference_ms=(t2 - t1) * 1e3,
            total_ms=(time.perf_counter() - t0) * 1e3,
        )  # fmt: skip
        format_s = time.perf_counter() - t2  # arrays -> response models
        if then is not None:
            await then(response)
    observe_result("image", response.timings, len(response.persons), format_s)
    return response
