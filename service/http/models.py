"""``GET /v1/models``: every model, its versions, which one serves and whether it is loaded."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from service.app.format import public_meta
from service.app.schemas import ModelInfo, ModelsResponse, TrialInfo, VersionInfo
from service.core.keypoints import set_name
from service.metadata import ModelRecord
from service.repository.candidates import read_trial_stats

from .deps import ClientDep, ServicesDep

router = APIRouter()


@router.get(
    "/v1/models", response_model=ModelsResponse, summary="Models, versions and their status"
)
async def models(services: ServicesDep, client: ClientDep) -> ModelsResponse:
    index, client = services.index, services.client
    records = index.all()
    pairs = [(r, v) for r in records for v in sorted(r.versions)]
    ready = await asyncio.gather(*(client.model_ready(r.name, v) for r, v in pairs))
    state = {(r.name, v): ok for (r, v), ok in zip(pairs, ready, strict=True)}
    return ModelsResponse(
        models=[
            ModelInfo(
                name=r.name,
                task=r.task,
                serving_version=r.serving_version,
                spec=r.spec,
                keypoint_set=set_name(r.spec.get("keypoint_names")),
                versions=[
                    VersionInfo(
                        version=v,
                        serving=v == r.serving_version,
                        ready=state[(r.name, v)],
                        trained=bool(meta.get("trained", True)),
                        meta=public_meta(meta),
                    )
                    for v, meta in sorted(r.versions.items())
                ],
                trial=_trial(index.repository, r, index.trial(r.name) is not None),
            )
            for r in records
        ],
        default_detector=index.default("detector"),
        default_pose_model=index.default("pose"),
    )


def _trial(repository, record: ModelRecord, running: bool) -> TrialInfo | None:
    c = record.candidate
    if not c:
        return None
    figures = read_trial_stats(repository, record.name, int(c["version"])).summary()
    return TrialInfo(
        version=int(c["version"]), mode=c["mode"], share=float(c["share"]),
        live_version=record.serving_version, started=str(c.get("started", "")),
        rule=c.get("rule"), running=running, figures=figures,
    )  # fmt: skip
