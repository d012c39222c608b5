"""Faults a production service must survive, injected into a real one of its own: tritonserver
killed with SIGKILL under load (three times), one Python-backend stub killed alone, a model
unloaded behind the gateway's back. It comes back by itself each time, no request hangs, no
process is left behind, and Triton's own ports never face the network."""

from __future__ import annotations

import os
import signal
import threading

import httpx
import pytest

from rtmserve.launch import start_service, wait_until
from tests.support.load import BackgroundLoad
from tests.support.paths import MODELS_MIRROR
from tests.support.procs import is_loopback, listening, orphans, stubs, tritonserver

CLIENTS = 4
TIMEOUT_S = 20.0  # the gateway's inference timeout here: nothing may take longer


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    svc = start_service(
        tmp_path_factory.mktemp("faulty-home"),
        MODELS_MIRROR,
        {"RTMSERVE_INFERENCE_TIMEOUT_S": str(TIMEOUT_S)},
    )
    yield svc
    assert svc.stop() == 0, svc.log_tail()
    assert tritonserver(svc) is None and stubs(svc) == []  # stopped with everything it ran


@pytest.fixture(scope="module")
def photos(coco_images) -> list[bytes]:
    return [p.read_bytes() for p in coco_images[:20]]


def metric(svc, name: str) -> float:
    text = httpx.get(f"{svc.http}/metrics", timeout=10).text
    lines = [x for x in text.splitlines() if x.startswith(name)]
    return sum(float(x.rsplit(" ", 1)[1]) for x in lines)


def test_tritons_http_and_grpc_ports_listen_on_loopback_only(faulty):
    for port in (faulty.triton_http, faulty.triton_metrics):
        addresses = listening(int(port.rsplit(":", 1)[1]))
        assert addresses and all(is_loopback(a) for a in addresses), (port, addresses)
    addresses = listening(faulty.triton_grpc_port)
    assert addresses and all(is_loopback(a) for a in addresses), addresses


def test_a_model_unloaded_behind_the_gateways_back_is_loaded_again(faulty, photos):
    before = metric(faulty, "rtmserve_model_reloads_total")
    r = httpx.post(f"{faulty.triton_http}/v2/repository/models/pose_pipeline/unload", timeout=30)
    assert r.status_code == 200
    wait_until(lambda: metric(faulty, "rtmserve_model_reloads_total") > before, 30, "a reload")
    wait_until(lambda: faulty.ready(), 60, "readiness")
    assert httpx.post(f"{faulty.http}/v1/pose", content=photos[0], timeout=30).status_code == 200


class ReadinessWatch:
    """/readyz polled from a thread of its own: (time, ready) samples."""

    def __init__(self, svc, load: BackgroundLoad) -> None:
        self.svc, self.load, self.samples = svc, load, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):  # polling period
            self.samples.append((self.load.now(), self.svc.ready()))

    def __enter__(self) -> ReadinessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def went_down_since(self, t: float) -> bool:
        return any(not ok for when, ok in self.samples if when > t)


def _kill_and_recover(svc, load: BackgroundLoad, kill) -> float:
    """Kill, then wait for the service to answer again; seconds from the kill to readiness."""
    wait_until(lambda: svc.ready(), 120, "readiness before the kill")
    with ReadinessWatch(svc, load) as watch:
        t_kill = load.now()
        kill()
        wait_until(lambda: watch.went_down_since(t_kill), 30, "/readyz to report the fault")
        wait_until(lambda: svc.ready(), 180, "/readyz to recover by itself")
    recovered = load.now()
    wait_until(lambda: any(o.status == 200 and o.sent > recovered for o in load.outcomes),
               60, "a request answered after recovery")  # fmt: skip
    return recovered - t_kill


def _steady(load: BackgroundLoad, seconds: float) -> float:
    """ok/s over the next ``seconds``."""
    start = load.now()
    wait_until(lambda: load.now() > start + seconds, seconds + 5, "a measurement window")
    return load.ok_per_s(start, start + seconds)


def _no_request_hung_or_failed_otherwise(load: BackgroundLoad) -> dict[int, int]:
    statuses: dict[int, int] = {}
    for o in load.outcomes:
        statuses[o.status] = statuses.get(o.status, 0) + 1
        assert o.latency_s < TIMEOUT_S + 5, f"a request took {o.latency_s:.1f} s"
    assert set(statuses) <= {200, 503}, statuses  # answered, or told to retry
    return statuses


def test_kill_9_of_tritonserver_under_load_three_times(faulty, photos, capsys):
    restarts = metric(faulty, "rtmserve_triton_restarts_total")
    recoveries, rates = [], []
    with BackgroundLoad(faulty.http, photos, CLIENTS, timeout=TIMEOUT_S + 10) as load:
        for _ in range(3):
            before = _steady(load, 10)
            server = tritonserver(faulty)
            assert server is not None and stubs(faulty)
            took = _kill_and_recover(faulty, load, lambda s=server: os.kill(s.pid, signal.SIGKILL))
            assert orphans(faulty) == [], orphans(faulty)  # the old server's stubs are gone
            after = _steady(load, 10)
            recoveries.append(took)
            rates.append((before, after))
            assert after >= 0.5 * before, f"throughput {after:.2f}/s after vs {before:.2f}/s"
    statuses = _no_request_hung_or_failed_otherwise(load)
    assert metric(faulty, "rtmserve_triton_restarts_total") == restarts + 3
    assert metric(faulty, "rtmserve_triton_last_exit_code") == -signal.SIGKILL
    with capsys.disabled():
        print(
            f"\nkill -9 tritonserver x3 under {CLIENTS} clients: recovery "
            f"{', '.join(f'{t:.1f}' for t in recoveries)} s; images/s before/after "
            f"{', '.join(f'{b:.1f}/{a:.1f}' for b, a in rates)}; answers {statuses}"
        )


def test_kill_9_of_one_python_backend_stub_under_load(faulty, photos, capsys):
    pose_stubs = [p for p in stubs(faulty) if "/rtmserve-pose-n/" in " ".join(p.argv[1:2])]
    assert len(pose_stubs) == 1
    with BackgroundLoad(faulty.http, photos, CLIENTS, timeout=TIMEOUT_S + 10) as load:
        before = _steady(load, 10)
        took = _kill_and_recover(faulty, load, lambda: os.kill(pose_stubs[0].pid, signal.SIGKILL))
        after = _steady(load, 10)
    statuses = _no_request_hung_or_failed_otherwise(load)
    assert after >= 0.5 * before
    live = [p for p in stubs(faulty) if "/rtmserve-pose-n/" in " ".join(p.argv[1:2])]
    assert len(live) == 1 and live[0].pid != pose_stubs[0].pid  # a new stub serves
    assert orphans(faulty) == []
    with capsys.disabled():
        print(
            f"\nkill -9 of the pose model's stub: recovery {took:.1f} s; images/s "
            f"{before:.1f} before, {after:.1f} after; answers {statuses}"
        )
