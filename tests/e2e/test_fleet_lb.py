"""Two replicas behind Envoy (``rtmserve.fleet``, the one-machine fleet), supervised: both
take traffic; kill -9 of a whole replica (gateway and Triton), three times under 8 plain
clients without retries, leaks no error (Envoy re-sends what the dead replica never answered,
503s included) and the supervisor has the replica back and answering (restarted after its
backoff, in Envoy within seconds of being ready: bench/fleet_failover.py times the whole); a
gRPC stream on a killed replica resumes on the other with no frame lost or doubled; kill -9 of
Envoy has it back at once, unnoticed by a retrying client; a replica that cannot start is
retried ever more slowly, reported, while the other serves; Prometheus scrapes replicas and
supervisor alike."""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtmserve.client import Client, RetryPolicy
from rtmserve.fleet import REPLICA_HEADER, start_fleet
from rtmserve.launch import wait_until
from rtmserve.supervise import Backoff
from tests.support.load import BackgroundLoad
from tests.support.paths import MODELS_MIRROR
from tests.support.streaming import CLIP, clip_frames

pytestmark = pytest.mark.slow
PATIENT = RetryPolicy(attempts=100, base=0.1, cap=1.0, deadline=120)
# up 10 s, a replica's next death starts again at 0.5 s; whatever its history, a crash loop
# goes through at least one doubling before the cap
BACKOFF = Backoff(base_s=0.5, cap_s=8.0, stable_s=10.0)


@pytest.fixture(scope="module")
def fleet(service, tmp_path_factory):
    env = {"RTMSERVE_POSE_MODEL": "rtmpose-m", "RTMSERVE_DEBUG_ENDPOINTS": "1"}
    f = start_fleet(tmp_path_factory.mktemp("fleet-lb"), 2, MODELS_MIRROR, env,
                    repository=service.repository, backoff=BACKOFF)  # fmt: skip
    yield f
    f.stop()


def samples(url: str) -> list:
    """Every sample of a Prometheus exposition (none while it does not answer)."""
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return []
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def pose_answers(replica) -> float:
    """Images this replica's gateway process answered with 200 (from its own /metrics)."""
    pose = {"route": "/v1/pose", "status": "200"}.items()
    found = samples(f"{replica.http}/metrics")
    name = "rtmserve_http_requests_total"
    return sum(s.value for s in found if s.name == name and pose <= s.labels.items())


def supervisor(fleet, name: str, replica: int | None = None) -> float | None:
    """A sample of the supervisor's own endpoint (``rtmserve fleet --metrics-port``)."""
    for s in samples(fleet.metrics):
        if s.name == name and (replica is None or s.labels.get("replica") == str(replica)):
            return s.value
    return None


def back(fleet, i: int, old) -> bool:
    """Replica ``i`` is a new process, and it has answered images sent through Envoy."""
    return fleet.replicas[i] is not old and pose_answers(fleet.replicas[i]) > 0


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


def logged(caplog, text: str, after: float) -> logging.LogRecord:
    """The first line the supervisor logged starting with ``text`` after ``after``."""
    return next(r for r in caplog.records if r.created > after and r.getMessage().startswith(text))


