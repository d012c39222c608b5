"""Drawn answers from the real service: ``POST /v1/pose/render``, ``/v1/pose/video?render=mp4``
and ``rtmserve render`` on photos and the arm-wrestling clip."""

from __future__ import annotations

import io
import json
import subprocess

import av
import cv2
import httpx
import numpy as np

from rtmserve.client.http import form_parts
from rtmserve.launch import RTMSERVE
from service.app.render import RenderQuery, draw
from service.app.schemas import FrameResult, PoseResponse
from service.core.image import decode
from tests.support.streaming import clip_images, write_video

PHOTO = 50  # index into the COCO subset: a photo with people


def test_render_returns_the_drawing_and_the_same_json_as_pose(service, coco_images):
    photo = coco_images[PHOTO].read_bytes()
    plain = httpx.post(f"{service.http}/v1/pose", content=photo, timeout=120).json()
    r = httpx.post(f"{service.http}/v1/pose/render", content=photo, timeout=120,
                   headers={"accept": "image/png"}, params={"style": "openpose"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    result = PoseResponse.model_validate_json(r.headers["x-pose-result"])
    assert int(r.headers["x-pose-persons"]) == len(result.persons)
    assert [p.model_dump() for p in result.persons] == plain["persons"] and result.persons
    got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    image = decode(photo)
    assert got.shape == image.shape
    # PNG is lossless: exactly the one renderer's drawing of these persons on these pixels
    assert np.array_equal(got, draw(image, result.persons, RenderQuery(style="openpose")))
    assert (got != image).any(axis=2).mean() > 0.001


def test_a_crowds_json_comes_in_the_multipart_answer_not_a_header(service, coco_images):
    """score_threshold 0 keeps every box the detector floor lets through: a JSON too long for
    a header (clients refuse lines over 64 KiB, proxies far less)."""
    photo = coco_images[PHOTO].read_bytes()
    params = {"score_threshold": 0.0, "max_persons": 100}
    plain = httpx.post(f"{service.http}/v1/pose", content=photo, params=params, timeout=120).json()
    assert len(json.dumps(plain)) > 16 * 1024
    r = httpx.post(f"{service.http}/v1/pose/render", content=photo, params=params, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "x-pose-result" not in r.headers
    assert int(r.headers["x-pose-persons"]) == len(plain["persons"])
    accept = {"accept": "multipart/form-data, image/png"}
    form = httpx.post(f"{service.http}/v1/pose/render", content=photo, params=params,
                      headers=accept, timeout=120)  # fmt: skip
    assert form.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = form_parts(form)
    assert json.loads(parts["result"])["persons"] == plain["persons"]
    assert parts["image"][:8] == b"\x89PNG\r\n\x1a\n"


def test_render_defaults_to_jpeg_and_refuses_bad_options(service, coco_images):
    photo = coco_images[PHOTO].read_bytes()
    r = httpx.post(f"{service.http}/v1/pose/render", content=photo, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content[:3] == b"\xff\xd8\xff"
    bad = httpx.post(f"{service.http}/v1/pose/render", content=photo, timeout=60,
                     params={"style": "picasso", "radius": -1})  # fmt: skip
    assert bad.status_code == 422
    message = bad.json()["error"]["message"]
    assert "style" in message and "radius" in message


def _clip(frames: int = 20) -> bytes:
    return write_video(clip_images(frames), "mp4", "libx264")


def test_video_render_mp4_has_every_frame_drawn(service):
    clip = _clip()
    lines = httpx.post(f"{service.http}/v1/pose/video", content=clip, timeout=300).text
    results = [FrameResult.model_validate_json(x) for x in lines.splitlines()]
    r = httpx.post(f"{service.http}/v1/pose/video", content=clip, timeout=300,
                   params={"render": "mp4", "black_background": "true"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(r.content)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == len(results) == 20
    for frame, result in zip(frames, results, strict=True):
        lit = frame.max(axis=2) > 60  # black background: only the drawing is bright
        if result.persons:
            assert lit.mean() > 0.002, result.frame_index
            x1, y1, x2, y2 = (round(v) for v in result.persons[0].bbox)
            assert lit[max(y1 - 2, 0) : y2 + 3, max(x1 - 2, 0) : x2 + 3].any()


def test_video_render_of_a_corrupt_video_draws_the_frames_that_decode(service):
    """Frames that do not decode are left out of the drawing; the rest are drawn and the
    answer is still a playable MP4 (the NDJSON answer of the same bytes says which failed)."""
    data = bytearray(write_video(clip_images(30), "mp4", "libx264", bf="0"))
    middle = len(data) // 2
    for i in range(middle, middle + 3000, 5):
        data[i] ^= 0x5A
    lines = httpx.post(f"{service.http}/v1/pose/video", content=bytes(data), timeout=300).text
    results = [FrameResult.model_validate_json(x) for x in lines.splitlines()]
    failed = [r.frame_index for r in results if r.error]
    assert len(results) == 30 and failed
    r = httpx.post(f"{service.http}/v1/pose/video", content=bytes(data), timeout=300,
                   params={"render": "mp4"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(r.content)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 30 - len(failed)


def test_cli_renders_a_photo_and_a_video(service, coco_images, tmp_path):
    out = tmp_path / "drawn.png"
    run = subprocess.run([RTMSERVE, "render", str(coco_images[PHOTO]), "-o", str(out), "--http",
                          service.http], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    drawn = cv2.imread(str(out))
    assert drawn.shape == decode(coco_images[PHOTO].read_bytes()).shape
    assert "persons drawn" in run.stdout

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(_clip(12))
    video = tmp_path / "drawn.mp4"
    run = subprocess.run([RTMSERVE, "render", str(clip), "-o", str(video), "--server",
                          f"127.0.0.1:{service.grpc_port}", "--style", "openpose"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 12
    # not a terminal: plain progress lines, the last one complete
    assert "render: 12/12 frames" in run.stderr.splitlines()[-1], run.stderr


def test_cli_render_reports_a_refused_option(service, coco_images, tmp_path):
    cmd = [RTMSERVE, "render", str(coco_images[PHOTO]), "-o", str(tmp_path / "x.jpg"),
           "--http", service.http, "--pose-model", "no-such-model"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("error: HTTP 404: unknown_model: ")
