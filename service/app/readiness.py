"""Is the service ready to answer? One check for ``/readyz``, ``/metrics`` and gRPC health.

``/readyz`` (what load balancers, compose and Kubernetes ask) is deep: loaded models are not
enough (a stub may be dead, a GPU config may fail at run time), so once Triton says everything
is loaded, one real inference goes through the pipeline: a small built-in image with one track
to follow, which runs the detector and the pose model in one call. Its outcome holds for
``readiness_probe_s``. gRPC health and ``rtmserve_ready``, polled every second or so, check
what is loaded and the last deep check's outcome without running inferences of their own.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from service.core.association import track_table
from service.core.contract import PIPELINE_MODEL

from .context import Services
from .errors import ApiError
from .inference import infer
from .models import ServedModel
from .schemas import Readiness

PROBE_IMAGE = np.full((96, 128, 3), 127, np.uint8)
PROBE_BOX = [[16.0, 8.0, 112.0, 88.0]]
PROBE_TRACKS = track_table(PROBE_BOX, [0.9], PROBE_BOX, [True])


async def _probe(services: Services, detector: ServedModel | None, pose: ServedModel) -> str | None:
    """What is wrong with a real inference now, or None (cached for ``readiness_probe_s``)."""
    state = services.probe
    async with state.lock:  # one probe at a time; the others take its result
        if time.monotonic() - state.checked < services.settings.readiness_probe_s:
            return state.problem
        try:
            result = await infer(
                services, PROBE_IMAGE, detector, pose, probe=True,
                tracks=PROBE_TRACKS, track_thresholds=(0.4, 0.7),
            )  # fmt: skip
            poses = result.keypoints
            # top-down continues the track (a pose always comes back); a one-stage model
            # may well see no one in a grey image, but must answer
            found = pose.one_stage or (len(poses) > 0 and poses.shape[1] > 0)
            ok = found and poses.ndim == 3 and bool(np.isfinite(poses).all())
            state.problem = None if ok else "an inference check returned no pose"
        except ApiError as exc:
            state.problem = f"an inference check failed: {exc.message}"
        state.checked = time.monotonic()
        return state.problem


async def check_readiness(services: Services, deep: bool = False) -> Readiness:
    """Ready when Triton answers, the pipeline and default models' serving versions are
    loaded, and (``deep``: now; else as last checked) an inference through them succeeds."""
    client, index = services.client, services.index
    # read before asking Triton, which may answer only once a model (re)load is over
    repairing = set(services.keeper.repairing) if services.keeper else set()
    triton = await client.server_live()
    checks: dict[str, bool] = {}
    reason = None if triton else "the inference server does not answer"  # no internal URL
    served: dict[str, ServedModel] = {}
    if triton:
        refs = [(PIPELINE_MODEL, 1)]
        for task in ("detector", "pose"):
            name = index.default(task)
            try:
                served[task] = index.serving(name, task)
                refs.append((name, served[task].version))
            except ApiError as exc:
                checks[name] = False
                reason = exc.message
        states = await asyncio.gather(*(client.model_ready(n, v) for n, v in refs))
        checks.update({f"{n}:{v}": ok for (n, v), ok in zip(refs, states, strict=True)})
        if not all(checks.values()) and reason is None:
            reason = "models not ready: " + ", ".join(k for k, ok in checks.items() if not ok)
        for name in sorted(repairing):
            checks[f"{name}:repairing"] = False
            reason = reason or f"reloading {', '.join(sorted(repairing))}"
        if all(checks.values()) and len(served) == 2:
            if deep:
                pose = served["pose"]
                detector = None if pose.one_stage else served["detector"]
                problem = await _probe(services, detector, pose)
            else:
                problem = services.probe.problem
            checks["inference"] = problem is None
            reason = reason or problem
    if services.draining:
        reason = "shutting down"
    return Readiness(
        ready=triton and all(checks.values()) and not services.draining,
        triton=triton,
        models=checks,
        reason=reason,
    )
