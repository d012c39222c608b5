"""``rtmserve fleet`` as a user runs it: it serves, its supervisor's metrics answer, and Ctrl-C
(SIGINT to the whole process group, as a terminal sends it: the replicas and Envoy get it too)
stops everything it started, with none of them restarted on the way out and nothing left."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from rtmserve.launch import RTMSERVE, free_port, wait_until
from tests.support.paths import MODELS_MIRROR


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def left_behind(work: Path) -> list[str]:
    """Live processes whose command line names the fleet's folder (Envoy, Triton, stubs)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(work) in text:
            found.append(text[:120])
    return found


@pytest.mark.slow
def test_ctrl_c_stops_the_whole_fleet_and_leaves_nothing(tmp_path):
    work, http, metrics = tmp_path / "fleet", free_port(), free_port()
    env = {**os.environ, "RTMSERVE_MODEL_MIRROR": str(MODELS_MIRROR), "RTMSERVE_OFFLINE": "1",
           "RTMSERVE_ALLOW_UNTRAINED": "1"}  # fmt: skip
    cmd = [RTMSERVE, "fleet", "--replicas", "1", "--port", str(http), "--grpc-port",
           str(free_port()), "--metrics-port", str(metrics), "--work", str(work)]  # fmt: skip
    with open(tmp_path / "fleet.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{metrics}/metrics"), 300, "the fleet")
        assert answers(f"http://127.0.0.1:{http}/readyz")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the fleet, its replica and Envoy at once
        assert proc.wait(120) == 0, (tmp_path / "fleet.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = (tmp_path / "fleet.log").read_text()
    assert "restart" not in output and "starting" not in output, output[-3000:]
    assert left_behind(work) == []
