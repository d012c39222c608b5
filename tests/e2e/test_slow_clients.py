"""Slow clients on a real service: uploads trickled a byte at a time (slowloris) by more clients
than there are processing slots, and clients that never finish their headers, hold nothing
that others need: a normal client keeps being answered 200 throughout, and the slow ones are
cut off (408 once their upload averages under the minimum rate after the grace period).

Every client comes from a loopback address of its own (127.0.0.x): the gateway's per-address
limits see as many clients as there are connections, as from the internet."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from service.settings import Settings

pytestmark = pytest.mark.slow

TRICKLERS = Settings().max_in_flight + 4  # more than the processing slots
PACE_S = 0.5  # a byte every half second: 2 bytes/s, far under the minimum rate


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def trickle(url: str, source: str, declared: int) -> tuple[str, bytes, float]:
    """Sends an upload's headers, then a byte every ``PACE_S`` until the gateway answers or
    closes; returns its status line (or ``closed``), the rest of the answer and the seconds
    it took."""
    host, port = _host_port(url)
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    start = time.monotonic()
    head = (
        f"POST /v1/pose HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    writer.write(head.encode())
    answer = rest = b""
    try:
        for _ in range(declared):
            try:  # the pacing: wait for an answer for PACE_S, else send the next byte
                answer = await asyncio.wait_for(reader.readline(), PACE_S)
                rest = await asyncio.wait_for(reader.read(), 30)  # to the close
                break
            except TimeoutError:
                writer.write(b"\xff")
                await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
    status = answer.decode(errors="replace").strip() or "closed"
    return status, rest, time.monotonic() - start


def test_clients_trickling_uploads_hold_no_slot_and_are_cut_at_the_minimum_rate(
    service, coco_images
):
    settings = Settings()  # the service's limits, but for its idle timeout (tests/conftest.py)
    photo = coco_images[0].read_bytes()
    answers: list[int] = []
    done = threading.Event()

    def normal_client() -> None:  # from an address of its own, one request after another
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=service.http, transport=transport, timeout=60) as http:
            while not done.is_set():
                answers.append(http.post("/v1/pose", content=photo).status_code)

    async def slowloris() -> list[tuple[str, bytes, float]]:
        return await asyncio.gather(
            *(trickle(service.http, f"127.0.0.{10 + i}", 100_000) for i in range(TRICKLERS))
        )

    worker = threading.Thread(target=normal_client)
    worker.start()
    try:
        cut = asyncio.run(slowloris())
    finally:
        done.set()
        worker.join(120)
    assert answers and set(answers) == {200}, answers  # never locked out
    grace = settings.upload_grace_s
    for status, rest, seconds in cut:
        assert status == "HTTP/1.1 408 Request Timeout", (status, rest, seconds)
        assert b"slower than" in rest and b"connection: close" in rest.lower(), rest
        assert seconds >= grace - 0.5, seconds  # not before the grace period
    assert httpx.post(f"{service.http}/v1/pose", content=photo, timeout=60).status_code == 200


def test_a_connection_that_never_finishes_its_headers_is_closed(service):
    """uvicorn alone keeps such a connection open for ever (it times out only idle keep-alive
    connections)."""
    settings = Settings()

    async def never_done() -> tuple[bytes, float]:
        host, port = _host_port(service.http)
        reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.3", 0))
        start = time.monotonic()
        writer.write(b"POST /v1/pose HTTP/1.1\r\nHost: x\r\n")  # the headers never end
        await writer.drain()
        try:
            left = await asyncio.wait_for(reader.read(), settings.headers_timeout_s + 20)
        finally:
            writer.close()
        return left, time.monotonic() - start

    left, seconds = asyncio.run(never_done())
    assert left == b"" and seconds >= settings.headers_timeout_s - 0.5  # closed, unanswered


def test_request_headers_over_the_size_limit_are_refused(service):
    """httptools alone puts no bound on a request's line and headers."""
    filler = "x" * (Settings().max_header_bytes + 1)
    answer = httpx.get(f"{service.http}/healthz", headers={"X-Filler": filler}, timeout=30)
    assert answer.status_code == 400 and answer.headers["connection"] == "close"
    assert httpx.get(f"{service.http}/healthz", timeout=30).status_code == 200
