"""Triton going away gives 503 and /readyz false; the gateway recovers by itself when it returns.

A gateway started with --triton-url talks to a tritonserver this test starts and stops.
"""

from __future__ import annotations

import httpx
import pytest

from service.launch import free_port, start_service, wait_until
from service.triton.embedded import EmbeddedTriton, TritonPorts


@pytest.fixture
def triton(service, tmp_path):
    ports = TritonPorts(free_port(), free_port(), free_port())
    t = EmbeddedTriton(service.repository, tmp_path / "triton", ports)
    yield t
    t.stop()


@pytest.fixture
def gateway(service, triton, tmp_path):
    env = {"RTMSERVE_REPOSITORY": str(service.repository)}
    args = ("--triton-url", f"127.0.0.1:{triton.ports.grpc}", "--no-prepare")
    svc = start_service(tmp_path / "gateway", extra_env=env, args=args, ready_path="/healthz")
    yield svc
    assert svc.stop() == 0


def _down(client: httpx.Client, photo: bytes) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False and ready.json()["triton"] is False
    r = client.post("/v1/pose", content=photo)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "service_unavailable"
    assert client.get("/healthz").status_code == 200  # the gateway itself stays up


def _recovers(client: httpx.Client, photo: bytes) -> None:
    wait_until(lambda: client.get("/readyz").status_code == 200, 120, "the gateway to recover")
    r = client.post("/v1/pose", content=photo)
    assert r.status_code == 200, r.text
    assert r.json()["persons"]


def test_gateway_reports_triton_down_and_recovers_when_it_returns(gateway, triton, coco_images):
    photo = coco_images[50].read_bytes()
    with httpx.Client(base_url=gateway.http, timeout=60) as client:
        _down(client, photo)
        triton.start()
        triton.wait_ready()
        _recovers(client, photo)
        triton.stop()
        _down(client, photo)
        triton.start()
        triton.wait_ready()
        _recovers(client, photo)
