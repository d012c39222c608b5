"""``/v1/pose/ws``: the browser's video stream, against the gRPC stream of the same frames, and
its backpressure (a client that sends faster than the service answers loses frames, never
queues them)."""

from __future__ import annotations

import contextlib
import json
import socket

import cv2
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from rtmserve.client.grpc import SourceFrame, frame_result, stream
from rtmserve.launch import wait_until
from service.app.schemas import FrameResult
from service.grpc.gen import pose_pb2 as pb
from service.http.ws import MAX_TEXT_BYTES, MESSAGE_BURST, MESSAGE_RATE
from tests.support.streaming import clip_images, runtime, wait_released

FRAMES = 24
FPS = 28.0


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return [cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            for im in clip_images(FRAMES)]  # fmt: skip


def ws_url(service, query: str = "") -> str:
    return service.http.replace("http://", "ws://") + f"/v1/pose/ws{query}"


def test_websocket_answers_what_the_grpc_stream_answers(service, jpegs):
    """Same frames, same timestamps, same config: the same tracked, smoothed people (one
    session implementation behind both)."""
    config = {"det_interval": 3}
    got = []
    with connect(ws_url(service), max_size=None) as ws:
        ws.send(json.dumps(config))
        for i, data in enumerate(jpegs):  # one in flight, as the page does
            ws.send(json.dumps({"timestamp": i / FPS}))
            ws.send(data)
            got.append(FrameResult.model_validate_json(ws.recv(timeout=120)))
    frames = [SourceFrame(pb.Image(encoded=d), i / FPS) for i, d in enumerate(jpegs)]
    want = [frame_result(m) for m in stream(f"127.0.0.1:{service.grpc_port}",
                                            pb.StreamConfig(**config), frames)]  # fmt: skip
    assert [r.frame_index for r in got] == list(range(FRAMES))
    assert [[p.model_dump() for p in r.persons] for r in got] == [
        [p.model_dump() for p in r.persons] for r in want
    ]
    assert any(r.persons for r in got)
    ids = [tuple(p.track_id for p in r.persons) for r in got if r.persons]
    first_half = {i for frame in ids[: len(ids) // 2] for i in frame}
    assert set(ids[-1]) <= first_half  # the people at the end kept the IDs they had


def test_a_client_that_floods_loses_frames_but_never_queues_them(service, jpegs):
    sent = jpegs * 4
    with connect(ws_url(service), max_size=None) as ws:
        ws.send("{}")
        for data in sent:  # as fast as the socket takes them, no waiting for results
            ws.send(data)
        results = []
        dropped = 0
        while True:
            result = FrameResult.model_validate_json(ws.recv(timeout=120))
            results.append(result)
            for w in result.warnings:
                if "frames dropped" in w:
                    dropped += int(w.split()[0])
            if len(results) + dropped == len(sent):
                break
    assert dropped > 0 and len(results) < len(sent)
    assert [r.frame_index for r in results] == list(range(len(results)))


def test_bad_config_and_bad_frames_are_reported(service, jpegs):
    with connect(ws_url(service)) as ws:
        ws.send(json.dumps({"det_interval": 0}))
        error = json.loads(ws.recv(timeout=30))
        assert error["error"]["code"] == "invalid_parameter" and "det_interval" in error[
            "error"]["message"]  # fmt: skip
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd.code == 1008
    with connect(ws_url(service)) as ws:
        ws.send("{}")
        ws.send(b"not an image at all")
        bad = FrameResult.model_validate_json(ws.recv(timeout=60))
        assert bad.error is not None and bad.error.code == "unsupported_media_type"
        ws.send(jpegs[0])  # the stream goes on
        assert FrameResult.model_validate_json(ws.recv(timeout=60)).error is None


def test_a_client_that_vanishes_mid_stream_releases_everything(service, jpegs):
    """The TCP connection dies under an open session (no close frame): the server ends the
    session, frees its stream slot and tasks, and the next client is served."""
    with connect(ws_url(service), max_size=None) as warm:  # the worker threads a session uses
        warm.send("{}")
        warm.send(jpegs[0])
        warm.recv(timeout=60)
    wait_until(lambda: runtime(service)["streams"] == 0, 60, "earlier streams to end")
    baseline = runtime(service)
    with connect(ws_url(service), max_size=None) as ws:
        ws.send("{}")
        for data in jpegs[:2]:
            ws.send(data)
            assert FrameResult.model_validate_json(ws.recv(timeout=60)).error is None
        assert runtime(service)["streams"] == 1
        ws.send(jpegs[2])  # a frame in flight when the client vanishes
        ws.socket.shutdown(socket.SHUT_RDWR)  # no close frame: the connection just dies
        ws.socket.close()
    wait_released(service, baseline, "the vanished WebSocket session")
    with connect(ws_url(service), max_size=None) as again:
        again.send("{}")
        again.send(jpegs[0])
        assert FrameResult.model_validate_json(again.recv(timeout=60)).error is None


def closed_with(ws, code: int) -> tuple[dict, str]:
    """Reads up to the close: the last error message and the close reason."""
    error = None
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            message = json.loads(ws.recv(timeout=60))
            if "timings" not in message:  # results may come first; the error is alone
                error = message
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    assert error is not None, "no error message before the close"
    return error["error"], closed.value.rcvd.reason


def test_oversized_messages_close_the_socket_with_1009(service, jpegs):
    for first in ("{}", None):  # the StreamConfig itself, or a later text message
        with connect(ws_url(service), max_size=None) as ws:
            if first:
                ws.send(first)
            ws.send(json.dumps({"timestamp": 1, "padding": "x" * MAX_TEXT_BYTES}))
            error, reason = closed_with(ws, 1009)
            assert error["code"] == "payload_too_large" and str(MAX_TEXT_BYTES) in reason
    with connect(ws_url(service), max_size=None) as ws:  # a frame over the upload limit
        ws.send("{}")
        ws.send(jpegs[0])
        ws.send(jpegs[0] + bytes(8 << 20))  # the session's RTMSERVE_MAX_UPLOAD_BYTES: 8 MiB
        error, reason = closed_with(ws, 1009)
        assert error["code"] == "payload_too_large" and "frames are limited" in reason


def test_a_flood_of_text_messages_closes_the_socket_with_1008(service, jpegs):
    with connect(ws_url(service), max_size=None) as ws:
        ws.send("{}")
        with contextlib.suppress(ConnectionClosed):  # it may close while we still send
            for i in range(10 * MESSAGE_BURST):
                ws.send(json.dumps({"timestamp": i}))
        error, reason = closed_with(ws, 1008)
        assert error["code"] == "rate_limited" and f"{MESSAGE_RATE:g} messages/s" in reason
    with connect(ws_url(service), max_size=None) as ws:  # the next connection is served
        ws.send("{}")
        ws.send(jpegs[0])
        assert FrameResult.model_validate_json(ws.recv(timeout=60)).error is None
