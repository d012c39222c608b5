"""Candidates on trial in a real service under load from 4 clients: shadow copies off the
response path (their share, their agreement, a failing and a hung candidate), canary shares
(per request, and whole streams), promote and drop with zero failed requests, and the rule
that ends a trial by itself.

The live model is the shipped ``rtmserve-pose-n`` (v1). Candidates: v2 the same ONNX (an
identical candidate), v3 seeded random weights of the same architecture (a worse one), v4 the
shipped network with a Gather out of range before ``simcc_x`` (it raises on every request).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import threading
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from rtmserve.launch import start_service, wait_until
from service.metadata import read_record
from tests.support.cli import models_cli
from tests.support.load import Outcome, closed_loop
from tests.support.paths import MODELS_MIRROR, REPO
from tests.support.procs import stubs
from tests.support.prometheus import (
    dashboard_queries,
    grafana_expand,
    service_targets,
    start_prometheus,
)
from tests.support.streaming import clip_images, write_video
from training.export import export_onnx
from training.models.rtmpose import seeded_rtmpose

NAME = "rtmserve-pose-n"
SHIPPED = REPO / "models" / NAME / "model.onnx"
CLIENTS = 4
COPY_TIMEOUT_S = 5.0
pytestmark = pytest.mark.slow


def failing_onnx(src: Path, dst: Path) -> None:
    """The shipped network, plus a Gather at index 10000 of the bins axis feeding simcc_x:
    same signature, so it registers and loads, and every inference raises."""
    model = onnx.load(str(src))
    node = next(n for n in model.graph.node if "simcc_x" in n.output)
    node.output[list(node.output).index("simcc_x")] = "simcc_x_raw"
    model.graph.initializer.append(numpy_helper.from_array(np.array([10000], np.int64), "oob"))
    model.graph.node.extend([
        helper.make_node("Gather", ["simcc_x_raw", "oob"], ["simcc_x_oob"], axis=2),
        helper.make_node("Add", ["simcc_x_raw", "simcc_x_oob"], ["simcc_x"]),
    ])  # fmt: skip
    onnx.save(model, str(dst))


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    home = tmp_path_factory.mktemp("trials-home")
    s = start_service(home, MODELS_MIRROR, {
        "RTMSERVE_POSE_MODEL": NAME,
        "RTMSERVE_TRIAL_COPY_TIMEOUT_S": str(COPY_TIMEOUT_S),
        "RTMSERVE_TRIAL_FLUSH_S": "0.2",
    })  # fmt: skip
    try:
        files = tmp_path_factory.mktemp("candidates")
        shutil.copyfile(SHIPPED, files / "same.onnx")
        export_onnx(seeded_rtmpose("n", 1, (96, 128)), files / "worse.onnx")
        failing_onnx(SHIPPED, files / "failing.onnx")
        for i, f in enumerate(("same", "worse", "failing"), start=2):
            r = models_cli(s, "register", NAME, str(files / f"{f}.onnx"), "--hold")
            assert r.returncode == 0, r.stdout + r.stderr
            assert f"{NAME} v{i} registered and held" in r.stdout, r.stdout
        yield s
    finally:
        code = s.stop()
    assert code == 0, s.log_tail()


@pytest.fixture(scope="module")
def bodies(coco_images) -> list[bytes]:
    return [p.read_bytes() for p in coco_images[:24]]


def load(svc, bodies, count: int) -> list[Outcome]:
    return asyncio.run(closed_loop(svc.http, bodies, CLIENTS, 0, timeout=60, count=count))


def trial_of(svc) -> dict | None:
    models = httpx.get(f"{svc.http}/v1/models", timeout=30).json()["models"]
    return next(m for m in models if m["name"] == NAME)["trial"]


def settled(svc, copies: int) -> dict:
    """The trial's figures once every copy due for ``copies`` picks has an outcome (copies
    finish after their clients' answers; the figures are written every 0.2 s)."""

    def done() -> bool:
        f = trial_of(svc)["figures"]
        return f["compared"] + f["failed"] + f["skipped"] + f["empty"] >= copies

    wait_until(done, 60, f"{copies} copies to settle")
    return trial_of(svc)["figures"]