def test_kill_9_of_a_replica_three_times_leaks_no_error_and_it_comes_back(
    fleet, coco_images, caplog
):
    """The supervisor's part of the way back is timed (the start after the backoff, and
    Envoy's rejoin once the replica is ready); ``rtmserve serve``'s own start time, most of
    the rest, depends on the machine: bench/fleet_failover.py measures the whole."""
    caplog.set_level(logging.INFO, logger="rtmserve.fleet")
    photos = [p.read_bytes() for p in coco_images[44:52]]
    kills: list[tuple[int, float, float]] = []  # victim, killed, answering (time.time)
    with BackgroundLoad(fleet.http, photos, clients=8) as load:  # plain: no retries
        wait_until(lambda: all(pose_answers(r) > 0 for r in fleet.replicas), 120,
                   "both replicas answering")  # fmt: skip
        for victim in (0, 1, 0):
            old, killed = fleet.replicas[victim], time.time()
            fleet.kill(victim)
            wait_until(lambda v=victim, o=old: back(fleet, v, o), 180, f"replica {victim} back")
            kills.append((victim, killed, time.time()))
        answers = len(load.outcomes)
    statuses = [o.status for o in load.outcomes]
    failed = [s for s in statuses if s != 200]
    phases = []
    for victim, killed, answering in kills:
        announced = logged(caplog, f"replica {victim}: start attempt in", killed).getMessage()
        delay = float(re.search(r"in ([0-9.]+) s", announced)[1])
        started = logged(caplog, f"replica {victim}: starting", killed).created - killed
        ready = logged(caplog, f"replica {victim} is back", killed).created - killed
        phases.append((delay, round(started, 1), round(ready, 1), round(answering - killed, 1)))
    print(f"\nfleet: {len(statuses)} answers to 8 plain clients over 3 kills, "
          f"{len(failed)} not 200; (backoff, started, ready, answering) s after each kill: "
          f"{phases}")  # fmt: skip
    assert answers >= 24 and not failed, (len(statuses), failed[:10])
    for delay, started, ready, answering in phases:
        assert delay <= started <= delay + 3, phases  # noticed within the poll, then the backoff
        assert answering - ready <= 10, phases  # Envoy's checks see it within seconds
    assert supervisor(fleet, "rtmserve_fleet_replica_restarts_total", 0) >= 2
    assert supervisor(fleet, "rtmserve_fleet_replica_up", 0) == 1


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
    assert [r.frame_index for r in results] == list(range(frames))
    resumed = [r for r in results if any("resumed" in w for w in r.warnings)]
    assert len(resumed) == 1 and resumed[0].frame_index >= 30
    assert all(r.error is None for r in results)
    wait_until(lambda: fleet.replicas[killed].ready(), 180, "the supervisor to restart it")


