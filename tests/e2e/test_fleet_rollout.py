"""Two replicas (gateway + embedded Triton each) sharing one model repository, as a fleet does:
a version registered through one replica is loaded by the other's Triton by itself, every
replica switches, no request fails, and each response is served by one version, the old one
until this replica's Triton has the new one. Rollback the same way."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading

import httpx
import pytest

from rtmserve.launch import start_service, wait_until
from tests.support.cli import models_cli
from tests.support.paths import MODELS_MIRROR, REPO

NAME = "fleet-pose"


def export(tmp_path, seed: int):
    out = tmp_path / f"seed{seed}.onnx"
    cmd = [sys.executable, "-m", "training.export", "--variant", "t", "--seed", str(seed),
           "--output", str(out)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def fleet(service, tmp_path_factory):
    """The session service (replica A) and a second replica B on A's repository."""
    tmp = tmp_path_factory.mktemp("fleet")
    v1, v2 = export(tmp, 1), export(tmp, 2)
    r = models_cli(service, "register", NAME, str(v1), "--like", "rtmpose-t")
    assert r.returncode == 0, r.stderr
    env = {"RTMSERVE_REPOSITORY": str(service.repository), "RTMSERVE_POSE_MODEL": "rtmpose-m"}
    b = start_service(tmp / "replica-b", MODELS_MIRROR, env, args=("--no-prepare",))
    yield [service, b], v2
    assert b.stop() == 0, b.log_tail()


def version(replica, photo: bytes) -> tuple[int | None, int]:
    r = httpx.post(f"{replica.http}/v1/pose", content=photo, timeout=120,
                   params={"pose_model": NAME, "max_persons": 2})  # fmt: skip
    return (r.json()["models"]["pose"]["version"] if r.status_code == 200 else None), r.status_code


class Load:
    """Four clients per replica posting continuously: (version, status) per response."""

    def __init__(self, replicas, photo: bytes) -> None:
        self.replicas, self.photo = replicas, photo
        self.results: list[list[tuple[int | None, int]]] = [[] for _ in range(8)]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(8)]

    def _client(self, i: int) -> None:
        replica = self.replicas[i % 2]
        while not self.stop.is_set():
            self.results[i].append(version(replica, self.photo))

    def latest(self, replica_index: int) -> set[int | None]:
        return {r[-1][0] for r in self.results[replica_index::2] if r}


def test_a_registration_through_one_replica_rolls_out_to_all_without_failures(fleet, coco_images):
    replicas, v2 = fleet
    photo = coco_images[50].read_bytes()
    for replica in replicas:  # B's Triton has loaded the new model (the keeper saw it)
        wait_until(lambda r=replica: version(r, photo) == (1, 200), 120, "v1 on every replica")
    load = Load(replicas, photo)
    for t in load.threads:
        t.start()
    try:
        r = models_cli(replicas[0], "register", NAME, str(v2), "--like", "rtmpose-t", "--force")
        assert r.returncode == 0, r.stderr
        for i in (0, 1):
            wait_until(lambda i=i: load.latest(i) == {2}, 120, f"replica {i} serving v2")
        r = models_cli(replicas[0], "rollback", NAME, "1")
        assert r.returncode == 0, r.stderr
        for i in (0, 1):
            wait_until(lambda i=i: load.latest(i) == {1}, 120, f"replica {i} back on v1")
    finally:
        load.stop.set()
        for t in load.threads:
            t.join()
    statuses = [s for client in load.results for _, s in client]
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    for client in load.results:  # one version per response, old then new then old again
        versions = [v for v, _ in client]
        changes = [b for a, b in itertools.pairwise(versions) if a != b]
        assert versions[0] == 1 and changes == [2, 1], versions
    b_requests = sum(len(c) for c in load.results[1::2])
    print(f"\nfleet rollout: {len(statuses)} requests, {b_requests} on replica B, all 200")
