"""A corpus of hostile and unusual inputs against the real service: each gets the right 4xx (or
gRPC status) with a JSON body naming the problem, or a correct result, and the service stays
healthy throughout."""

from __future__ import annotations

import io
import socket
import struct
import time
import zlib

import cv2
import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from rtmserve.client.grpc import channel
from service.grpc.gen import pose_pb2 as pb
from service.grpc.gen import pose_pb2_grpc as pb_grpc
from tests.conftest import IDLE_TIMEOUT_S

PHOTO = "000000196141.jpg"  # four people, 640x429


@pytest.fixture(scope="module")
def http(service):
    with httpx.Client(base_url=service.http, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def photo(coco_images) -> bytes:
    return next(p for p in coco_images if p.name == PHOTO).read_bytes()


def pil(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def save(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + (png_chunk(b"IEND", b""))
    )


def with_orientation(photo: bytes, orientation: int) -> bytes:
    """The photo's pixels turned so that EXIF ``orientation`` turns them back upright."""
    undo = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(pil(photo).transpose(undo), "JPEG", quality=98, exif=exif)


def boxes(body: dict) -> np.ndarray:
    return np.array([p["bbox"] for p in body["persons"]]).reshape(-1, 4)


def refused(http, status: int, code: str, **request) -> str:
    r = http.post(request.pop("path", "/v1/pose"), **request)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == code and error["message"]
    return error["message"]


def corpus(photo: bytes) -> list[tuple[str, dict, int, str]]:
    """(what, request, status, error code); status 200 means a correct answer is expected."""
    image = pil(photo)
    png = save(image, "PNG")
    bmp = save(image, "BMP")
    webp = save(image, "WEBP", quality=90)
    # 1 KiB of the entropy-coded data replaced by bytes holding markers that cannot be there
    middle = len(photo) // 2
    flipped = photo[:middle] + bytes(range(256)) * 4 + photo[middle + 1024 :]
    bad_crc = png[:-8] + b"\0\0\0\0" + png[-4:]  # a chunk whose checksum is wrong
    idat_at = png.index(b"IDAT")
    bad_idat = png[: idat_at + 40] + bytes(200) + png[idat_at + 240 :]
    big = np.random.default_rng(0).integers(0, 255, (2200, 2200, 3), np.uint8)
    too_big = cv2.imencode(".bmp", big)[1].tobytes()  # ~14.5 MB > the fixture's 8 MB
    raw = {"content": None}
    cases = [
        ("truncated JPEG", {"content": photo[: len(photo) // 2]}, 400, "invalid_image"),
        ("JPEG cut before its last marker", {"content": photo[:-2]}, 400, "invalid_image"),
        ("JPEG corrupt in the middle", {"content": flipped}, 400, "invalid_image"),
        ("truncated PNG", {"content": png[: len(png) // 2]}, 400, "invalid_image"),
        ("PNG with a bad chunk checksum", {"content": bad_crc}, 400, "invalid_image"),
        ("PNG with corrupt pixel data", {"content": bad_idat}, 400, "invalid_image"),
        ("truncated BMP", {"content": bmp[: len(bmp) // 2]}, 400, "invalid_image"),
        ("truncated WebP", {"content": webp[: len(webp) // 2]}, 400, "invalid_image"),
        (
            "PNG bomb: 100000x100000 declared",
            {"content": png_bomb(100_000, 100_000)},
            413,
            "payload_too_large",
        ),
        (
            "PNG bomb: 6000x6000 declared",
            {"content": png_bomb(6000, 6000)},
            413,
            "payload_too_large",
        ),
        ("zero bytes", {"content": b""}, 400, "invalid_image"),
        (
            "random bytes",
            {"content": np.random.default_rng(1).bytes(4096)},
            415,
            "unsupported_media_type",
        ),
        ("plain text", {"content": b"hello, pose"}, 415, "unsupported_media_type"),
        (
            "HTML",
            {"content": b"<!doctype html><html><body>hi</body></html>"},
            415,
            "unsupported_media_type",
        ),
        (
            "JSON",
            {"content": b'{"image": "base64..."}', "headers": {"content-type": "application/json"}},
            415,
            "unsupported_media_type",
        ),
        ("GIF", {"content": save(image, "GIF")}, 415, "unsupported_media_type"),
        ("TIFF", {"content": save(image, "TIFF")}, 415, "unsupported_media_type"),
        (
            "GIF/JavaScript polyglot",
            {"content": b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=1;"},
            415,
            "unsupported_media_type",
        ),
        (
            "JPEG magic then nothing",
            {"content": b"\xff\xd8\xff\xe0" + bytes(64)},
            400,
            "invalid_image",
        ),
        ("over the byte limit", {"content": too_big}, 413, "payload_too_large"),
        (
            "multipart over the byte limit",
            {"files": {"file": ("a.bmp", too_big)}},
            413,
            "payload_too_large",
        ),
        (
            "multipart without a file",
            {"data": {"a": "b"}, "files": {"x": ("x.txt", b"")}},
            400,
            "invalid_image",
        ),
        (
            "multipart with a broken boundary",
            {
                "content": b"--nope\r\n\r\n",
                "headers": {"content-type": "multipart/form-data; boundary=other"},
            },
            400,
            "invalid_image",
        ),
        (
            "score_threshold=-1",
            {"content": photo, "params": {"score_threshold": -1}},
            422,
            "invalid_parameter",
        ),
        (
            "max_persons=abc",
            {"content": photo, "params": {"max_persons": "abc"}},
            422,
            "invalid_parameter",
        ),
        (
            "keypoints=maybe",
            {"content": photo, "params": {"keypoints": "maybe"}},
            422,
            "invalid_parameter",
        ),
        (
            "an unknown pose model",
            {"content": photo, "params": {"pose_model": "x"}},
            404,
            "unknown_model",
        ),
        (
            "a detector as the pose model",
            {"content": photo, "params": {"pose_model": "rtmdet-nano"}},
            404,
            "unknown_model",
        ),
        (
            "text as a video",
            {"path": "/v1/pose/video", "content": b"not a video"},
            415,
            "unsupported_media_type",
        ),
        (
            "a photo as a video",
            {"path": "/v1/pose/video", "content": photo},
            415,
            "unsupported_media_type",
        ),
        (
            "an MP4 header and garbage",
            {"path": "/v1/pose/video", "content": b"\x00\x00\x00\x18ftypmp42" + bytes(500)},
            400,
            "invalid_video",
        ),
    ]
    del raw
    return cases


def test_every_hostile_input_gets_its_4xx_and_the_service_stays_healthy(http, photo, capsys):
    cases = corpus(photo)
    assert len(cases) >= 30
    for what, request, status, code in cases:
        try:
            refused(http, status, code, **request)
        except AssertionError as exc:
            raise AssertionError(f"{what}: {exc}") from None
        assert http.get("/healthz").status_code == 200, what
    assert http.get("/readyz").status_code == 200
    assert http.post("/v1/pose", content=photo).status_code == 200
    with capsys.disabled():
        print(f"\n{len(cases)} hostile inputs refused with the right status and code")


def test_unusual_but_valid_images_get_correct_answers(http, photo):
    upright = http.post("/v1/pose", content=photo).json()
    image = pil(photo)
    rgb = np.asarray(image)
    gray = np.asarray(image.convert("L"))
    same_pixels = {
        "PNG": save(image, "PNG"),
        "RGBA PNG, opaque": save(image.convert("RGBA"), "PNG"),
        "16-bit PNG": cv2.imencode(".png", (rgb[..., ::-1].astype(np.uint16) * 257))[1].tobytes(),
        "BMP": save(image, "BMP"),
        "lossless WebP": save(image, "WEBP", lossless=True),
        "JPEG with trailing bytes (a JPEG/zip polyglot)": photo + b"PK\x03\x04" + bytes(100),
        "PNG sent as image/jpeg": save(image, "PNG"),
    }
    lossy = {
        "progressive JPEG": save(image, "JPEG", quality=95, progressive=True),
        "CMYK JPEG": save(image.convert("CMYK"), "JPEG", quality=95),
        "EXIF orientation 3": with_orientation(photo, 3),
        "EXIF orientation 6": with_orientation(photo, 6),
        "EXIF orientation 8": with_orientation(photo, 8),
    }
    for what, data in same_pixels.items():
        headers = {"content-type": "image/jpeg"} if "as image/jpeg" in what else {}
        r = http.post("/v1/pose", content=data, headers=headers)
        assert r.status_code == 200, (what, r.text)
        body = r.json()
        assert body["image"]["width"] == 640 and body["image"]["height"] == 429, what
        np.testing.assert_allclose(boxes(body), boxes(upright), atol=0.01, err_msg=what)
    for what, data in lossy.items():  # re-encoded: same persons, boxes within a few pixels
        body = http.post("/v1/pose", content=data).json()
        assert (body["image"]["width"], body["image"]["height"]) == (640, 429), what
        found = boxes(body)
        assert len(found) >= 3, what
        for box in boxes(upright)[:3]:  # the three clearest people
            assert np.abs(found - box).max(axis=1).min() < 8, (what, box, found)
    odd = {
        "grayscale": gray,
        "1x1": rgb[:1, :1],
        "1x2000": np.zeros((1, 2000, 3), np.uint8),
        "2000x1": np.zeros((2000, 1, 3), np.uint8),
    }
    for what, pixels in odd.items():
        data = cv2.imencode(".png", pixels)[1].tobytes()
        r = http.post("/v1/pose", content=data)
        assert r.status_code == 200, (what, r.text)
        assert r.json()["image"]["width"] == pixels.shape[1], what


def test_grpc_refuses_an_oversized_message_and_a_raw_image_that_lies(service):
    with channel(f"127.0.0.1:{service.grpc_port}") as ch:
        stub = pb_grpc.PoseServiceStub(ch)
        huge = pb.Image(encoded=b"\xff\xd8\xff" + bytes(9 << 20))  # > 8 MB + envelope
        with pytest.raises(grpc.RpcError) as err:
            stub.Estimate(pb.EstimateRequest(image=huge), timeout=60)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        lie = pb.RawImage(pixels=bytes(30), width=10, height=10, format=pb.PIXEL_FORMAT_BGR)
        with pytest.raises(grpc.RpcError) as err:
            stub.Estimate(pb.EstimateRequest(image=pb.Image(raw=lie)), timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "300 bytes" in err.value.details()
    assert httpx.get(f"{service.http}/readyz", timeout=10).status_code == 200


def test_a_slow_loris_upload_is_cut_off_with_408(service):
    """Headers and a little of the body, then nothing: the gateway answers 408 once the upload
    has been idle for its idle timeout, and closes the connection."""
    host, port = service.http.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(
            b"POST /v1/pose HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"\xff\xd8\xff" + bytes(997)
        )
        start = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        waited = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"request_timeout"' in answer
    assert IDLE_TIMEOUT_S <= waited < IDLE_TIMEOUT_S + 10


def test_a_silent_grpc_stream_ends_with_deadline_exceeded(service):
    def silent():
        yield pb.StreamRequest(config=pb.StreamConfig())
        time.sleep(IDLE_TIMEOUT_S + 3)  # a client that stopped sending without closing

    with channel(f"127.0.0.1:{service.grpc_port}") as ch:
        stub = pb_grpc.PoseServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Stream(silent(), timeout=60))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "stalled: nothing for" in err.value.details()
