"""POST /v1/pose and friends against a real ``rtmserve serve`` (embedded Triton, real models)."""

from __future__ import annotations

import io

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from service.core.keypoints import COCO_KEYPOINTS

PHOTO = "000000196141.jpg"  # four people


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service.http, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def photo(coco_images) -> bytes:
    return next(p for p in coco_images if p.name == PHOTO).read_bytes()


def encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def test_multipart_upload_returns_every_person_with_17_named_keypoints(client, photo):
    r = client.post("/v1/pose", files={"file": (PHOTO, photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"width": 640, "height": 429, "format": "jpeg"}
    assert len(body["persons"]) >= 3
    for person in body["persons"]:
        x1, y1, x2, y2 = person["bbox"]
        assert 0 <= x1 < x2 <= 639 and 0 <= y1 < y2 <= 428 and person["score"] > 0.3
        assert [k["name"] for k in person["keypoints"]] == list(COCO_KEYPOINTS)
    scores = [p["score"] for p in body["persons"]]
    assert scores == sorted(scores, reverse=True)
    assert body["models"]["detector"] == {
        "name": "rtmdet-nano",
        "version": 1,
        "trained": True,
        "warning": None,
        "role": "live",
    }
    t = body["timings"]
    assert 0 < t["decode_ms"] < t["total_ms"] and 0 < t["inference_ms"] < t["total_ms"]
    assert set(t["stages_ms"]) == {"preprocess", "detector", "pose", "postprocess"}


def test_raw_body_gives_the_same_answer_as_multipart(client, photo):
    a = client.post("/v1/pose", files={"file": (PHOTO, photo, "image/jpeg")}).json()
    b = client.post("/v1/pose", content=photo, headers={"content-type": "image/jpeg"}).json()
    assert a["persons"] == b["persons"]


@pytest.mark.parametrize("ext,fmt", [(".png", "png"), (".bmp", "bmp"), (".webp", "webp")])
def test_lossless_formats_give_the_same_persons_as_the_decoded_jpeg(client, photo, ext, fmt):
    pixels = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    data = encode(pixels, ext) if ext != ".webp" else _lossless_webp(pixels)
    r = client.post("/v1/pose", content=data)
    assert r.status_code == 200, r.text
    assert r.json()["image"]["format"] == fmt
    reference = client.post("/v1/pose", content=encode(pixels, ".png")).json()
    assert r.json()["persons"] == reference["persons"]


def _lossless_webp(bgr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(bgr[..., ::-1]).save(buf, "WEBP", lossless=True)
    return buf.getvalue()


def test_query_options_threshold_max_persons_and_model(client, photo):
    all_ = client.post("/v1/pose", content=photo, params={"score_threshold": 0.05}).json()
    strict = client.post("/v1/pose", content=photo, params={"score_threshold": 0.8}).json()
    one = client.post("/v1/pose", content=photo, params={"max_persons": 1}).json()
    assert len(all_["persons"]) > len(strict["persons"]) >= 1
    assert all(p["score"] > 0.8 for p in strict["persons"])
    assert len(one["persons"]) == 1 and one["persons"][0] == all_["persons"][0]
    named = client.post("/v1/pose", content=photo, params={"pose_model": "rtmpose-m"})
    assert named.status_code == 200


def test_untrained_pose_model_is_labelled_in_models_and_every_response(client, photo):
    body = client.post("/v1/pose", content=photo).json()
    pose = body["models"]["pose"]
    assert pose["name"] == "rtmpose-m" and pose["trained"] is False
    assert "UNTRAINED" in pose["warning"] and pose["warning"] in body["warnings"]
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    version = models["rtmpose-m"]["versions"][0]
    assert version["trained"] is False and version["ready"] and version["serving"]
    assert "seeded random weights" in version["meta"]["source"]
    assert models["rtmdet-nano"]["versions"][0]["trained"] is True


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code
    return body["message"]


def test_not_an_image_is_415(client):
    message = _error(client.post("/v1/pose", content=b"hello world"), 415, "unsupported_media_type")
    assert "JPEG" in message
    gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
    _error(
        client.post("/v1/pose", files={"file": ("a.gif", gif, "image/gif")}),
        415,
        "unsupported_media_type",
    )


def test_empty_or_corrupt_image_is_400(client, photo):
    _error(client.post("/v1/pose", content=b""), 400, "invalid_image")
    _error(
        client.post("/v1/pose", content=b"\xff\xd8\xff\xe0" + b"\x00" * 64), 400, "invalid_image"
    )
    _error(
        client.post("/v1/pose", content=b"\x89PNG\r\n\x1a\n" + photo[8:200]), 400, "invalid_image"
    )
    message = _error(
        client.post("/v1/pose", files={"other": ("x.txt", b"", "text/plain")}, data={"a": "b"}),
        400,
        "invalid_image",
    )
    assert "empty" in message or "no file" in message


def test_over_the_byte_or_pixel_limit_is_413(client):
    big = np.random.default_rng(0).integers(0, 255, (2200, 2200, 3), dtype=np.uint8)
    data = encode(big, ".bmp")  # ~14.5 MB > the 8 MB limit the fixture sets
    message = _error(client.post("/v1/pose", content=data), 413, "payload_too_large")
    assert "limit" in message
    huge = encode(np.zeros((6000, 6000, 3), np.uint8), ".png")  # small file, 36 Mpx > 25 Mpx
    assert len(huge) < 1 << 20
    message = _error(client.post("/v1/pose", content=huge), 413, "payload_too_large")
    assert "6000x6000" in message


def test_bad_parameters_and_unknown_models_are_clear_4xx(client, photo):
    message = _error(
        client.post("/v1/pose", content=photo, params={"score_threshold": 2}),
        422,
        "invalid_parameter",
    )
    assert "score_threshold" in message
    message = _error(
        client.post("/v1/pose", content=photo, params={"pose_model": "nope"}), 404, "unknown_model"
    )
    assert "nope" in message and "rtmpose-m" in message
    _error(
        client.post("/v1/pose", content=photo, params={"pose_model": "rtmdet-nano"}),
        404,
        "unknown_model",
    )


def test_health_readiness_models_and_openapi(client):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["triton"] and all(ready["models"].values())
    listing = client.get("/v1/models").json()
    assert listing["default_pose_model"] == "rtmpose-m"
    assert {m["name"] for m in listing["models"]} >= {"rtmdet-nano", "rtmpose-m"}
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/pose"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/jpeg" in body
    assert client.get("/docs").status_code == 200


def test_bad_requests_do_not_disturb_the_service(client, photo):
    good = client.post("/v1/pose", content=photo).json()["persons"]
    for bad in (b"", b"junk", b"\xff\xd8\xff" + b"\x01" * 10):
        assert client.post("/v1/pose", content=bad).status_code in (400, 415)
    assert client.post("/v1/pose", content=photo).json()["persons"] == good