def cli(svc, *args: str) -> str:
    """An operator's command; a trial it starts is running on the gateway when it returns."""
    r = models_cli(svc, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    if args[0] in ("shadow", "canary"):  # the gateway routes once its keeper saw it loaded
        wait_until(lambda: (trial_of(svc) or {}).get("running"), 30, "the trial to run")
    return r.stdout


def all_ok(outcomes: list[Outcome]) -> None:
    statuses = {o.status for o in outcomes}
    assert statuses == {200}, statuses


def test_copies_run_on_a_low_priority_pipeline_of_their_own(svc):
    def nice(pid: int) -> int:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])

    copy = [p for p in stubs(svc) if "/pose_pipeline_copy/" in p.argv[1]]
    live = [p for p in stubs(svc) if "/pose_pipeline/" in p.argv[1]]
    assert len(copy) == 1 and len(live) == 4
    assert nice(copy[0].pid) == 10 and {nice(p.pid) for p in live} == {0}


def test_identical_shadow_gets_its_share_and_agrees(svc, bodies):
    cli(svc, "shadow", NAME, "2", "--share", "0.25")
    models = httpx.get(f"{svc.http}/v1/models").json()["models"]
    versions = {v["version"]: v for v in next(m for m in models if m["name"] == NAME)["versions"]}
    assert versions[2]["meta"]["state"] == "shadow" and versions[2]["ready"]
    outcomes = load(svc, bodies, 80)
    all_ok(outcomes)
    assert {o.pose for o in outcomes} == {(1, "live")}  # a shadow never answers
    f = settled(svc, 20)
    # exactly a quarter of 80 picked; at most 10 % skipped (a full queue); "empty": the
    # detector found nobody, so there was nothing to compare
    assert f["compared"] + f["failed"] + f["skipped"] + f["empty"] == 20, f
    assert f["failed"] == 0 and f["skipped"] <= 2 and f["compared"] >= 10, f
    assert f["agreement_oks"] >= 0.999 and f["mean_person_diff"] == 0, f
    metrics = httpx.get(f"{svc.http}/metrics").text
    series = f'mode="shadow",model="{NAME}",outcome="compared",version="2"'
    assert f"rtmserve_trial_copies_total{{{series}}}" in metrics
    print(f"\nidentical shadow, share 0.25 of 80 requests: {f}")


def test_worse_shadow_reads_lower_agreement(svc, bodies):
    cli(svc, "drop", NAME)
    assert read_record(svc.repository / NAME).versions[2]["trials"][-1]["compared"] >= 10
    cli(svc, "shadow", NAME, "3", "--share", "0.5")
    all_ok(load(svc, bodies, 40))
    f = settled(svc, 20)
    assert f["compared"] >= 10 and f["agreement_oks"] < 0.5, f
    print(f"\nworse shadow (seeded weights): {f}")


def test_a_failing_shadow_leaves_every_client_request_successful(svc, bodies):
    cli(svc, "drop", NAME)
    cli(svc, "shadow", NAME, "4", "--share", "0.5")
    outcomes = load(svc, bodies, 40)
    all_ok(outcomes)
    assert {o.pose for o in outcomes} == {(1, "live")}
    f = settled(svc, 20)
    assert f["compared"] == 0 and f["failed"] >= 10, f


def test_a_hung_shadow_leaves_every_client_request_successful(svc, bodies):
    cli(svc, "drop", NAME)
    cli(svc, "shadow", NAME, "2", "--share", "0.5")
    (copy,) = [p for p in stubs(svc) if "/pose_pipeline_copy/" in p.argv[1]]
    os.kill(copy.pid, signal.SIGSTOP)  # the copy pipeline freezes
    try:
        outcomes = load(svc, bodies, 40)
        # Triton finds the frozen stub unhealthy within about a second and fails its
        # requests; a copy it had not failed yet times out and pauses the trial
        f = settled(svc, 20)
    finally:
        os.kill(copy.pid, signal.SIGCONT)
    all_ok(outcomes)
    assert f["compared"] == 0 and f["failed"] + f["skipped"] + f["empty"] == 20, f
    assert f["failed"] >= 1, f
    # Triton keeps a stub it once found unhealthy failed for good: the keeper reloads the
    # copy pipeline, and copies compare again
    all_ok(load(svc, bodies, 40))

    def comparing() -> bool:
        all_ok(load(svc, bodies, 8))
        return trial_of(svc)["figures"]["compared"] > 0

    wait_until(comparing, 120, "copies to compare again")


