"""deploy/gpu_smoke.py, what a GPU machine runs after ``docker compose up``, runs here against
the CPU service and finds it correct: the same script, the same checks."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.paths import COCO_VAL, REPO


def test_the_gpu_smoke_script_passes_on_the_cpu_service(service, tmp_path, capsys):
    out = tmp_path / "smoke.json"
    cmd = [
        sys.executable, str(REPO / "deploy" / "gpu_smoke.py"),
        "--url", service.http, "--grpc", f"127.0.0.1:{service.grpc_port}",
        "--triton-http", service.triton_http, "--repository", str(service.repository),
        "--images", str(COCO_VAL / "images"), "--out", str(out),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
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