def test_kill_9_of_envoy_has_it_back_at_once_and_a_retrying_client_sees_no_failure(
    fleet, coco_images
):
    def balancer_answers() -> bool:
        try:
            return httpx.get(f"{fleet.http}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    traffic = Traffic(fleet, [p.read_bytes() for p in coco_images[44:52]])
    for t in traffic.threads:
        t.start()
    try:
        wait_until(lambda: sum(map(len, traffic.retrying)) >= 8, 120, "traffic")
        old, killed = fleet.envoy, time.monotonic()
        old.kill()  # SIGKILL
        wait_until(lambda: fleet.envoy is not old and balancer_answers(), 60, "Envoy back")
        downtime = time.monotonic() - killed
        before = sum(map(len, traffic.retrying))
        wait_until(lambda: sum(map(len, traffic.retrying)) >= before + 8, 120, "8 more answers")
    finally:
        traffic.stop.set()
        for t in traffic.threads:
            t.join()
    errors = [e for c in traffic.retrying for e in c if e != "ok"]
    print(f"\nEnvoy answering again {downtime:.2f} s after kill -9; retrying clients: "
          f"{sum(map(len, traffic.retrying))} answers, {len(errors)} errors")  # fmt: skip
    assert not errors, errors[:3]
    assert downtime < 2, downtime
    assert supervisor(fleet, "rtmserve_fleet_balancer_restarts_total") >= 1
    assert supervisor(fleet, "rtmserve_fleet_balancer_up") == 1


def test_a_replica_that_cannot_start_is_retried_ever_more_slowly_while_the_other_serves(
    fleet, coco_images, caplog
):
    caplog.set_level(logging.INFO, logger="rtmserve.fleet")
    fleet.replica_env[1] = {"RTMSERVE_MAX_IN_FLIGHT": "0"}  # refused: serve exits at start
    photos = [p.read_bytes() for p in coco_images[44:48]]
    try:
        with BackgroundLoad(fleet.http, photos, clients=4) as load:
            fleet.kill(1)
            failed = lambda: supervisor(fleet, "rtmserve_fleet_replica_failed_starts_total", 1)  # noqa: E731
            start = failed()
            wait_until(lambda: failed() >= start + 3, 180, "three failed starts")
            assert supervisor(fleet, "rtmserve_fleet_replica_up", 1) == 0
            delay = supervisor(fleet, "rtmserve_fleet_replica_restart_delay_seconds", 1)
            fleet.replica_env[1] = {}  # the cause fixed: the next attempt starts it
            old = fleet.replicas[1]
            wait_until(lambda: back(fleet, 1, old), 180, "replica 1 back")
    finally:
        fleet.replica_env[1] = {}
    statuses = {o.status for o in load.outcomes}
    assert statuses == {200} and len(load.outcomes) >= 8, statuses
    records = [r for r in caplog.records if r.getMessage().startswith("replica 1")]
    announced = [float(m[1]) for r in records if (m := re.search(r"start attempt in ([0-9.]+) s",
                                                               r.getMessage()))]  # fmt: skip
    starts = [r.created for r in records if r.getMessage().endswith("replica 1: starting")]
    reasons = [r.getMessage() for r in records if "failed to start" in r.getMessage()]
    print(f"\ncrash loop: delays {announced} s, {len(reasons)} failed starts, "
          f"{len(load.outcomes)} answers from the other replica, all 200")  # fmt: skip
    assert len(announced) >= 4 and len(starts) == len(announced)
    assert announced[-1] > announced[0], announced
    for a, b in itertools.pairwise(announced):  # doubling, up to the cap
        assert b == min(BACKOFF.cap_s, 2 * a), announced
    for (t0, t1), wait in zip(itertools.pairwise(starts), announced[1:], strict=False):
        assert t1 - t0 >= wait, (starts, announced)
    assert len(reasons) >= 3 and all("exited with code 1" in r for r in reasons), reasons
    assert "max_in_flight" in reasons[0]  # the replica's own words, in the fleet's log
    assert delay >= 2 * BACKOFF.base_s


def test_the_same_prometheus_configuration_scrapes_every_replica_and_the_supervisor(
    fleet, tmp_path
):
    """deploy/prometheus/prometheus.yml with every replica as a target of its job, and the
    fleet's supervisor as the target of its own."""
    from tests.support.prometheus import start_prometheus

    host = lambda url: url.split("://", 1)[1].split("/", 1)[0]  # noqa: E731
    targets = {"rtmserve": [host(r.http) for r in fleet.replicas],
               "triton": [host(r.triton_metrics) for r in fleet.replicas],
               "rtmserve-fleet": [host(fleet.metrics)]}  # fmt: skip
    prometheus = start_prometheus(tmp_path / "prometheus", targets, "1s")
    try:
        for job, n in (("rtmserve", 2), ("triton", 2), ("rtmserve-fleet", 1)):
            query = f'count(up{{job="{job}"}} == 1)'
            wait_until(lambda q=query, n=n: prometheus.value(q) == n, 60, f"{job} up")
        assert prometheus.value("count(count by (instance) (rtmserve_ready == 1))") == 2
        # what the supervisor says now (nothing dies meanwhile) is what Prometheus has
        restarts = sum(
            supervisor(fleet, "rtmserve_fleet_replica_restarts_total", i) for i in (0, 1)
        )
        query = 'sum(rtmserve_fleet_replica_restarts_total{job="rtmserve-fleet"})'
        wait_until(lambda: prometheus.value(query) == restarts, 60, "the restarts scraped")
        assert prometheus.value("sum(rtmserve_fleet_replica_up)") == 2
        assert prometheus.value("rtmserve_fleet_balancer_up") == 1
        assert prometheus.value("rtmserve_fleet_balancer_restarts_total") == supervisor(
            fleet, "rtmserve_fleet_balancer_restarts_total"
        )
    finally:
        prometheus.stop()
