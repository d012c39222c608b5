"""API keys on a real service: who may ask, how often, what stays open, and that a key never
shows up in a log, a metric or a response."""

from __future__ import annotations

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rtmserve.client.grpc import channel
from rtmserve.launch import start_service
from service.grpc.gen import pose_pb2 as pb
from service.grpc.gen import pose_pb2_grpc as pb_grpc
from service.grpc.status import RETRY_AFTER_KEY
from tests.support.paths import MODELS_MIRROR

ALICE, BOB, CAROL = "alice-3b9f6c1e7d2a", "bob-77e1c0a4f5d9", "carol-0f4e9a2b6c81"
WRONG = "mallory-5a5a5a5a5a5a"
RATE, BURST = 2, 4


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    home = tmp_path_factory.mktemp("guarded-home")
    keys_file = home / "keys.txt"
    keys_file.write_text(f"# one per line\ncarol:{CAROL}\n")
    env = {
        "RTMSERVE_API_KEYS": f"alice:{ALICE},bob:{BOB}",
        "RTMSERVE_API_KEYS_FILE": str(keys_file),
        "RTMSERVE_RATE_LIMIT": str(RATE),
        "RTMSERVE_RATE_BURST": str(BURST),
        "RTMSERVE_DEBUG_ENDPOINTS": "1",
    }
    svc = start_service(home, MODELS_MIRROR, env)
    yield svc
    assert svc.stop() == 0
    logs = svc.log.read_text(errors="replace") + (home / "triton" / "tritonserver.log").read_text(
        errors="replace"
    )
    for key in (ALICE, BOB, CAROL, WRONG):  # the whole run: nothing logged a key
        assert key not in logs


def key(k: str) -> dict:
    return {"X-API-Key": k}


def test_health_readiness_metrics_and_docs_stay_open(guarded):
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert httpx.get(f"{guarded.http}{path}", timeout=10).status_code == 200, path


def test_the_api_needs_a_valid_key(guarded, coco_images):
    photo = coco_images[0].read_bytes()
    with httpx.Client(base_url=guarded.http, timeout=120) as http:
        for headers in ({}, key(WRONG), {"Authorization": f"Basic {ALICE}"}):
            routes = (("POST", "/v1/pose"), ("GET", "/v1/models"), ("POST", "/v1/pose/video"))
            for method, path in (*routes, ("GET", "/debug/runtime")):
                r = http.request(method, path, headers=headers, content=photo)
                assert r.status_code == 401, (path, headers, r.text)
                assert r.json()["error"]["code"] == "unauthenticated"
                assert r.headers["www-authenticate"] == "Bearer"
        assert http.post("/v1/pose", content=photo, headers=key(ALICE)).status_code == 200
        bearer = {"Authorization": f"Bearer {BOB}"}
        assert http.post("/v1/pose", content=photo, headers=bearer).status_code == 200
        assert http.get("/v1/models", headers=key(CAROL)).status_code == 200  # from the file
        assert http.get("/debug/runtime", headers=key(CAROL)).status_code == 200


def test_grpc_needs_a_valid_key_and_health_stays_open(guarded, coco_images):
    image = pb.Image(encoded=coco_images[1].read_bytes())
    with channel(f"127.0.0.1:{guarded.grpc_port}") as ch:
        stub = pb_grpc.PoseServiceStub(ch)
        for metadata in ((), (("x-api-key", WRONG),)):
            with pytest.raises(grpc.RpcError) as err:
                stub.Estimate(pb.EstimateRequest(image=image), metadata=metadata, timeout=60)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as err:
                list(stub.Stream(iter([pb.StreamRequest(config=pb.StreamConfig())]),
                                 metadata=metadata, timeout=60))  # fmt: skip
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        response = stub.Estimate(
            pb.EstimateRequest(image=image), metadata=(("x-api-key", ALICE),), timeout=60
        )
        assert response.image.width > 0 and response.models.pose.name
        bearer = (("authorization", f"Bearer {BOB}"),)
        assert stub.Estimate(pb.EstimateRequest(image=image), metadata=bearer, timeout=60)
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_do_not(guarded):
    with httpx.Client(base_url=guarded.http, timeout=60) as http:
        answers = [http.get("/v1/models", headers=key(BOB)) for _ in range(3 * BURST)]
        limited = [r for r in answers if r.status_code == 429]
        assert limited and all(r.status_code in (200, 429) for r in answers)
        assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
        assert limited[0].json()["error"]["code"] == "rate_limited"
        assert "bob" in limited[0].json()["error"]["message"]  # the client's name, not its key
        assert http.get("/v1/models", headers=key(CAROL)).status_code == 200
    with channel(f"127.0.0.1:{guarded.grpc_port}") as ch:
        stub = pb_grpc.PoseServiceStub(ch)
        empty = pb.EstimateRequest(image=pb.Image(encoded=b""))
        codes = []
        for _ in range(3 * BURST):
            try:
                stub.Estimate(empty, metadata=(("x-api-key", ALICE),), timeout=30)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    trailing = dict(exc.trailing_metadata())
                    assert int(trailing[RETRY_AFTER_KEY]) >= 1
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes


def test_metrics_count_clients_by_name_and_responses_hide_paths(guarded):
    metrics = httpx.get(f"{guarded.http}/metrics", timeout=10).text
    assert 'rtmserve_client_requests_total{api="http",client="alice"}' in metrics
    assert 'rtmserve_client_requests_total{api="grpc",client="alice"}' in metrics
    assert 'rtmserve_errors_total{api="http",code="unauthenticated"}' in metrics
    for secret in (ALICE, BOB, CAROL, WRONG):
        assert secret not in metrics
    models = httpx.get(f"{guarded.http}/v1/models", headers=key(CAROL), timeout=10).text
    assert str(guarded.home) not in models and str(MODELS_MIRROR) not in models
    assert '"mirror:end2end.onnx"' in models  # where it came from, without the folder


def test_a_gateway_open_to_the_network_without_keys_says_so(tmp_path):
    """Started without Triton (nothing to serve): only its start-up warning matters here."""
    svc = start_service(
        tmp_path,
        extra_env={"RTMSERVE_HOST": "0.0.0.0"},
        args=("--triton-url", "127.0.0.1:9", "--no-prepare"),
        ready_path="/healthz",
    )
    try:
        log = svc.log.read_text()
    finally:
        assert svc.stop() == 0
    assert "without API keys" in log and "RTMSERVE_API_KEYS" in log
