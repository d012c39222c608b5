"""API keys on a real service: who may ask, how often (every frame of a stream counts), what
stays open and what it tells without a key, and that a key never shows up in a log (keys used
over HTTP, gRPC and WebSocket, in its first message and in the old ``?api_key=``), a metric, a
response or Triton's environment."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from rtmserve.client.grpc import SourceFrame, channel, stream
from rtmserve.launch import start_service
from service.app.schemas import FrameResult
from service.grpc.gen import pose_pb2 as pb
from service.grpc.gen import pose_pb2_grpc as pb_grpc
from service.grpc.servicer import SERVICE_NAME
from service.grpc.status import RETRY_AFTER_KEY
from tests.support.paths import MODELS_MIRROR
from tests.support.procs import stubs, tritonserver
from tests.support.streaming import clip_images, write_video

ALICE, BOB, CAROL = "alice-3b9f6c1e7d2a", "bob-77e1c0a4f5d9", "carol-0f4e9a2b6c81"
DAVE, ERIN, FRANK = "dave-c4d1e8f20b93a7", "erin-6e0d9b3f7a21c5", "frank-2b8e4c6a0d13f9"
GINA, HANK = "gina-9a7c5e3b1f0d24", "hank-5d3b1f9e7c0a62"
WRONG = "mallory-5a5a5a5a5a5a"
EVERY_KEY = (ALICE, BOB, CAROL, DAVE, ERIN, FRANK, GINA, HANK, WRONG)
RATE, BURST = 2, 4
MAX_STREAM_S = 10  # live streams: wall-clock seconds


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    home = tmp_path_factory.mktemp("guarded-home")
    keys_file = home / "keys.txt"
    keys_file.write_text(f"# one per line\ncarol:{CAROL}\n")
    others = (("dave", DAVE), ("erin", ERIN), ("frank", FRANK), ("gina", GINA), ("hank", HANK))
    env = {
        "RTMSERVE_API_KEYS": ",".join(
            [f"alice:{ALICE}", f"bob:{BOB}"] + [f"{n}:{k}" for n, k in others]
        ),
        "RTMSERVE_API_KEYS_FILE": str(keys_file),
        "RTMSERVE_RATE_LIMIT": str(RATE),
        "RTMSERVE_RATE_BURST": str(BURST),
        "RTMSERVE_DEBUG_ENDPOINTS": "1",
        "RTMSERVE_MAX_VIDEO_SECONDS": str(MAX_STREAM_S),
    }
    svc = start_service(home, MODELS_MIRROR, env)
    yield svc
    assert svc.stop() == 0
    logs = svc.log.read_text(errors="replace") + (home / "triton" / "tritonserver.log").read_text(
        errors="replace"
    )
    for key in EVERY_KEY:  # the whole run: nothing logged a key
        assert key not in logs
    # uvicorn logged the old client's WebSocket request line, its key redacted
    assert 'WebSocket /v1/pose/ws?api_key=[redacted]"' in logs


def key(k: str) -> dict:
    return {"X-API-Key": k}


def test_health_readiness_metrics_and_docs_stay_open(guarded):
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert httpx.get(f"{guarded.http}{path}", timeout=10).status_code == 200, path
    readiness = httpx.get(f"{guarded.http}/readyz", timeout=10).text
    assert guarded.triton_http.split("//")[1] not in readiness and "127.0.0.1" not in readiness


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


def test_grpc_refuses_a_bad_key_before_its_message_is_read(guarded):
    """An Estimate whose message never comes is refused from its metadata alone: the gateway
    neither waits for nor reads an image it would refuse (a unary handler would wait for the
    message until the deadline)."""
    sent = threading.Event()

    def message_never_comes():
        sent.wait(30)
        yield from ()

    with channel(f"127.0.0.1:{guarded.grpc_port}") as ch:
        estimate = ch.stream_unary(
            f"/{SERVICE_NAME}/Estimate",
            request_serializer=pb.EstimateRequest.SerializeToString,
            response_deserializer=pb.PoseResponse.FromString,
        )
        try:
            for metadata in ((), (("x-api-key", WRONG),)):
                with pytest.raises(grpc.RpcError) as err:
                    estimate(message_never_comes(), metadata=metadata, timeout=20)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value
        finally:
            sent.set()


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


def test_metrics_count_clients_by_name_for_a_key_holder_only_and_responses_hide_paths(guarded):
    """The keys' names are for whoever holds a key (Prometheus can send one); an open scrape
    gets everything else."""
    metrics = httpx.get(f"{guarded.http}/metrics", headers=key(CAROL), timeout=10).text
    assert 'rtmserve_client_requests_total{api="http",client="alice"}' in metrics
    assert 'rtmserve_client_requests_total{api="grpc",client="alice"}' in metrics
    assert 'rtmserve_errors_total{api="http",code="unauthenticated"}' in metrics
    for headers in ({}, key(WRONG)):
        open_scrape = httpx.get(f"{guarded.http}/metrics", headers=headers, timeout=10).text
        assert 'rtmserve_errors_total{api="http",code="unauthenticated"}' in open_scrape
        assert "rtmserve_client_requests" not in open_scrape
        assert "alice" not in open_scrape and "bob" not in open_scrape
    for secret in EVERY_KEY:
        assert secret not in metrics
    models = httpx.get(f"{guarded.http}/v1/models", headers=key(CAROL), timeout=10).text
    assert str(guarded.home) not in models and str(MODELS_MIRROR) not in models
    assert '"mirror:end2end.onnx"' in models  # where it came from, without the folder


def ws_url(service, query: str = "") -> str:
    return service.http.replace("http://", "ws://") + f"/v1/pose/ws{query}"


def test_websocket_takes_the_key_in_its_first_message_and_still_in_the_query(guarded, jpeg):
    """The page sends it in the first message; an old client's ``?api_key=`` still works (and
    the fixture checks that the log line of its URL holds no key)."""
    for query, first in (("", {"api_key": DAVE}), (f"?api_key={DAVE}", {})):
        with connect(ws_url(guarded, query), max_size=None) as ws:
            ws.send(json.dumps(first))
            ws.send(jpeg)
            result = FrameResult.model_validate_json(ws.recv(timeout=120))
            assert result.error is None and result.frame_index == 0
    for first in ({}, {"api_key": WRONG}, {"api_key": 7}):
        with connect(ws_url(guarded)) as ws:
            ws.send(json.dumps(first))
            assert json.loads(ws.recv(timeout=30))["error"]["code"] == "unauthenticated"
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd.code == 1008


FRAMES = 10


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return cv2.imencode(".jpg", clip_images(1)[0])[1].tobytes()


def test_every_frame_of_a_stream_draws_from_its_keys_rate(guarded, jpeg):
    """gRPC, WebSocket and HTTP video: FRAMES frames (and the stream's opening) from a key of
    RATE requests/s and burst BURST take at least (FRAMES + 1 - BURST) / RATE seconds,
    however fast the service answers: a stream is not one request for thousands of frames."""
    least = (FRAMES + 1 - BURST) / RATE - 0.25
    frames = [SourceFrame(pb.Image(encoded=jpeg), i / 28) for i in range(FRAMES)]
    start = time.monotonic()
    results = list(stream(f"127.0.0.1:{guarded.grpc_port}", pb.StreamConfig(), frames,
                          metadata=(("x-api-key", ERIN),)))  # fmt: skip
    assert len(results) == FRAMES and time.monotonic() - start >= least

    start = time.monotonic()
    with connect(ws_url(guarded), max_size=None) as ws:
        ws.send(json.dumps({"api_key": FRANK}))
        for _ in range(FRAMES):  # one in flight, as the page does: nothing is dropped
            ws.send(jpeg)
            assert FrameResult.model_validate_json(ws.recv(timeout=60)).error is None
    assert time.monotonic() - start >= least

    video = write_video(clip_images(FRAMES), "mp4", "libx264")
    start = time.monotonic()
    r = httpx.post(f"{guarded.http}/v1/pose/video", content=video, headers=key(GINA), timeout=120)
    assert r.status_code == 200 and len(r.text.splitlines()) == FRAMES
    assert time.monotonic() - start >= least


def test_a_live_streams_duration_counts_on_the_servers_clock(guarded, jpeg):
    """Frames that all claim ``timestamp 0`` used to keep a stream open for ever (18,000
    frames, each within the idle timeout); the server's clock ends it after MAX_STREAM_S."""

    def frames():
        deadline = time.monotonic() + 6 * MAX_STREAM_S
        while time.monotonic() < deadline:  # paced by the key's rate: RATE frames/s
            yield SourceFrame(pb.Image(encoded=jpeg), 0.0)

    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        for _ in stream(f"127.0.0.1:{guarded.grpc_port}", pb.StreamConfig(), frames(),
                        metadata=(("x-api-key", HANK),)):  # fmt: skip
            pass
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"limit of {MAX_STREAM_S} s" in err.value.details()
    assert MAX_STREAM_S <= time.monotonic() - start < 3 * MAX_STREAM_S


def test_tritons_processes_do_not_inherit_the_keys(guarded):
    """The embedded tritonserver and its model stubs run model code: no key in their
    environment."""
    server = tritonserver(guarded)
    assert server is not None
    children = [server.pid, *(p.pid for p in stubs(guarded))]
    assert len(children) > 1
    for pid in children:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"RTMSERVE_API_KEYS" not in environ and b"RTMSERVE_HOME" in environ
        for secret in EVERY_KEY:
            assert secret.encode() not in environ
