"""SIGTERM while a video stream and eight requests are in progress: all of them complete, then
the service stops with exit code 0. A stream still open when the grace period ends gets a
final UNAVAILABLE status instead of being cut."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pytest

from rtmserve.client.grpc import SourceFrame, stream
from rtmserve.launch import start_service, wait_until
from service.grpc.gen import pose_pb2 as pb
from tests.support.paths import MODELS_MIRROR
from tests.support.procs import processes
from tests.support.streaming import clip_frames, runtime

UPLOADS = 8


def serving(tmp_path, grace_s: float):
    env = {
        "RTMSERVE_SHUTDOWN_GRACE_S": str(grace_s),
        "RTMSERVE_MAX_IN_FLIGHT": str(UPLOADS),
        "RTMSERVE_DEBUG_ENDPOINTS": "1",
        # the uploads pause until the SIGTERM: not slow clients to cut off (test_slow_clients)
        "RTMSERVE_UPLOAD_GRACE_S": "120",
    }
    return start_service(tmp_path, MODELS_MIRROR, env)


def slow_upload(url: str, photo: bytes, started: threading.Event) -> int:
    """POST the photo in pieces, the last ones only after ``started`` (the SIGTERM) is set."""

    def body():
        yield photo[:1000]
        started.wait(60)
        for i in range(1000, len(photo), 4096):
            yield photo[i : i + 4096]

    return httpx.post(f"{url}/v1/pose", content=body(), timeout=120).status_code


def test_sigterm_lets_a_stream_and_eight_requests_finish_then_exits_0(tmp_path, coco_images):
    svc = serving(tmp_path, grace_s=90)
    frames = clip_frames()
    photo = coco_images[3].read_bytes()
    received: list[int] = []
    sent_sigterm = threading.Event()

    def run_stream() -> None:
        config = pb.StreamConfig(det_interval=5)
        for message in stream(f"127.0.0.1:{svc.grpc_port}", config, frames):
            received.append(message.frame_index)

    with ThreadPoolExecutor(UPLOADS + 1) as pool:
        streaming = pool.submit(run_stream)
        uploads = [pool.submit(slow_upload, svc.http, photo, sent_sigterm) for _ in range(UPLOADS)]
        # in progress: their bodies being received (an image takes its slot once it is in)
        wait_until(lambda: runtime(svc)["receiving"] == UPLOADS, 60, "8 uploads in progress")
        wait_until(lambda: len(received) >= 10, 120, "the stream to be under way")
        svc.proc.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        wait_until(lambda: not svc.ready(), 30, "readiness to turn off")
        sent_sigterm.set()
        statuses = [u.result(timeout=120) for u in uploads]
        streaming.result(timeout=120)
    code = svc.proc.wait(timeout=120)
    assert statuses == [200] * UPLOADS
    assert received == list(range(len(frames)))  # every frame, in order
    assert code == 0, svc.log_tail()
    assert time.monotonic() - t_term < 90
    assert "stopping tritonserver" in svc.log_tail(20)


def test_a_stream_still_open_when_the_grace_ends_gets_unavailable(tmp_path):
    svc = serving(tmp_path, grace_s=4)
    frame = clip_frames()[0]
    stop = threading.Event()
    received: list[int] = []

    def endless():
        while not stop.is_set():
            yield SourceFrame(frame.image, None)
            time.sleep(0.1)  # a live camera's pace

    error: list[grpc.RpcError] = []

    def run() -> None:
        try:
            for message in stream(f"127.0.0.1:{svc.grpc_port}", pb.StreamConfig(), endless()):
                received.append(message.frame_index)
        except grpc.RpcError as exc:
            error.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(lambda: len(received) >= 5, 60, "the stream to be under way")
    svc.proc.send_signal(signal.SIGTERM)
    thread.join(60)
    stop.set()
    assert not thread.is_alive()
    code = svc.proc.wait(timeout=120)
    assert error and error[0].code() == grpc.StatusCode.UNAVAILABLE, error
    assert "shutting down" in error[0].details()
    assert received == list(range(len(received)))  # no frame lost before the end
    assert code == 0, svc.log_tail()


@pytest.fixture(autouse=True)
def _no_leftover(tmp_path):
    yield
    leftover = [p for p in processes() if any(str(tmp_path) in a for a in p.argv)]
    assert leftover == [], leftover
