"""deploy/gpu_smoke.py, what a GPU machine runs after ``docker compose up``, runs here against
the CPU service and finds it correct: the same script, the same checks. From the host it needs
nothing but the published ports (its own photos); what goes wrong is one line, not a trace."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rtmserve.launch import free_port
from tests.support.paths import COCO_VAL, REPO

SMOKE = REPO / "deploy" / "gpu_smoke.py"
pytestmark = pytest.mark.slow


def smoke(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SMOKE), *args], capture_output=True, text=True,
                          timeout=900, cwd=cwd)  # fmt: skip


def test_the_gpu_smoke_script_passes_on_the_cpu_service(service, tmp_path, capsys):
    out = tmp_path / "smoke.json"
    run = smoke(
        "--url", service.http, "--grpc", f"127.0.0.1:{service.grpc_port}",
        "--triton-http", service.triton_http, "--repository", str(service.repository),
        "--images", str(COCO_VAL / "images"), "--out", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["failures"] == []
    assert report["0 people"]["persons"] == 0 and report["1 person"]["persons"] == 1
    assert report["crowd"]["persons"] >= 20
    for case in ("0 people", "1 person", "crowd"):  # the CPU path is the reference itself
        assert report[case]["keypoints_within_tolerance"] == 1.0
    assert report["stream_frames"] == 60
    assert report["backends"]["rtmdet-nano"]["tensorrt"] is False  # the embedded CPU server
    with capsys.disabled():
        print(f"\ngpu_smoke on the CPU service: {json.dumps(report)}")


def test_from_the_host_it_needs_only_the_published_ports(service, tmp_path):
    """As the README runs it after ``docker compose up``: no repository, no photos given (the
    bundled ones), from another working directory."""
    run = smoke("--url", service.http, "--grpc", f"127.0.0.1:{service.grpc_port}", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_smoke.json").read_text())
    assert report["reference"].startswith("none")
    assert report["0 people"]["persons"] == 0 and report["1 person"]["persons"] == 1
    assert report["crowd"]["persons"] >= 20
    assert all(report[c]["repeatable"] for c in ("0 people", "1 person", "crowd"))
    assert report["stream_frames"] == 60 and report["failures"] == []


def test_what_goes_wrong_is_said_in_one_line(service, tmp_path):
    closed = smoke("--url", f"http://127.0.0.1:{free_port()}", "--wait", "0", cwd=tmp_path)
    assert closed.returncode == 1 and "Traceback" not in closed.stderr
    assert closed.stderr.startswith("gpu_smoke: not ready after 0 s: cannot reach")
    empty = tmp_path / "photos"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photos here")
    run = smoke("--url", service.http, "--images", str(empty), cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "holds 0 readable photo(s)" in run.stderr