def test_canary_answers_its_share_and_whole_streams(svc, bodies):
    cli(svc, "drop", NAME)
    cli(svc, "canary", NAME, "2", "--share", "0.25")
    outcomes = load(svc, bodies, 40)
    all_ok(outcomes)
    answered = [o.pose for o in outcomes]
    assert answered.count((2, "canary")) == 10 and answered.count((1, "live")) == 30
    video = write_video(clip_images(4), "mp4", "libx264")
    per_stream = []
    for _ in range(4):
        r = httpx.post(f"{svc.http}/v1/pose/video", content=video, timeout=120)
        assert r.status_code == 200, r.text
        frames = [json.loads(line) for line in r.text.splitlines()]
        per_stream.append({(x["models"]["pose"]["version"], x["models"]["pose"]["role"])
                           for x in frames})  # fmt: skip
    assert sorted(map(sorted, per_stream)) == [[(1, "live")]] * 3 + [[(2, "canary")]]
    f = settled(svc, 14)  # every canary answer (10 images, 4 frames) was copied to live
    assert f["failed"] == 0 and f["compared"] >= 5 and f["agreement_oks"] >= 0.999, f


def test_the_trial_panels_show_the_candidate_against_the_live_version(svc, bodies, tmp_path):
    """The dashboard's trial row, queried from a real Prometheus scraping the service while
    the canary above runs: both versions' answers, agreement, pose-time p95s, copies."""
    prometheus = start_prometheus(tmp_path / "prometheus", service_targets(svc), "1s")
    try:
        queries = [grafana_expand(q) for q in dashboard_queries(trial=True)]
        assert len(queries) >= 6

        def empty() -> list[str]:
            return [q for q in queries if not prometheus.query(q)]

        for _ in range(30):  # rates need two scrapes with traffic between them
            all_ok(load(svc, bodies, 8))
            if not empty():
                break
        assert empty() == []
        answers = prometheus.query(grafana_expand(dashboard_queries(trial=True)[0]))
        roles = {(s["metric"]["version"], s["metric"]["role"]) for s in answers}
        assert {("1", "live"), ("2", "canary")} <= roles
    finally:
        prometheus.stop()


def test_promote_under_load_switches_everyone_with_no_failed_request(svc, bodies):
    result: list[list[Outcome]] = []
    loader = threading.Thread(target=lambda: result.append(load(svc, bodies, 160)))
    loader.start()
    cli(svc, "promote", NAME)
    loader.join()
    (outcomes,) = result
    all_ok(outcomes)
    record = read_record(svc.repository / NAME)
    assert record.serving_version == 2 and record.candidate is None
    assert record.versions[2]["trials"][-1]["outcome"] == "promoted"
    tail = [o.pose for o in load(svc, bodies, 20)]
    assert set(tail) == {(2, "live")}
    poses = [o.pose for o in outcomes]
    counts = {p: poses.count(p) for p in set(poses)}
    print(f"\npromote under load: {len(outcomes)} requests, answered by {counts}")


def test_drop_returns_everyone_to_the_live_version(svc, bodies):
    cli(svc, "canary", NAME, "3", "--share", "0.5")
    answered = {o.pose for o in load(svc, bodies, 20)}
    assert answered == {(2, "live"), (3, "canary")}
    cli(svc, "drop", NAME)
    assert {o.pose for o in load(svc, bodies, 20)} == {(2, "live")}
    assert read_record(svc.repository / NAME).versions[3]["state"] == "dropped"


def wait_for_end(svc, bodies, version: int) -> dict:
    """Load until the rule ends the trial of ``version``; its record entry."""
    for _ in range(30):
        all_ok(load(svc, bodies, 20))
        meta = read_record(svc.repository / NAME).versions[version]
        ended = meta.get("trials") and meta["trials"][-1].get("reason", "").startswith("rule")
        if ended and trial_of(svc) is None:
            return meta["trials"][-1]
    raise AssertionError(f"the rule never ended the trial: {trial_of(svc)}")


def test_the_rule_promotes_an_identical_candidate_and_drops_a_worse_one(svc, bodies):
    rule = ("--auto", "--min-agreement", "0.99", "--max-p95-ratio", "10", "--min-requests", "20")
    cli(svc, "shadow", NAME, "1", "--share", "0.5", *rule)
    promoted = wait_for_end(svc, bodies, 1)
    assert promoted["outcome"] == "promoted" and promoted["compared"] >= 20, promoted
    assert read_record(svc.repository / NAME).serving_version == 1
    cli(svc, "canary", NAME, "3", "--share", "0.5", *rule)
    ended = wait_for_end(svc, bodies, 3)
    assert ended["outcome"] == "dropped" and ended["agreement_oks"] < 0.5, ended
    assert read_record(svc.repository / NAME).serving_version == 1
    print(f"\nrule: identical {promoted['reason']}; worse {ended['reason']}")
