"""Crops from concurrent requests meet in the pose model's dynamic batcher.

Every request asks for one person (max_persons=1), so each sends exactly one crop to the pose
model: any execution of batch size > 1 is necessarily made of crops from different requests.
Triton's own statistics API is the witness.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx


def pose_batch_stats(service) -> dict[int, int]:
    """{batch size: executions} of the serving pose model, from Triton's statistics API."""
    r = httpx.get(f"{service.triton_http}/v2/models/rtmpose-m/stats", timeout=10)
    r.raise_for_status()
    stats = r.json()["model_stats"]
    return {
        b["batch_size"]: int(b["compute_infer"]["count"]) for s in stats for b in s["batch_stats"]
    }


def test_eight_concurrent_clients_share_pose_batches(service, coco_images, capsys):
    wanted = {"000000196141", "000000000139", "000000040083", "000000197388",
              "000000183709", "000000350679", "000000034417", "000000126107"}  # fmt: skip
    photos = [p.read_bytes() for p in coco_images if p.stem in wanted]
    assert len(photos) == 8
    before = pose_batch_stats(service)

    def client(i: int) -> int:
        with httpx.Client(base_url=service.http, timeout=300) as c:
            for k in range(6):
                r = c.post("/v1/pose", content=photos[(i + k) % 8], params={"max_persons": 1})
                assert r.status_code == 200, r.text
                assert len(r.json()["persons"]) == 1
        return 6

    with ThreadPoolExecutor(8) as pool:
        sent = sum(pool.map(client, range(8)))

    after = pose_batch_stats(service)
    delta = {b: after.get(b, 0) - before.get(b, 0) for b in after}
    delta = {b: n for b, n in delta.items() if n}
    with capsys.disabled():
        print(f"\npose-model executions by batch size over {sent} single-crop requests: {delta}")
    assert sum(b * n for b, n in delta.items()) == sent  # every crop ran exactly once
    assert any(b > 1 for b in delta), f"no batch merged crops of different requests: {delta}"
