"""The Python client (``rtmserve.client``) against the live service: every input type, the
concurrency bound, retries through a real outage, the gRPC stream, and drawing."""

from __future__ import annotations

import asyncio
import threading

import httpx
import numpy as np
import pytest
from PIL import Image

from rtmserve.client import AsyncClient, Client, RetryPolicy, RtmserveError
from rtmserve.launch import free_port, start_service
from service.core.image import decode
from service.triton.embedded import EmbeddedTriton, TritonPorts
from tests.support.streaming import CLIP, clip_frames

PHOTOS = slice(40, 52)


def persons(result) -> list[dict]:
    return [p.model_dump() for p in result.persons]


def test_every_input_type_gives_the_answer_of_the_file(service, coco_images):
    path = coco_images[50]
    want = httpx.post(f"{service.http}/v1/pose", content=path.read_bytes(), timeout=120).json()
    pixels = decode(path.read_bytes())
    with Client(service.http, pixels_as="png") as client:  # lossless: the same pixels arrive
        answers = {
            "path": client.estimate(path),
            "str": client.estimate(str(path)),
            "bytes": client.estimate(path.read_bytes()),
            "numpy": client.estimate(pixels),
            "pil": client.estimate(Image.fromarray(pixels[..., ::-1])),
        }
    assert want["persons"]
    for kind, result in answers.items():
        assert persons(result) == want["persons"], kind
        assert result.models.pose and result.image.width == pixels.shape[1]


def test_options_are_checked_before_sending_and_errors_are_typed(service, coco_images):
    with Client(service.http) as client:
        with pytest.raises(ValueError, match="score_threshold"):
            client.estimate(coco_images[0], score_threshold=7)
        with pytest.raises(RtmserveError) as err:
            client.estimate(coco_images[0], pose_model="no-such-model")
        assert err.value.status == 404 and err.value.code == "unknown_model"
        assert client.retries == 0  # a 404 is not retried


class Counting(Client):
    """Counts how many ``estimate`` calls run at once (the bound ``estimate_many`` keeps)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def estimate(self, image, **options):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            return super().estimate(image, **options)
        finally:
            with self.lock:
                self.now -= 1


def test_estimate_many_keeps_order_and_its_concurrency_bound(service, coco_images):
    images = coco_images[PHOTOS]
    with Counting(service.http) as client:
        results = client.estimate_many(images, concurrency=3)
        assert client.peak == 3
    with Client(service.http) as client:
        one_by_one = [client.estimate(p) for p in images]
    assert [persons(r) for r in results] == [persons(r) for r in one_by_one]


def test_async_client_bounds_and_orders_the_same(service, coco_images):
    images = coco_images[PHOTOS]
    peak, now = [0], [0]

    async def main():
        async with AsyncClient(service.http) as client:
            inner = client.estimate

            async def counted(image, **options):
                now[0] += 1
                peak[0] = max(peak[0], now[0])
                try:
                    return await inner(image, **options)
                finally:
                    now[0] -= 1

            client.estimate = counted
            many = await client.estimate_many(images, concurrency=2)
            models = await client.models()
            return many, models

    many, models = asyncio.run(main())
    assert peak[0] == 2 and len(many) == len(images)
    with Client(service.http) as client:
        assert [persons(r) for r in many] == [persons(client.estimate(p)) for p in images]
    assert models.default_pose_model


def test_a_result_draws_itself(service, coco_images):
    with Client(service.http) as client:
        result = client.estimate(coco_images[50])
        drawn = result.render(style="openpose", black_background=True)
        server_png, same = client.render(coco_images[50], png=True, black_background=True,
                                         style="openpose")  # fmt: skip
    assert persons(same) == persons(result)
    import cv2

    assert np.array_equal(cv2.imdecode(np.frombuffer(server_png, np.uint8), cv2.IMREAD_COLOR),
                          drawn)  # fmt: skip


def test_the_grpc_stream_returns_one_result_per_frame_in_order(service):
    with Client(service.http, grpc_target=f"127.0.0.1:{service.grpc_port}") as client:
        results = list(client.stream(CLIP, det_interval=5))
    assert [r.frame_index for r in results] == list(range(len(clip_frames())))
    assert sum(r.detected for r in results) == -(-len(results) // 5)


@pytest.fixture
def outage(service, tmp_path):
    """A gateway whose Triton this test stops and starts (as tests/e2e/test_triton_recovery)."""
    ports = TritonPorts(free_port(), free_port(), free_port())
    triton = EmbeddedTriton(service.repository, tmp_path / "triton", ports)
    env = {"RTMSERVE_REPOSITORY": str(service.repository)}
    args = ("--triton-url", f"127.0.0.1:{ports.grpc}", "--no-prepare")
    gateway = start_service(tmp_path / "gateway", extra_env=env, args=args, ready_path="/healthz")
    yield gateway, triton
    triton.stop()
    assert gateway.stop() == 0


def test_a_caller_rides_through_an_outage_without_seeing_an_error(outage, coco_images):
    gateway, triton = outage  # Triton is not started yet: the gateway answers 503
    photo = coco_images[50].read_bytes()
    assert httpx.post(f"{gateway.http}/v1/pose", content=photo, timeout=60).status_code == 503
    retry = RetryPolicy(attempts=1000, base=0.2, cap=2.0, deadline=300)
    with Client(gateway.http, retry=retry) as client:
        outcome: dict = {}
        caller = threading.Thread(target=lambda: outcome.update(r=client.estimate(photo)))
        caller.start()
        while client.retries < 2 and caller.is_alive():  # it met the outage, it retries
            caller.join(0.05)
        triton.start()
        triton.wait_ready()
        caller.join(300)
        assert not caller.is_alive()
    assert outcome["r"].persons and client.retries >= 2
