"""training/: a short real training run, resume determinism, export parity with the served
model, registration with the AP gate, live switch and rollback under load, crash safety.

One module-scoped training run feeds every test: RTMPose with the real RTMDet-nano backbone,
4 short epochs (small input, light augmentation) on 80 % of train_fashion_photos; the other
20 % of its images are the held-back evaluation set.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from service.core.pipeline import run_topdown
from service.core.specs import PoseSpec
from service.metadata import read_record
from service.triton.control import TritonControl
from tests.support.cli import models_cli
from tests.support.paths import MODELS_MIRROR, SHARED
from training.evaluate import evaluate, onnx_estimator, torch_estimator
from training.models.rtmpose import seeded_rtmpose
from training.train import TrainConfig, Trainer

DATA = SHARED / "data" / "train_fashion_photos"
INPUT = (96, 128)
RTMDET = MODELS_MIRROR / "rtmdet-nano_person_320x320_ort-end2end" / "end2end.onnx"
RTMSERVE = str(Path(sys.executable).parent / "rtmserve")
NAME = "custom-pose"


def config(out: Path, **kw) -> TrainConfig:
    base = dict(
        data=[str(DATA)], out=str(out), variant="n", init=f"onnx:{RTMDET}", epochs=4,
        batch_size=32, holdout=0.2, workers=0, threads=2, seed=0, eval_every=100,
        input_size=INPUT, augment="light", lr=4e-3,
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A short training run and what it produced: start/end AP, histories, exports."""
    out = tmp_path_factory.mktemp("train")
    trainer = Trainer(config(out), log=False)
    start = trainer.evaluate()
    history = trainer.fit()
    end = trainer.evaluate()
    onnx_file = out / "model.onnx"
    export = subprocess.run(
        [sys.executable, "-m", "training.export", "--run", str(out / "last.pth"),
         "--output", str(onnx_file)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr[-3000:]
    report = json.loads(export.stdout)
    eval_file = out / "eval.json"
    eval_file.write_text(json.dumps(end.to_dict()))
    return {"trainer": trainer, "start": start, "end": end, "history": history,
            "onnx": onnx_file, "export": report, "eval": eval_file, "out": out}  # fmt: skip


def test_short_training_lowers_the_loss_and_raises_held_back_ap(run):
    losses = [row["loss"] for row in run["history"]]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    assert run["end"].ap > run["start"].ap + 0.05, (run["start"].ap, run["end"].ap)
    metrics = (run["out"] / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 4 and all("samples_per_s" in json.loads(m) for m in metrics)
    print(
        f"\nheld-back AP {run['start'].ap:.4f} -> {run['end'].ap:.4f}; loss {losses[0]:.3f}"
        f" -> {losses[-1]:.3f}"
    )


def _next_batch(trainer: Trainer):
    epoch, start = divmod(trainer.iteration, trainer.iters_per_epoch)
    return next(iter(trainer.loader(epoch, start)))


def test_resume_from_a_checkpoint_takes_the_same_next_step(tmp_path):
    a = Trainer(config(tmp_path / "a", epochs=2, max_iters=3), log=False)
    a.fit()  # stops after 3 iterations, checkpoint in last.pth
    b = Trainer(config(tmp_path / "b", epochs=2, max_iters=3), log=False)
    b.load(tmp_path / "a" / "last.pth")
    assert b.iteration == a.iteration == 3
    loss_a, loss_b = a.train_step(_next_batch(a)), b.train_step(_next_batch(b))
    assert loss_a == loss_b
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                              strict=True):  # fmt: skip
        assert torch.equal(pa, pb), name
    ema_a, ema_b = a.ema.module.state_dict(), b.ema.module.state_dict()
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


def test_export_matches_pytorch_and_the_serving_signature(run):
    report = run["export"]
    assert report["max_abs_diff"] < 1e-3
    assert report["output_shapes"]["simcc_x"][1:] == [17, INPUT[0] * 2]


@pytest.fixture(scope="module")
def registered(service, run, tmp_path_factory):
    """The trained export registered as v1 of a new model in the running service."""
    r = models_cli(service, "register", NAME, str(run["onnx"]), "--eval", str(run["eval"]),
             "--like", "rtmpose-m")  # fmt: skip
    assert r.returncode == 0, r.stderr
    # a worse candidate (seeded random weights), evaluated on the same held-back images
    tmp = tmp_path_factory.mktemp("worse")
    from training.export import export_onnx

    worse = tmp / "worse.onnx"
    export_onnx(seeded_rtmpose("n", 1, INPUT), worse)
    trainer = run["trainer"]
    spec = PoseSpec(input_size=INPUT)
    report = evaluate(trainer.val_dir, (spec, onnx_estimator(worse)), image_ids=trainer.val_ids)
    worse_eval = tmp / "worse.json"
    worse_eval.write_text(json.dumps(report.to_dict()))
    return {"worse": worse, "worse_eval": worse_eval, "worse_ap": report.ap}


def test_served_keypoints_equal_pytorch_on_the_same_crops(service, run, registered):
    model = run["trainer"].ema.module
    spec = PoseSpec(input_size=INPUT)
    ours, theirs = [], []
    for path in sorted((DATA / "images").glob("*.jpg"))[:12]:
        r = httpx.post(f"{service.http}/v1/pose", content=path.read_bytes(),
                       params={"pose_model": NAME}, timeout=120)  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["models"]["pose"] == {"name": NAME, "version": 1, "trained": True,
                                          "warning": None, "role": "live"}  # fmt: skip
        if not body["persons"]:
            continue
        boxes = np.array([[*p["bbox"], p["score"]] for p in body["persons"]], np.float32)
        served = [[[k["x"], k["y"]] for k in p["keypoints"]] for p in body["persons"]]
        local = run_topdown(cv2.imread(str(path)), None, (spec, torch_estimator(model)),
                            boxes=boxes)  # fmt: skip
        ours.append(np.array(served))
        theirs.append(local.keypoints[..., :2])
    dist = np.linalg.norm(np.concatenate(ours) - np.concatenate(theirs), axis=-1)
    assert dist.size > 100 and (dist <= 0.5).mean() >= 0.99, np.percentile(dist, [50, 99])


def test_gate_refuses_a_worse_model_and_leaves_everything_as_it_was(service, run, registered):
    before = (service.repository / NAME / "rtmserve.json").read_text()
    r = models_cli(service, "register", NAME, str(registered["worse"]),
             "--eval", str(registered["worse_eval"]))  # fmt: skip
    assert r.returncode == 3, r.stdout + r.stderr
    assert "refused" in r.stderr and "AP" in r.stderr
    assert registered["worse_ap"] < run["end"].ap
    assert (service.repository / NAME / "rtmserve.json").read_text() == before


class Load:
    """Four clients posting continuously; records (version, status) per response."""

    def __init__(self, service, photos: list[bytes]) -> None:
        self.service, self.photos = service, photos
        self.results: list[list[tuple[int | None, int]]] = [[] for _ in range(4)]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(4)]

    def _client(self, i: int) -> None:
        with httpx.Client(base_url=self.service.http, timeout=120) as c:
            k = i
            while not self.stop.is_set():
                r = c.post("/v1/pose", content=self.photos[k % len(self.photos)],
                           params={"pose_model": NAME, "max_persons": 2})  # fmt: skip
                version = r.json()["models"]["pose"]["version"] if r.status_code == 200 else None
                self.results[i].append((version, r.status_code))
                k += 1

    def count(self) -> int:
        return sum(len(r) for r in self.results)

    def wait_for_more(self, n: int) -> None:
        from rtmserve.launch import wait_until

        target = self.count() + n
        wait_until(lambda: self.count() >= target, 300, f"{n} more responses")


def test_register_and_rollback_switch_live_under_load_with_no_failures(service, run, registered):
    photos = [p.read_bytes() for p in sorted((DATA / "images").glob("*.jpg"))[:8]]
    load = Load(service, photos)
    for t in load.threads:
        t.start()
    try:
        load.wait_for_more(12)
        r = models_cli(service, "register", NAME, str(registered["worse"]), "--eval",
                 str(registered["worse_eval"]), "--force")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "v2 registered" in r.stdout
        load.wait_for_more(12)
        r = models_cli(service, "rollback", NAME, "1")
        assert r.returncode == 0, r.stderr
        load.wait_for_more(12)
    finally:
        load.stop.set()
        for t in load.threads:
            t.join()
    statuses = [s for client in load.results for _, s in client]
    assert statuses and all(s == 200 for s in statuses), sorted(set(statuses))
    for client in load.results:
        versions = [v for v, _ in client]
        changes = [b for a, b in itertools.pairwise(versions) if a != b]
        assert versions[0] == 1 and changes in ([2, 1], [2], []), versions
    seen = [v for client in load.results for v, _ in client]
    assert 2 in seen and seen.count(1) > 0
    record = read_record(service.repository / NAME)
    assert record.serving_version == 1 and record.previous_version == 2
    meta = record.versions[2]
    assert meta["parent_version"] == 1 and meta["forced"] is True
    assert meta["recipe"] is None and meta["ap"] == registered["worse_ap"]
    assert record.versions[1]["recipe"]["variant"] == "n"
    assert len(record.versions[1]["git_commit"]) >= 40


@pytest.mark.parametrize("point", ["staged", "version_dir", "configs", "loaded"])
def test_a_registration_killed_midway_leaves_the_repository_valid(service, run, registered,
                                                                   point):  # fmt: skip
    before = read_record(service.repository / NAME)
    r = models_cli(service, "register", NAME, str(run["onnx"]), "--eval", str(run["eval"]),
             env={"RTMSERVE_CRASH_AT": point})  # fmt: skip
    assert r.returncode == -9, (r.returncode, r.stderr)
    record = read_record(service.repository / NAME)  # parses: never half-written
    assert record.serving_version == before.serving_version
    serving = service.repository / NAME / str(record.serving_version)
    assert (serving / "model.onnx").stat().st_size > 0
    for cfg in (service.repository / NAME).rglob("*.pbtxt"):
        text_format.Parse(cfg.read_text(), model_config_pb2.ModelConfig())
    triton = TritonControl(service.triton_http)
    triton.load(NAME)  # Triton accepts the repository as it was left
    triton.wait_ready(NAME, record.serving_version)
    r = httpx.post(f"{service.http}/v1/pose", content=next((DATA / "images").glob("*.jpg"))
                   .read_bytes(), params={"pose_model": NAME}, timeout=120)  # fmt: skip
    assert r.status_code == 200 and r.json()["models"]["pose"]["version"] == record.serving_version
