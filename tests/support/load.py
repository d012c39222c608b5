"""Load for the tests, from this process over loopback: closed loop (N clients, each sending
its next request when the last one is answered) and open loop (requests at a fixed rate,
whatever the answers), recording every outcome. aiohttp rather than httpx: the client shares
the machine's two cores with the service, and costs it less."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import numpy as np


@dataclass(frozen=True)
class Outcome:
    sent: float  # seconds since the run began
    status: int  # 0: no HTTP answer (connection error, timeout)
    latency_s: float
    retry_after: str | None = None
    pose: tuple[int, str] | None = None  # (version, role) of the pose model that answered


async def _post(client: aiohttp.ClientSession, body: bytes, t0: float, timeout: float) -> Outcome:
    sent = time.perf_counter()
    try:
        async with client.post(
            "/v1/pose", data=body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as r:
            body = await r.read()
            status, retry = r.status, r.headers.get("retry-after")
    except (aiohttp.ClientError, TimeoutError):
        status, retry, body = 0, None, b""
    latency = time.perf_counter() - sent
    pose = None
    if status == 200:
        used = json.loads(body)["models"]["pose"]
        pose = (used["version"], used["role"]) if used else None
    return Outcome(sent - t0, status, latency, retry, pose)


def _session(url: str, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=connections))


async def closed_loop(
    url: str,
    bodies: Sequence[bytes],
    clients: int,
    seconds: float,
    timeout: float = 60,
    count: int | None = None,
) -> list[Outcome]:
    """``count``: stop after that many requests (else after ``seconds``)."""
    bodies_cycle = itertools.cycle(bodies)
    out: list[Outcome] = []
    sent = itertools.count(1)
    async with _session(url, clients) as client:
        t0 = time.perf_counter()

        def more() -> bool:
            if count is not None:
                return next(sent) <= count
            return time.perf_counter() - t0 < seconds

        async def one() -> None:
            while more():
                out.append(await _post(client, next(bodies_cycle), t0, timeout))

        await asyncio.gather(*(one() for _ in range(clients)))
    return out


async def open_loop(
    url: str,
    bodies: Sequence[bytes],
    rate: float,
    seconds: float,
    timeout: float = 60,
    max_connections: int = 200,
) -> list[Outcome]:
    """``rate`` requests/s for ``seconds``, on schedule whatever the answers."""
    bodies_cycle = itertools.cycle(bodies)
    async with _session(url, max_connections) as client:
        t0 = time.perf_counter()
        tasks = []
        for i in range(int(rate * seconds)):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the schedule itself, not synchronisation
            tasks.append(asyncio.create_task(_post(client, next(bodies_cycle), t0, timeout)))
        return list(await asyncio.gather(*tasks))


def summary(outcomes: Sequence[Outcome], seconds: float) -> dict:
    ok = [o.latency_s for o in outcomes if o.status == 200]
    statuses: dict[int, int] = {}
    for o in outcomes:
        statuses[o.status] = statuses.get(o.status, 0) + 1
    pct = (lambda q: float(np.percentile(ok, q)) * 1e3) if ok else (lambda q: float("nan"))
    return {
        "requests": len(outcomes),
        "statuses": statuses,
        "ok_per_s": len(ok) / seconds,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
    }


class BackgroundLoad:
    """Closed-loop load from a thread of its own until ``stop``; outcomes as they come."""

    def __init__(self, url: str, bodies: Sequence[bytes], clients: int, timeout: float = 60):
        import threading

        self.url, self.bodies, self.clients, self.timeout = url, bodies, clients, timeout
        self.outcomes: list[Outcome] = []
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 30)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    async def _run(self) -> None:
        bodies = itertools.cycle(self.bodies)
        async with _session(self.url, self.clients) as client:

            async def one() -> None:
                while not self._stop.is_set():
                    self.outcomes.append(await _post(client, next(bodies), self.t0, self.timeout))

            await asyncio.gather(*(one() for _ in range(self.clients)))

    def ok_per_s(self, start: float, end: float) -> float:
        done = [o for o in self.outcomes if start <= o.sent + o.latency_s < end]
        return sum(o.status == 200 for o in done) / (end - start)
