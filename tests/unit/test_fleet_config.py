"""The fleet's Envoy configuration is one the real Envoy accepts (``--mode validate``), and the
supervisor's backoff doubles up to its cap; what both do under kill -9: e2e/test_fleet_lb.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from rtmserve.fleet import envoy_binary, envoy_config
from rtmserve.launch import ServiceProcess
from rtmserve.supervise import Backoff


def replica(home: Path, base: int) -> ServiceProcess:
    url = lambda port: f"http://127.0.0.1:{port}"  # noqa: E731
    return ServiceProcess(None, home, url(base), base + 1, url(base + 2), base + 3,  # type: ignore[arg-type]
                          url(base + 4), home / "serve.log")  # fmt: skip


def test_envoy_accepts_the_generated_configuration(tmp_path):
    config = envoy_config(10080, 10051, 10090, [replica(tmp_path, 20000), replica(tmp_path, 20010)],
                          tmp_path)  # fmt: skip
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    run = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Deprecated" not in run.stdout + run.stderr


def test_backoff_doubles_up_to_its_cap():
    backoff = Backoff(base_s=1.0, cap_s=10.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
