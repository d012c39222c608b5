"""Two replicas behind Envoy (``rtmserve.fleet``, the one-machine fleet): both take traffic;
kill -9 of one whole replica (gateway and Triton) under load from 8 clients loses no request
of the project's retrying client (and at most the ones in flight for a client without
retries); a gRPC stream on the killed replica resumes on the other with no frame lost or
doubled; the replica's return is noticed and it takes traffic again."""

from __future__ import annotations

import threading

import httpx
import pytest

from rtmserve.client import Client, RetryPolicy
from rtmserve.fleet import REPLICA_HEADER, start_fleet
from rtmserve.launch import wait_until
from tests.support.paths import MODELS_MIRROR
from tests.support.streaming import CLIP, clip_frames

PATIENT = RetryPolicy(attempts=100, base=0.1, cap=1.0, deadline=120)


@pytest.fixture(scope="module")
def fleet(service, tmp_path_factory):
    env = {"RTMSERVE_POSE_MODEL": "rtmpose-m", "RTMSERVE_DEBUG_ENDPOINTS": "1"}
    f = start_fleet(tmp_path_factory.mktemp("fleet-lb"), 2, MODELS_MIRROR, env,
                    repository=service.repository)  # fmt: skip
    yield f
    f.stop()


class Traffic:
    """4 clients of rtmserve.client (retrying) and 4 plain httpx clients, posting until
    stopped; the plain ones record which replica answered."""

    def __init__(self, fleet, photos: list[bytes]) -> None:
        self.fleet, self.photos = fleet, photos
        self.stop = threading.Event()
        self.retrying: list[list[str]] = [[] for _ in range(4)]  # "ok" or the error
        self.plain: list[list[tuple[int | None, int | None]]] = [[] for _ in range(4)]
        self.threads = [threading.Thread(target=self._retrying, args=(i,)) for i in range(4)]
        self.threads += [threading.Thread(target=self._plain, args=(i,)) for i in range(4)]

    def _retrying(self, i: int) -> None:
        with Client(self.fleet.http, retry=PATIENT, timeout=60) as client:
            k = i
            while not self.stop.is_set():
                try:
                    client.estimate(self.photos[k % len(self.photos)], max_persons=2)
                    self.retrying[i].append("ok")
                except Exception as exc:  # recorded: the test fails on any
                    self.retrying[i].append(repr(exc))
                k += 1

    def _plain(self, i: int) -> None:
        with httpx.Client(base_url=self.fleet.http, timeout=60) as http:
            k = i
            while not self.stop.is_set():
                try:
                    r = http.post("/v1/pose", content=self.photos[k % len(self.photos)],
                                  params={"max_persons": 2})  # fmt: skip
                    replica = self.fleet.replica_of(r.headers[REPLICA_HEADER])
                    self.plain[i].append((r.status_code, replica))
                except (httpx.HTTPError, KeyError):
                    self.plain[i].append((None, None))
                k += 1

    def answered(self) -> int:
        return sum(len(x) for x in self.retrying + self.plain)

    def replicas_since(self, mark: int) -> set[int]:
        return {rep for c in self.plain for s, rep in c[mark // 8 :] if s == 200}


def test_kill_9_of_a_replica_loses_nothing_and_its_return_takes_traffic(fleet, coco_images):
    photos = [p.read_bytes() for p in coco_images[44:52]]
    traffic = Traffic(fleet, photos)
    for t in traffic.threads:
        t.start()
    try:
        wait_until(lambda: traffic.replicas_since(0) == {0, 1}, 120, "both replicas answering")
        before = traffic.answered()
        fleet.kill(0)
        wait_until(lambda: traffic.answered() >= before + 40, 300, "40 answers after the kill")
        fleet.restart(0)
        mark = min(len(c) for c in traffic.plain) * 8
        wait_until(lambda: 0 in traffic.replicas_since(mark), 120, "the replica back in use")
    finally:
        traffic.stop.set()
        for t in traffic.threads:
            t.join()
    errors = [e for c in traffic.retrying for e in c if e != "ok"]
    assert not errors and sum(map(len, traffic.retrying)) > 20, errors[:3]
    failed = [s for c in traffic.plain for s, _ in c if s != 200]
    assert len(failed) <= 4, failed  # at most one in flight per client without retries
    print(f"\nfleet: {traffic.answered()} answers, {len(failed)} failed without retries, "
          f"0 with the retrying client")  # fmt: skip


def test_a_stream_on_a_killed_replica_resumes_on_the_other(fleet):
    frames = len(clip_frames())
    results, killed = [], None
    with Client(fleet.http, grpc_target=fleet.grpc_target, retry=PATIENT) as client:
        for result in client.stream(CLIP, det_interval=5):
            results.append(result)
            if len(results) == 30 and killed is None:
                counts = [httpx.get(f"{r.http}/debug/runtime", timeout=10).json()["streams"]
                          for r in fleet.replicas]  # fmt: skip
                killed = counts.index(1)
                fleet.kill(killed)
    try:
        assert [r.frame_index for r in results] == list(range(frames))
        resumed = [r for r in results if any("resumed" in w for w in r.warnings)]
        assert len(resumed) == 1 and resumed[0].frame_index >= 30
        assert all(r.error is None for r in results)
    finally:
        fleet.restart(killed)


def test_the_same_prometheus_configuration_scrapes_every_replica(fleet, tmp_path):
    """deploy/prometheus/prometheus.yml with every replica as a target of its job."""
    from tests.support.prometheus import start_prometheus

    host = lambda url: url.split("://", 1)[1]  # noqa: E731
    targets = {"rtmserve": [host(r.http) for r in fleet.replicas],
               "triton": [host(r.triton_metrics) for r in fleet.replicas]}  # fmt: skip
    prometheus = start_prometheus(tmp_path / "prometheus", targets, "1s")
    try:
        for job in targets:
            query = f'count(up{{job="{job}"}} == 1)'
            wait_until(lambda q=query: prometheus.value(q) == 2, 60, f"both replicas up: {job}")
        assert prometheus.value("count(count by (instance) (rtmserve_ready == 1))") == 2
    finally:
        prometheus.stop()
