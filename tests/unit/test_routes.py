"""Every error path of ``POST /v1/pose``, the video route and gRPC ``Estimate``/``Stream``, in
process: FastAPI's TestClient and a grpc.aio server on a free port, over the real application
core and a fake Triton pipeline client (tests/support/fakes.py), so a 502 (Triton refuses) and
a 503 (Triton gone) can be caused on demand. The same paths against real processes are in
tests/e2e."""

from __future__ import annotations

import asyncio

import cv2
import grpc
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.grpc.gen import pose_pb2 as pb
from service.grpc.gen import pose_pb2_grpc as pb_grpc
from service.grpc.server import GrpcServer
from service.grpc.status import ERROR_CODE_KEY
from service.http.app import create_app
from tests.support.fakes import POSE, FakePipeline, fake_services

LIMITS = {"max_upload_bytes": 100_000, "max_image_pixels": 300 * 300}


def jpeg(h: int = 120, w: int = 160) -> bytes:
    """A smooth picture: small files even at sizes over the pixel limit."""
    ramp = np.linspace(0, 255, w, dtype=np.uint8)
    return cv2.imencode(".jpg", np.dstack([np.tile(ramp, (h, 1))] * 3))[1].tobytes()


@pytest.fixture
def pipeline() -> FakePipeline:
    return FakePipeline()


@pytest.fixture
def services(tmp_path, pipeline):
    return fake_services(tmp_path, pipeline, **LIMITS)


@pytest.fixture
def http(services):
    with TestClient(create_app(services.settings, services)) as client:
        yield client


