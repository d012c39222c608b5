"""A short retry storm on a real service: three times the clients it admits, each sending its
next request the moment any answer comes (``Retry-After`` ignored). The gateway refuses from a
request's headers alone, before routing or reading the body, with 503 + ``Retry-After`` and
``Connection: close`` (so the unread body is never drained), and keeps serving the requests it
admits. Goodput figures belong to ``bench/retry_storm.py``."""

from __future__ import annotations

import json
import socket
import time

import pytest

from service.settings import Settings
from tests.support.load import BackgroundLoad

pytestmark = pytest.mark.slow

ANSWER_FROM_HEADERS_S = 2.0  # how long a probe waits for an answer before sending its body


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length: status, headers (lower-case), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the answer's headers: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(
        (name.strip().lower(), value.strip())
        for name, value in (line.split(":", 1) for line in lines[1:])
    )
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of the answer's body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def probe(url: str, body: bytes, source: str) -> tuple[bool, int, dict[str, str], bytes]:
    """Sends an upload's headers and waits for an answer; sends the body only if none comes.
    Returns whether the body was sent, and the answer. ``source``: an address of its own, so
    that the gateway sees a new client (it holds the answers to a client retrying early)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), source_address=(source, 0)) as sock:
        head = (
            f"POST /v1/pose HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode())
        sock.settimeout(ANSWER_FROM_HEADERS_S)
        try:
            return False, *read_answer(sock)
        except TimeoutError:  # the gateway waits for the body: it has admitted the request
            sock.settimeout(60)
            sock.sendall(body)
            return True, *read_answer(sock)


def test_a_retry_storm_is_refused_from_the_headers_and_admitted_requests_are_served(
    service, coco_images
):
    settings = Settings()
    bodies = [p.read_bytes() for p in coco_images[:20]]
    storm_clients = 3 * (settings.max_in_flight + settings.max_queued)
    unread: list[tuple[int, dict[str, str], bytes]] = []
    read: list[int] = []
    with BackgroundLoad(service.http, bodies, storm_clients) as storm:
        deadline = time.monotonic() + 90
        for n in range(1, 200):
            if len(unread) >= 5 or time.monotonic() > deadline:
                break
            body_sent, status, headers, body = probe(service.http, bodies[0], f"127.0.1.{n}")
            if body_sent:
                read.append(status)
            else:
                unread.append((status, headers, body))
    assert len(unread) >= 5, (unread, read)
    for status, headers, body in unread:  # refused from the headers: nothing else to read
        assert status == 503 and json.loads(body)["error"]["code"] == "overloaded", body
        assert headers["retry-after"] == "1" and headers["connection"] == "close", headers
    assert set(read) <= {200, 503}, read
    statuses = [o.status for o in storm.outcomes]
    assert set(statuses) == {200, 503}, set(statuses)  # served, or refused on purpose
    assert all(o.retry_after == "1" for o in storm.outcomes if o.status == 503)
