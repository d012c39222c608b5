"""``POST /v1/pose/video`` with real video files (written here with PyAV) against the service."""

from __future__ import annotations

import io
import json
from fractions import Fraction

import av
import httpx
import numpy as np
import pytest

from rtmserve.launch import wait_until
from tests.support.streaming import CLIP, clip_images, runtime, wait_released, write_video

URL = "/v1/pose/video"


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service.http, timeout=300) as c:
        yield c


def gray(n: int, size=(48, 64)) -> list[np.ndarray]:
    return [np.full((*size, 3), 40 + i % 100, np.uint8) for i in range(n)]


def lines(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line]


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    return response.json()["error"]["message"]


@pytest.mark.parametrize(
    "fmt,codec", [("mp4", "libx264"), ("matroska", "mpeg4"), ("webm", "libvpx"), ("avi", "mpeg4")]
)
def test_every_container_streams_one_line_per_frame(client, fmt, codec):
    data = write_video(gray(6), fmt, codec)
    r = client.post(URL, content=data, params={"det_interval": 3})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-ndjson"
    results = lines(r)
    assert [x["frame_index"] for x in results] == list(range(6))
    assert [x["detected"] for x in results] == [True, False, False, True, False, False]
    assert [x["timestamp"] for x in results] == pytest.approx([i / 28 for i in range(6)], abs=2e-3)
    assert results[0]["image"] == {"width": 64, "height": 48, "format": stream_codec(data)}
    assert all(x["persons"] == [] and x["error"] is None for x in results)


def stream_codec(data: bytes) -> str:
    with av.open(io.BytesIO(data)) as container:
        return container.streams.video[0].codec_context.name


def test_multipart_upload_and_people_on_real_frames(client):
    data = write_video(clip_images(8), "mp4", "libx264")
    upload = {"file": ("clip.mp4", data, "video/mp4")}
    r = client.post(URL, files=upload, params={"det_interval": 4})
    assert r.status_code == 200, r.text
    results = lines(r)
    assert len(results) == 8 and all(x["persons"] for x in results)
    first = results[0]["persons"][0]
    assert {"track_id", "bbox", "score", "keypoints", "detected"} <= set(first)
    assert len(first["keypoints"]) == 17 and first["detected"] is True
    assert results[0]["models"]["pose"]["trained"] is False and results[0]["warnings"]


def test_refusals_are_clear_json_errors(client, coco_images):
    message = error(client.post(URL, content=b"hello world"), 415, "unsupported_media_type")
    assert "MP4" in message
    photo = coco_images[0].read_bytes()
    error(client.post(URL, content=photo), 415, "unsupported_media_type")
    error(client.post(URL, content=b""), 400, "invalid_video")
    message = error(client.post(URL, content=CLIP.read_bytes()[:5000]), 400, "invalid_video")
    assert "corrupt" in message
    big = b"\x00\x00\x00\x18ftypisom" + bytes(5 << 20)  # over the fixture's 4 MiB
    assert "limit" in error(client.post(URL, content=big), 413, "payload_too_large")
    many = write_video(gray(301), "mp4", "mpeg4", rate=30)  # over the fixture's 300 frames
    assert "301 frames" in error(client.post(URL, content=many), 413, "payload_too_large")
    slow = write_video(gray(3), "mp4", "mpeg4", rate=Fraction(1, 40))  # 120 s > 60 s
    assert "120.0 s" in error(client.post(URL, content=slow), 413, "payload_too_large")
    clip = CLIP.read_bytes()
    message = error(
        client.post(URL, content=clip, params={"det_interval": 0, "bogus": 1}),
        422,
        "invalid_parameter",
    )
    assert "det_interval" in message and "bogus" in message
    unknown = client.post(URL, content=clip, params={"pose_model": "nope"})
    assert "nope" in error(unknown, 404, "unknown_model")


def test_undeclared_length_is_counted_and_refused_before_the_stream_starts(client):
    """WebM declares no frame count: the gateway counts the packets (no decoding) and refuses
    before any work, rather than streaming 300 frames and cutting the rest."""
    data = write_video(gray(301), "webm", "libvpx", rate=30)
    message = error(
        client.post(URL, content=data, params={"det_interval": 100}), 413, "payload_too_large"
    )
    assert message == "the video has 301 frames; the limit is 300"


def test_corrupt_frames_inside_a_video_get_error_lines_and_the_stream_goes_on(client):
    data = bytearray(write_video(clip_images(30), "mp4", "libx264", bf="0"))
    middle = len(data) // 2
    for i in range(middle, middle + 3000, 5):
        data[i] ^= 0x5A
    r = client.post(URL, content=bytes(data), params={"det_interval": 5, "pose_kpt_thr": 0.3})
    assert r.status_code == 200
    results = lines(r)
    assert [x["frame_index"] for x in results] == list(range(30))  # one packet, one line
    failed = [x["frame_index"] for x in results if x["error"]]
    assert failed and min(failed) > 0 and max(failed) < 29
    for x in results:
        if x["error"]:
            assert x["error"]["code"] == "invalid_video" and x["persons"] == []
    assert results[-1]["error"] is None and results[-1]["persons"]  # and it went on


def test_a_client_that_leaves_mid_stream_releases_everything(service, client):
    def idle() -> bool:
        return runtime(service)["streams"] == 0

    wait_until(idle, 60, "earlier streams to end")
    baseline = runtime(service)
    with client.stream("POST", URL, content=CLIP.read_bytes()) as r:
        assert r.status_code == 200
        got = []
        for line in r.iter_lines():
            got.append(json.loads(line))
            if len(got) == 3:
                assert runtime(service)["streams"] == 1
                break  # leaving the loop closes the response: the connection drops

    wait_released(service, baseline, "the upload")
    assert [x["frame_index"] for x in got] == [0, 1, 2]
