"""In process, over the real application and a fake Triton client (tests/support/fakes.py):
drawing an answer happens inside the request's admission slot, and an unreachable Triton's
internal address reaches no answer (readiness or a 503)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

import service.http.pose as pose_route
from service.http.app import create_app
from tests.support.fakes import FakePipeline, fake_services

TRITON_URL = "triton-internal.cluster.local:8001"


def jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((120, 160, 3), 90, np.uint8))[1].tobytes()


@pytest.fixture
def pipeline() -> FakePipeline:
    return FakePipeline(url=TRITON_URL)


@pytest.fixture
def services(tmp_path, pipeline):
    return fake_services(tmp_path, pipeline)


def test_render_work_runs_inside_the_requests_slot(services, monkeypatch):
    """Drawing and encoding cost as much as a small inference: done after the slot is freed,
    ``max_in_flight`` would not bound the work running at once."""
    seen: list[int] = []
    real_draw = pose_route.draw

    def draw(*args, **kwargs):
        seen.append(services.admission.in_flight)  # a spy: the real drawing still runs
        return real_draw(*args, **kwargs)

    monkeypatch.setattr(pose_route, "draw", draw)
    with TestClient(create_app(services.settings, services)) as http:
        r = http.post("/v1/pose/render", content=jpeg(), headers={"accept": "image/png"})
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    assert seen == [1]
    assert services.admission.in_flight == 0  # and released afterwards


def test_an_unreachable_triton_is_not_named_to_callers(services, pipeline):
    with TestClient(create_app(services.settings, services)) as http:
        pipeline.fail = "unavailable"
        r = http.post("/v1/pose", content=jpeg())
        assert r.status_code == 503 and r.json()["error"]["code"] == "service_unavailable"
        pipeline.fail, pipeline.ready = None, False
        readiness = http.get("/readyz")
        assert readiness.status_code == 503 and readiness.json()["reason"]
        for answer in (r, readiness):
            assert "triton-internal" not in answer.text and "8001" not in answer.text
