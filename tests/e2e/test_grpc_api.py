"""gRPC ``Estimate``, health and reflection against the real ``rtmserve serve``."""

from __future__ import annotations

import cv2
import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from rtmserve.client.grpc import channel, raw_image
from service.app.schemas import PoseResponse
from service.grpc.gen import pose_pb2 as pb
from service.grpc.gen import pose_pb2_grpc as pb_grpc
from service.grpc.messages import to_model
from service.grpc.status import ERROR_CODE_KEY

PHOTO = "000000196141.jpg"  # four people


@pytest.fixture(scope="module")
def grpc_channel(service):
    with channel(f"127.0.0.1:{service.grpc_port}") as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(grpc_channel):
    return pb_grpc.PoseServiceStub(grpc_channel)


@pytest.fixture(scope="module")
def photo(coco_images) -> bytes:
    return next(p for p in coco_images if p.name == PHOTO).read_bytes()


def estimate(stub, **fields) -> PoseResponse:
    return to_model(stub.Estimate(pb.EstimateRequest(**fields), timeout=120), PoseResponse)


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=120, **kwargs)
    return info.value


def error_code(error: grpc.RpcError) -> str | None:
    return dict(error.trailing_metadata() or ()).get(ERROR_CODE_KEY)


def test_estimate_answers_what_post_v1_pose_answers(service, stub, photo):
    http = httpx.post(f"{service.http}/v1/pose", content=photo, timeout=120).json()
    got = estimate(stub, image=pb.Image(encoded=photo))
    assert got.image.model_dump() == http["image"]
    assert http["image"] == {"width": 640, "height": 429, "format": "jpeg"}
    assert len(got.persons) >= 3
    assert [p.model_dump() for p in got.persons] == http["persons"]
    assert got.models.model_dump() == http["models"]
    assert got.warnings == http["warnings"] and "UNTRAINED" in got.warnings[0]
    assert set(got.timings.stages_ms) == {"preprocess", "detector", "pose", "postprocess"}
    assert 0 < got.timings.inference_ms < got.timings.total_ms


def test_estimate_options_and_raw_pixels(stub, photo):
    bgr = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    png = estimate(stub, image=pb.Image(encoded=cv2.imencode(".png", bgr)[1].tobytes()))
    as_bgr = estimate(stub, image=raw_image(bgr))
    rgb = raw_image(np.ascontiguousarray(bgr[..., ::-1]))
    rgb.raw.format = pb.PIXEL_FORMAT_RGB
    as_rgb = estimate(stub, image=rgb)
    assert as_bgr.persons == png.persons == as_rgb.persons
    assert (as_bgr.image.format, as_rgb.image.format) == ("bgr", "rgb")
    one = estimate(stub, image=pb.Image(encoded=photo), max_persons=1, keypoints=False)
    assert len(one.persons) == 1 and one.persons[0].keypoints == [] and one.models.pose is None


def test_estimate_errors_map_to_grpc_status_codes(stub, photo):
    junk = rpc_error(stub.Estimate, pb.EstimateRequest(image=pb.Image(encoded=b"hello")))
    assert junk.code() == grpc.StatusCode.INVALID_ARGUMENT and "JPEG" in junk.details()
    assert error_code(junk) == "unsupported_media_type"
    corrupt = rpc_error(
        stub.Estimate, pb.EstimateRequest(image=pb.Image(encoded=b"\xff\xd8\xff" + b"\0" * 64))
    )
    assert corrupt.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(corrupt) == "invalid_image"
    empty = rpc_error(stub.Estimate, pb.EstimateRequest())
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT and "no image" in empty.details()
    bad_raw = pb.Image(raw=pb.RawImage(pixels=b"\0" * 10, width=4, height=4))
    shape = rpc_error(stub.Estimate, pb.EstimateRequest(image=bad_raw))
    assert shape.code() == grpc.StatusCode.INVALID_ARGUMENT and "48 bytes" in shape.details()
    unknown = rpc_error(
        stub.Estimate, pb.EstimateRequest(image=pb.Image(encoded=photo), pose_model="nope")
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND and "rtmpose-m" in unknown.details()
    param = rpc_error(
        stub.Estimate, pb.EstimateRequest(image=pb.Image(encoded=photo), score_threshold=2)
    )
    assert param.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "score_threshold" in param.details() and error_code(param) == "invalid_parameter"
    huge = cv2.imencode(".png", np.zeros((6000, 6000, 3), np.uint8))[1].tobytes()
    pixels = rpc_error(stub.Estimate, pb.EstimateRequest(image=pb.Image(encoded=huge)))
    assert pixels.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "6000x6000" in pixels.details()
    big = pb.EstimateRequest(image=pb.Image(encoded=b"\xff\xd8\xff" + bytes(9 << 20)))
    message = rpc_error(stub.Estimate, big)  # over the 8 MiB upload limit the fixture sets
    assert message.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert estimate(stub, image=pb.Image(encoded=photo)).persons  # and the service is fine


def test_health_is_serving_when_triton_and_the_models_are_ready(grpc_channel):
    health = health_pb2_grpc.HealthStub(grpc_channel)
    for name in ("", "rtmserve.v1.PoseService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    unknown = rpc_error(health.Check, health_pb2.HealthCheckRequest(service="nope"))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_describes_the_service(grpc_channel):
    database = ProtoReflectionDescriptorDatabase(grpc_channel)
    assert {"rtmserve.v1.PoseService", "grpc.health.v1.Health"} <= set(database.get_services())
    service = descriptor_pool.DescriptorPool(database).FindServiceByName("rtmserve.v1.PoseService")
    assert [m.name for m in service.methods] == ["Estimate", "Stream"]
    assert service.FindMethodByName("Stream").input_type.full_name == "rtmserve.v1.StreamRequest"
