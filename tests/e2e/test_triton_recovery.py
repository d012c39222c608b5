"""Triton going away gives 503, /readyz false and gRPC health NOT_SERVING; the gateway recovers
by itself when it returns.

A gateway started with --triton-url talks to a tritonserver this test starts and stops.
"""

from __future__ import annotations

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rtmserve.launch import free_port, start_service, wait_until
from service.triton.embedded import EmbeddedTriton, TritonPorts

SERVING = health_pb2.HealthCheckResponse.SERVING


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


def _grpc_health(gateway) -> int:
    """grpc.health.v1 status of the PoseService (it follows /readyz)."""
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        request = health_pb2.HealthCheckRequest(service="rtmserve.v1.PoseService")
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status


def _down(client: httpx.Client, photo: bytes, gateway) -> None:
    wait_until(lambda: _grpc_health(gateway) != SERVING, 30, "gRPC health to leave SERVING")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False and ready.json()["triton"] is False
    r = client.post("/v1/pose", content=photo)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "service_unavailable"
    assert client.get("/healthz").status_code == 200  # the gateway itself stays up


def _recovers(client: httpx.Client, photo: bytes, gateway) -> None:
    wait_until(lambda: client.get("/readyz").status_code == 200, 120, "the gateway to recover")
    wait_until(lambda: _grpc_health(gateway) == SERVING, 30, "gRPC health to be SERVING")
    r = client.post("/v1/pose", content=photo)
    assert r.status_code == 200, r.text
    assert r.json()["persons"]


def test_gateway_reports_triton_down_and_recovers_when_it_returns(gateway, triton, coco_images):
    photo = coco_images[50].read_bytes()
    with httpx.Client(base_url=gateway.http, timeout=60) as client:
        _down(client, photo, gateway)
        triton.start()
        triton.wait_ready()
        _recovers(client, photo, gateway)
        triton.stop()
        _down(client, photo, gateway)
        triton.start()
        triton.wait_ready()
        _recovers(client, photo, gateway)
