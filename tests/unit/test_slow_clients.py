"""Slow clients and overload, in process: how fast an upload must come, the places for uploads
being received, and the door that refuses from a request's headers alone (over the real
application and a fake Triton pipeline client). The same against real processes:
tests/e2e/test_slow_clients.py and tests/e2e/test_retry_storm.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from service.app.admission import Reading
from service.app.errors import Overloaded
from service.http.app import create_app
from service.http.door import EarlyRetries
from service.http.upload import Pace
from tests.support.fakes import FakePipeline, fake_services


def test_an_upload_must_keep_up_the_minimum_rate_once_the_grace_period_is_over():
    pace = Pace(total_s=60, idle_s=15, min_rate=1000, grace_s=5)
    due, why = pace.deadline(start=100, last=101, received=10)
    assert due == 105 and "slower than 1000 bytes/s" in why  # the grace period, then cut
    due, why = pace.deadline(start=100, last=110, received=12_000)
    assert due == 112 and "slower" in why  # 12 kB at 1 kB/s: the average holds until 12 s
    due, why = pace.deadline(start=100, last=150, received=10_000_000)
    assert due == 160 and "longer than 60 s" in why
    due, why = pace.deadline(start=100, last=130, received=10_000_000)
    assert due == 145 and "stalled" in why
    assert Pace(total_s=60, idle_s=15).deadline(100, 100, 0)[0] == 115  # no minimum rate


def test_uploads_being_received_are_capped_in_all_and_per_address():
    reading = Reading(limit=3, per_client=2)
    with reading.receiving("a"), reading.receiving("a"):
        with pytest.raises(Overloaded, match="this address"):
            reading.receiving("a").__enter__()
        with reading.receiving("b"):
            assert isinstance(reading.refusal("c"), Overloaded)
        assert reading.refusal("c") is None
    assert reading.total == 0 and not reading.open


def test_the_door_refuses_from_the_headers_when_every_slot_and_place_in_line_is_taken(tmp_path):
    services = fake_services(tmp_path, FakePipeline())
    admission = services.admission
    app = create_app(services.settings, services)

    async def main() -> list[dict]:
        hold = asyncio.Event()

        async def holder() -> None:
            async with admission.slot():
                await hold.wait()

        tasks = [asyncio.create_task(holder()) for _ in range(admission.max_in_flight)]
        tasks += [asyncio.create_task(holder()) for _ in range(admission.max_queued)]
        while admission.waiting < admission.max_queued:  # every holder has its slot or place
            await asyncio.sleep(0)
        sent: list[dict] = []

        async def receive() -> dict:
            raise AssertionError("the door read the body")

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/pose", "raw_path": b"/v1/pose",
            "query_string": b"", "root_path": "", "client": ("127.0.0.9", 1234),
            "server": ("127.0.0.1", 8080),
            "headers": [(b"content-type", b"image/jpeg"), (b"content-length", b"5000000")],
        }  # fmt: skip
        await app(scope, receive, send)
        hold.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        return sent

    start, body = asyncio.run(main())
    headers = dict(start["headers"])
    assert start["status"] == 503
    assert headers[b"connection"] == b"close" and headers[b"retry-after"] == b"1"
    assert json.loads(body["body"])["error"]["code"] == "overloaded"


def test_a_client_back_before_its_retry_after_waits_for_its_refusal():
    retries = EarlyRetries(delay_s=1.0, window_s=1.0)
    assert retries.delay("a", now=10.0) == 0  # first refusal: at once
    assert retries.delay("a", now=10.2) == 1.0  # back 0.2 s later, Retry-After ignored
    assert retries.delay("b", now=10.3) == 0  # another address
    assert retries.delay("a", now=11.5) == 0  # waited as told
    retries.held = 256
    assert retries.delay("a", now=11.6) == 0  # too many held already: answered at once
    off = EarlyRetries(delay_s=0)
    off.delay("a", now=1.0)
    assert off.delay("a", now=1.1) == 0  # RTMSERVE_REFUSAL_DELAY_S=0: never held
