"""Twice the capacity, for two minutes, from an open-loop client (requests on schedule, whatever
the answers): the gateway sheds what it cannot do with 503 + Retry-After, answers the rest with
a bounded latency, and its memory stays flat. The service runs with its default admission."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rtmserve.launch import start_service
from service.settings import Settings
from tests.support.load import closed_loop, open_loop, summary
from tests.support.paths import MODELS_MIRROR
from tests.support.procs import rss_bytes

CAPACITY_S, OVERLOAD_S, WARMUP_S = 20, 120, 30


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    svc = start_service(tmp_path_factory.mktemp("overload-home"), MODELS_MIRROR)
    yield svc
    assert svc.stop() == 0


def test_twice_the_capacity_sheds_with_503_and_keeps_latency_and_memory(
    loaded, coco_images, capsys
):
    settings = Settings()  # the defaults the service runs with
    bodies = [p.read_bytes() for p in coco_images[:40]]
    clients = settings.max_in_flight  # capacity: as many clients as it admits at once
    asyncio.run(closed_loop(loaded.http, bodies, clients, 5))  # warm the caches
    at_capacity = summary(
        asyncio.run(closed_loop(loaded.http, bodies, clients, CAPACITY_S)), CAPACITY_S
    )
    assert set(at_capacity["statuses"]) == {200}
    rate = 2 * at_capacity["ok_per_s"]
    rss: list[int] = []

    async def overload():
        async def sample():
            for _ in range(OVERLOAD_S):
                rss.append(rss_bytes(loaded.proc.pid))
                await asyncio.sleep(1)  # a sampling period

        sampler = asyncio.create_task(sample())
        outcomes = await open_loop(loaded.http, bodies, rate, OVERLOAD_S, timeout=60)
        await sampler
        return outcomes

    outcomes = asyncio.run(overload())
    over = summary(outcomes, OVERLOAD_S)
    assert set(over["statuses"]) <= {200, 503}, over["statuses"]  # only deliberate refusals
    shed = [o for o in outcomes if o.status == 503]
    assert shed and all(o.retry_after == "1" for o in shed)
    assert over["ok_per_s"] >= 0.7 * at_capacity["ok_per_s"]  # shedding costs little
    ratio = over["p99_ms"] / at_capacity["p99_ms"]
    after_warmup = rss[WARMUP_S]
    growth = max(rss[WARMUP_S:]) / after_warmup - 1
    with capsys.disabled():
        print(
            f"\ncapacity ({clients} clients): {at_capacity['ok_per_s']:.1f} img/s, p99 "
            f"{at_capacity['p99_ms']:.0f} ms | {rate:.1f} req/s for {OVERLOAD_S} s: "
            f"{over['ok_per_s']:.1f} img/s answered, {over['statuses']}, accepted p99 "
            f"{over['p99_ms']:.0f} ms ({ratio:.2f}x) | gateway RSS {rss[0] >> 20} MB at start, "
            f"{after_warmup >> 20} MB after {WARMUP_S} s, {max(rss) >> 20} MB max "
            f"({100 * growth:+.1f} %)"
        )
    # 1.26x before uploads were received ahead of their slot (issue 31: slow clients hold no
    # slot); since then 1.69-2.02x in full runs on this machine: a bound with room, not a target
    assert ratio <= 2.5
    assert growth < 0.10
    assert httpx.get(f"{loaded.http}/readyz", timeout=10).status_code == 200