def error(r, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()["error"]
    assert body["code"] == code
    return body["message"]


# --------------------------------------------------------------------------- HTTP


def test_http_answers_with_the_pipelines_persons(http, pipeline):
    r = http.post("/v1/pose", content=jpeg(), params={"max_persons": 3, "score_threshold": 0.4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"width": 160, "height": 120, "format": "jpeg"}
    assert [p["bbox"] for p in body["persons"]] == [[40.0, 30.0, 120.0, 90.0]]
    assert len(body["persons"][0]["keypoints"]) == 17
    assert body["models"]["pose"]["name"] == POSE
    call = pipeline.calls[-1]
    assert call.max_persons == 3 and call.score_threshold == pytest.approx(0.4)
    assert call.pose.name == POSE and '"kind":"pose"' in call.pose.spec_json


def test_http_400_404_413_415_422(http, pipeline):
    assert "empty" in error(http.post("/v1/pose", content=b""), 400, "invalid_image")
    error(http.post("/v1/pose", content=jpeg()[:200]), 400, "invalid_image")  # truncated
    assert "nope" in error(
        http.post("/v1/pose", content=jpeg(), params={"pose_model": "nope"}), 404, "unknown_model"
    )
    error(http.post("/v1/pose", content=b"\xff\xd8\xff" + bytes(200_000)), 413, "payload_too_large")
    assert "400x400" in error(
        http.post("/v1/pose", content=jpeg(400, 400)), 413, "payload_too_large"
    )
    error(http.post("/v1/pose", content=b"<html></html>"), 415, "unsupported_media_type")
    for params in ({"score_threshold": 2}, {"max_persons": 0}, {"keypoints": "maybe"}):
        name = next(iter(params))
        assert name in error(http.post("/v1/pose", content=jpeg(), params=params), 422,
                             "invalid_parameter")  # fmt: skip
    assert pipeline.calls == []  # nothing refused reached Triton


def test_http_502_when_triton_refuses_and_503_when_it_is_gone(http, pipeline):
    pipeline.fail = "error"
    assert "bad input" in error(http.post("/v1/pose", content=jpeg()), 502, "inference_failed")
    pipeline.fail = "unavailable"
    message = error(http.post("/v1/pose", content=jpeg()), 503, "service_unavailable")
    assert "unavailable" in message
    pipeline.fail, pipeline.ready = None, False
    assert http.get("/readyz").status_code == 503
    assert http.post("/v1/pose", content=jpeg()).status_code == 200  # and it recovers


def test_http_video_refuses_before_streaming(http):
    error(http.post("/v1/pose/video", content=b"hello"), 415, "unsupported_media_type")
    error(http.post("/v1/pose/video", content=b""), 400, "invalid_video")
    r = http.post("/v1/pose/video", content=b"x", params={"det_interval": 0})
    assert "det_interval" in error(r, 422, "invalid_parameter")
    error(http.post("/v1/pose/video", content=b"x", params={"pose_model": "nope"}), 404,
          "unknown_model")  # fmt: skip


def test_http_errors_are_counted_by_code(http):
    http.post("/v1/pose", content=b"<html></html>")
    metrics = http.get("/metrics").text
    line = 'rtmserve_errors_total{api="http",code="unsupported_media_type"}'
    assert float(next(x for x in metrics.splitlines() if x.startswith(line)).split()[-1]) >= 1


# --------------------------------------------------------------------------- gRPC


def grpc_calls(services, calls):
    """Run ``calls(stub)`` against an in-process gRPC server; returns what it returns."""

    async def main():
        server = GrpcServer(services, port=0)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                return await calls(pb_grpc.PoseServiceStub(channel))
        finally:
            await server.stop(0)

    return asyncio.run(main())


async def status_of(call) -> tuple[grpc.StatusCode, str, str | None]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        code = dict(exc.trailing_metadata() or ()).get(ERROR_CODE_KEY)
        return exc.code(), exc.details() or "", code
    raise AssertionError("the call succeeded")


def test_grpc_statuses_for_every_error(services, pipeline):
    image = pb.Image(encoded=jpeg())
    S = grpc.StatusCode

    async def calls(stub):
        out = {}
        out["ok"] = await stub.Estimate(pb.EstimateRequest(image=image))
        out[400] = await status_of(stub.Estimate(pb.EstimateRequest(image=pb.Image(encoded=b""))))
        out[404] = await status_of(stub.Estimate(pb.EstimateRequest(image=image, pose_model="x")))
        raw = pb.RawImage(pixels=b"", width=400, height=400, format=pb.PIXEL_FORMAT_BGR)
        out[413] = await status_of(stub.Estimate(pb.EstimateRequest(image=pb.Image(raw=raw))))
        text = pb.Image(encoded=b"hello world")
        out[415] = await status_of(stub.Estimate(pb.EstimateRequest(image=text)))
        bad = pb.EstimateRequest(image=image, score_threshold=3)
        out[422] = await status_of(stub.Estimate(bad))
        pipeline.fail = "error"
        out[502] = await status_of(stub.Estimate(pb.EstimateRequest(image=image)))
        pipeline.fail = "unavailable"
        out[503] = await status_of(stub.Estimate(pb.EstimateRequest(image=image)))
        return out

    out = grpc_calls(services, calls)
    assert len(out["ok"].persons) == 1 and len(out["ok"].persons[0].keypoints) == 17
    assert out[400][::2] == (S.INVALID_ARGUMENT, "invalid_image")
    assert out[404][::2] == (S.NOT_FOUND, "unknown_model") and "'x'" in out[404][1]
    assert out[413][::2] == (S.RESOURCE_EXHAUSTED, "payload_too_large")
    assert out[415][::2] == (S.INVALID_ARGUMENT, "unsupported_media_type")
    assert out[422][::2] == (S.INVALID_ARGUMENT, "invalid_parameter")
    assert "score_threshold" in out[422][1]
    assert out[502][::2] == (S.INTERNAL, "inference_failed") and "bad input" in out[502][1]
    assert out[503][::2] == (S.UNAVAILABLE, "service_unavailable")


def test_grpc_stream_a_refused_frame_fails_alone_a_lost_triton_ends_the_stream(services, pipeline):
    frame = pb.StreamRequest(frame=pb.Frame(image=pb.Image(encoded=jpeg())))

    async def results(stub, n):
        return [r async for r in stub.Stream(iter([frame] * n))]

    async def calls(stub):
        ok = await results(stub, 3)
        pipeline.fail = "error"
        refused = await results(stub, 2)
        pipeline.fail = "unavailable"
        gone = await status_of(results(stub, 2))
        pipeline.fail = None
        late_config = iter([frame, pb.StreamRequest(config=pb.StreamConfig())])
        order = await status_of(_drain(stub.Stream(late_config)))
        return ok, refused, gone, order

    ok, refused, gone, order = grpc_calls(services, calls)
    assert [r.frame_index for r in ok] == [0, 1, 2] and all(len(r.persons) == 1 for r in ok)
    assert [r.error.code for r in refused] == ["inference_failed"] * 2
    assert gone[0] == grpc.StatusCode.UNAVAILABLE and gone[2] == "service_unavailable"
    assert order[0] == grpc.StatusCode.INVALID_ARGUMENT and "first message" in order[1]


async def _drain(call):
    async for _ in call:
        pass
