"""Is the service ready to answer? One check for ``/readyz``, ``/metrics`` and gRPC health."""

from __future__ import annotations

import asyncio

from service.core.contract import PIPELINE_MODEL

from .context import Services
from .errors import ApiError
from .schemas import Readiness


async def check_readiness(services: Services) -> Readiness:
    """Ready when Triton answers and the pipeline and default models' serving versions load."""
    client, index = services.client, services.index
    # read before asking Triton, which may answer only once a model (re)load is over
    repairing = set(services.keeper.repairing) if services.keeper else set()
    triton = await client.server_ready()
    checks: dict[str, bool] = {}
    reason = None if triton else f"Triton at {client.url} is not ready"
    if triton:
        refs = [(PIPELINE_MODEL, 1)]
        for task in ("detector", "pose"):
            name = index.default(task)
            try:
                refs.append((name, index.serving(name, task).version))
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
    if services.draining:
        reason = "shutting down"
    return Readiness(
        ready=triton and all(checks.values()) and not services.draining,
        triton=triton,
        models=checks,
        reason=reason,
    )
