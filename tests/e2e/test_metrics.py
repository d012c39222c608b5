"""The gateway's GET /metrics against the real service: what each request, error and stream
adds, read back as exact differences of the gateway's own counters."""

from __future__ import annotations

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtmserve.client.grpc import channel
from rtmserve.launch import wait_until
from service.app.errors import ApiError
from service.grpc.gen import pose_pb2 as pb
from service.grpc.gen import pose_pb2_grpc as pb_grpc
from service.metrics.families import ERROR_CODES, STAGES

PHOTO = "000000196141.jpg"  # four people


def samples(service) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(f"{service.http}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture(scope="module")
def photo(coco_images) -> bytes:
    return next(p for p in coco_images if p.name == PHOTO).read_bytes()


def test_every_error_code_the_api_can_answer_is_a_known_label():
    """ERROR_CODES is what the counters are created with: a new code must be added there."""

    def subclasses(cls: type) -> list[type]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    codes = {cls.code for cls in subclasses(ApiError)}
    assert {"invalid_image", "inference_failed", "overloaded", "rate_limited"} <= codes
    assert codes <= set(ERROR_CODES)


def test_one_image_adds_one_request_every_stage_and_its_persons(service, photo):
    before = samples(service)
    r = httpx.post(f"{service.http}/v1/pose", content=photo, timeout=120)
    assert r.status_code == 200, r.text
    after = samples(service)
    pose = {"method": "POST", "route": "/v1/pose", "status": "200"}
    assert delta(before, after, "rtmserve_http_requests_total", **pose) == 1
    assert delta(before, after, "rtmserve_http_request_duration_seconds_count", **pose) == 1
    for stage in STAGES:
        count = "rtmserve_stage_duration_seconds_count"
        assert delta(before, after, count, flow="image", stage=stage) == 1, stage
    persons = len(r.json()["persons"])
    assert delta(before, after, "rtmserve_persons_per_image_sum", flow="image") == persons
    # The Triton stages recorded are the ones the response reports (ms -> s).
    triton = sum(r.json()["timings"]["stages_ms"].values()) / 1e3
    stage_sum = sum(
        delta(before, after, "rtmserve_stage_duration_seconds_sum", flow="image", stage=s)
        for s in ("preprocess", "detector", "pose", "postprocess")
    )
    assert stage_sum == pytest.approx(triton, abs=1e-5)


def test_errors_are_counted_by_code_and_routes_by_template(service, photo):
    before = samples(service)
    with httpx.Client(base_url=service.http, timeout=60) as http:
        assert http.post("/v1/pose", content=b"junk").status_code == 415
        assert http.post("/v1/pose", content=photo, params={"max_persons": 0}).status_code == 422
        assert http.post("/v1/pose", content=photo, params={"detector": "nope"}).status_code == 404
        assert http.get("/v1/no-such-route/123").status_code == 404
    with channel(f"127.0.0.1:{service.grpc_port}") as ch:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.PoseServiceStub(ch).Estimate(
                pb.EstimateRequest(image=pb.Image(encoded=b"junk")), timeout=60
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = samples(service)
    errors = "rtmserve_errors_total"
    assert delta(before, after, errors, api="http", code="unsupported_media_type") == 1
    assert delta(before, after, errors, api="http", code="invalid_parameter") == 1
    assert delta(before, after, errors, api="http", code="unknown_model") == 1
    assert delta(before, after, errors, api="grpc", code="unsupported_media_type") == 1
    requests = "rtmserve_http_requests_total"
    for status in ("415", "422", "404"):
        assert delta(before, after, requests, method="POST", route="/v1/pose", status=status) == 1
    assert delta(before, after, requests, method="GET", route="unmatched", status="404") == 1
    grpc_calls = "rtmserve_grpc_requests_total"
    estimate = "/rtmserve.v1.PoseService/Estimate"
    assert delta(before, after, grpc_calls, method=estimate, code="INVALID_ARGUMENT") == 1
    labels = {v for (_, ls) in after for _, v in ls}
    assert not any("no-such-route" in v for v in labels)  # no label value per URL


def test_a_stream_is_open_while_it_runs_and_counts_its_frames_and_frame_errors(service, photo):
    before = samples(service)
    frames = [pb.Image(encoded=photo), pb.Image(encoded=photo), pb.Image(encoded=b"junk")]
    with channel(f"127.0.0.1:{service.grpc_port}") as ch:
        requests = (pb.StreamRequest(frame=pb.Frame(image=image)) for image in frames)
        results = list(pb_grpc.PoseServiceStub(ch).Stream(requests, timeout=120))
    assert [r.HasField("error") for r in results] == [False, False, True]

    def closed() -> bool:  # the server finishes its bookkeeping after the last message
        now = samples(service)
        return (
            now[("rtmserve_streams_open", frozenset({("api", "grpc")}))]
            == before[("rtmserve_streams_open", frozenset({("api", "grpc")}))]
        )

    wait_until(closed, 30, "the stream to close on the server")
    after = samples(service)
    assert delta(before, after, "rtmserve_streams_total", api="grpc") == 1
    frames_total = sum(
        delta(before, after, "rtmserve_stream_frames_total", api="grpc", detected=d)
        for d in ("true", "false")
    )
    assert frames_total == 3
    code = results[2].error.code
    assert delta(before, after, "rtmserve_errors_total", api="grpc", code=code) == 1
    count = "rtmserve_persons_per_image_count"
    assert delta(before, after, count, flow="video") == 2  # the failed frame has no persons
    stream = "/rtmserve.v1.PoseService/Stream"
    assert delta(before, after, "rtmserve_grpc_requests_total", method=stream, code="OK") == 1
