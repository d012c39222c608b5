"""Train (or fine-tune) RTMPose on COCO-format data with the paper's recipe.

    python -m training.train DATA_DIR [DATA_DIR ...] --out runs/NAME --variant t --epochs 60
    python -m training.train DATA_DIR --out runs/NAME --init served:rtmserve-pose-n \\
        --augment none --freeze-bn --lr 1e-4 --epochs 6     # fine-tune the served model

KL SimCC loss, AdamW, warm-up + flat + cosine schedule, EMA weights, two-stage augmentation
(the last epochs weaker), mixed precision on CUDA. Deterministic for a seed: the data order is
a function of (seed, epoch) and each sample's augmentation of (seed, epoch, index), so a run
resumed from a checkpoint takes exactly the step the original run would have taken.
Checkpoints (``last.pth``, ``best.pth``) hold model, EMA, optimiser and position; every epoch
appends a line to ``metrics.jsonl``; the EMA weights are what gets evaluated and exported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from service.core.normalize import to_input_tensor
from service.core.specs import RGB_MEAN, RGB_STD, PoseSpec
from service.progress import progress_bar
from training.augment import NONE, STAGE1, STAGE2, Augment, make_sample
from training.convert import load_weights
from training.dataset import Instance, load_instances, split_images
from training.evaluate import EvalReport, evaluate, torch_estimator
from training.import_onnx import (
    PoseExport,
    check_build_args,
    import_summary,
    inspect_pose_export,
    is_pose_export,
    load_pose_export,
)
from training.init_onnx import init_backbone_from_onnx
from training.loss import kl_discrete_loss
from training.models.rtmpose import (
    DEFAULT_INPUT_SIZE,
    RTMPose,
    build_rtmpose,
    load_official_state_dict,
)
from training.optim import ModelEMA, build_optimizer, lr_factor
from training.served import served_onnx
from training.targets import simcc_targets


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    variant: str | None = None  # None: "t", or the variant of a whole-model --init export
    input_size: tuple[int, int] | None = None  # (w, h); None: (192, 256), or the export's
    # "onnx:FILE" (a whole RTMPose export, or a detector's backbone) | "served:NAME[:VERSION]"
    # (the ONNX a model repository serves) | "checkpoint:FILE" (mmpose)
    init: str | None = None
    model_repository: str | None = None  # for served: (default: the service's)
    epochs: int = 60
    batch_size: int = 64
    lr: float | None = None  # default: 4e-3 per 256 samples, the RTMPose setting
    weight_decay: float = 0.05
    clip_grad: float | None = None  # max gradient norm (stabilises higher learning rates)
    freeze_bn: bool = False  # BN statistics fixed (eval mode): fine-tuning on little data
    warmup_iters: int = 1000
    stage2_epochs: int | None = None  # default: the paper's 30 of 420 epochs, scaled
    augment: str = "strong"  # "strong" (the paper's) | "light" (stage 2 throughout) | "none"
    ema_momentum: float = 0.0002
    holdout: float = 0.0  # fraction of the first dataset's images kept back for evaluation
    val: str | None = None  # another COCO folder to evaluate on each epoch
    seed: int = 0
    workers: int = 2
    threads: int = 0  # torch intra-op threads on CPU (0: torch's default)
    device: str = "auto"
    amp: bool = True
    max_iters: int | None = None  # stop early (smoke runs)
    eval_every: int = 1
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else 4e-3 * self.batch_size / 256

    @property
    def stage2(self) -> int:
        if self.stage2_epochs is not None:
            return self.stage2_epochs
        return max(1, round(self.epochs * 30 / 420)) if self.epochs > 2 else 0


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, optionally starting part-way through (resume)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.epoch, self.start = 0, 0

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g)[self.start :].tolist())

    def __len__(self) -> int:
        return self.n - self.start


class TopDownDataset(Dataset):
    def __init__(self, instances: list[Instance], input_size: tuple[int, int], seed: int) -> None:
        self.instances = instances
        self.input_size = input_size
        self.seed = seed
        self.epoch = 0
        self.augment: Augment = STAGE1

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int):
        inst = self.instances[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = cv2.imread(str(inst.image))
        if image is None:
            raise OSError(f"cannot read {inst.image}")
        crop, kpts, vis = make_sample(
            image, inst.bbox, inst.keypoints, self.input_size, self.augment, rng
        )
        x = to_input_tensor(crop, RGB_MEAN, RGB_STD, to_rgb=True)[0]
        tx, ty, w = simcc_targets(kpts, vis, self.input_size)
        return torch.from_numpy(x), torch.from_numpy(tx), torch.from_numpy(ty), torch.from_numpy(w)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def calibration_crops(
    instances: list[Instance], input_size: tuple[int, int], n: int = 16
) -> torch.Tensor:
    """Un-augmented, normalised crops of real people, spread over ``instances``: what BN
    statistics of an ONNX initialisation are measured on and an import is verified on."""
    crops = []
    for i in range(n):
        inst = instances[(i * 7919) % len(instances)]
        image = cv2.imread(str(inst.image))
        rng = np.random.default_rng(i)
        crop, _, _ = make_sample(image, inst.bbox, inst.keypoints, input_size, NONE, rng)
        crops.append(torch.from_numpy(to_input_tensor(crop, RGB_MEAN, RGB_STD, to_rgb=True)[0]))
    return torch.stack(crops)


def resolve_init(cfg: TrainConfig) -> tuple[TrainConfig, PoseExport | None, dict[str, Any]]:
    """Settle what ``cfg.init`` names before anything is built: a whole RTMPose export fixes
    the variant and input size (a different ``--variant``/``--input-size`` is refused)."""
    kind, _, arg = (cfg.init or "").partition(":")
    export, notes = None, {}
    if kind == "served":
        path, notes = served_onnx(arg, cfg.model_repository)
        export = inspect_pose_export(path)  # a served detector: NotAPoseExportError
    elif kind == "onnx" and is_pose_export(arg):
        export = inspect_pose_export(arg)
    elif cfg.init and kind not in ("onnx", "checkpoint"):
        raise ValueError(
            f"--init must be onnx:FILE, served:NAME[:VERSION] or checkpoint:FILE, got {cfg.init!r}"
        )
    if export is None:
        size = tuple(cfg.input_size or DEFAULT_INPUT_SIZE)
        return replace(cfg, variant=cfg.variant or "t", input_size=size), None, notes
    check_build_args(export, cfg.variant, cfg.input_size)
    return replace(cfg, variant=export.variant, input_size=export.input_size), export, notes


class Trainer:
    def __init__(self, cfg: TrainConfig, log: bool = True) -> None:
        self.cfg, self.init_export, init_notes = resolve_init(cfg)
        cfg = self.cfg
        assert cfg.variant is not None and cfg.input_size is not None
        self.input_size: tuple[int, int] = (int(cfg.input_size[0]), int(cfg.input_size[1]))
        self.log = log
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device)
        self.train_instances, self.val_dir, self.val_ids = self._data()
        self.dataset = TopDownDataset(self.train_instances, self.input_size, cfg.seed)
        self.sampler = EpochSampler(len(self.dataset), cfg.seed)
        self.iters_per_epoch = len(self.dataset) // cfg.batch_size
        if self.iters_per_epoch == 0:
            raise ValueError(f"{len(self.dataset)} instances < batch size {cfg.batch_size}")
        self.total_iters = self.iters_per_epoch * cfg.epochs
        self.warmup = min(cfg.warmup_iters, max(1, self.total_iters // 10))

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            k = self.init_export.num_keypoints if self.init_export else 17
            self.model: RTMPose = build_rtmpose(cfg.variant, self.input_size, k)
        self._initialise(init_notes)
        self.model.to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.base_lr, cfg.weight_decay)
        self.ema = ModelEMA(self.model, cfg.ema_momentum)
        use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        self.autocast = use_amp
        self.iteration = 0
        self.best_ap = -1.0

    # -- set-up ------------------------------------------------------------------------
    def _data(self) -> tuple[list[Instance], Path | None, set[int] | None]:
        cfg = self.cfg
        instances: list[Instance] = []
        val_dir, val_ids = (Path(cfg.val), None) if cfg.val else (None, None)
        train_ids = None
        if cfg.holdout > 0:
            train_ids, val_ids = split_images(cfg.data[0], cfg.holdout, cfg.seed)
            val_dir = Path(cfg.data[0])
        for d in cfg.data:  # a folder listed twice is sampled twice as often
            held_out = val_dir is not None and Path(d).resolve() == val_dir.resolve()
            instances += load_instances(d, train_ids if held_out and train_ids else None)
        return instances, val_dir, val_ids

    def _initialise(self, notes: dict[str, Any]) -> None:
        """Load the starting weights and record what they were in the config's ``notes`` (and
        so in checkpoints, exports and the registered version's recipe)."""
        init = self.cfg.init
        if not init:
            return
        kind, _, path = init.partition(":")
        if self.init_export is not None:
            calibration = calibration_crops(self.train_instances, self.input_size)
            diff = load_pose_export(self.model, self.init_export, calibration)
            notes |= import_summary(self.init_export, diff)
        elif kind == "onnx":
            calibration = calibration_crops(self.train_instances, self.input_size)
            init_backbone_from_onnx(self.model.backbone, path, calibration)
            notes |= {"file": path, "imported": "backbone"}
        else:
            ckpt = load_weights(Path(path))  # someone else's file: never unpickled
            load_official_state_dict(self.model, ckpt)
            notes |= {"file": path, "imported": "whole model"}
        notes["sha256"] = hashlib.sha256(Path(notes["file"]).read_bytes()).hexdigest()
        self.cfg = replace(self.cfg, notes={**self.cfg.notes, "init": {"spec": init, **notes}})

    def _augment_for(self, epoch: int) -> Augment:
        if self.cfg.augment == "none":
            return NONE
        if self.cfg.augment == "light" or epoch >= self.cfg.epochs - self.cfg.stage2:
            return STAGE2
        return STAGE1

    # -- one step ----------------------------------------------------------------------
    def train_step(self, batch) -> float:
        x, tx, ty, w = (t.to(self.device, non_blocking=True) for t in batch)
        factor = lr_factor(self.iteration, self.iters_per_epoch, self.cfg.epochs, self.warmup)
        for g in self.optimizer.param_groups:
            g["lr"] = self.cfg.base_lr * factor
        self.model.train()
        if self.cfg.freeze_bn:  # the imported network's statistics, not each batch's
            for m in self.model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        with torch.autocast(self.device.type, enabled=self.autocast):
            pred = self.model(x)
        loss = kl_discrete_loss(pred, (tx, ty), w)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model)
        self.iteration += 1
        return float(loss.detach())

    def loader(self, epoch: int, start: int = 0) -> DataLoader:
        self.dataset.epoch = epoch
        self.dataset.augment = self._augment_for(epoch)
        self.sampler.epoch, self.sampler.start = epoch, start * self.cfg.batch_size
        return DataLoader(
            self.dataset, self.cfg.batch_size, sampler=self.sampler, drop_last=True,
            num_workers=self.cfg.workers, pin_memory=self.device.type == "cuda",
        )  # fmt: skip

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.cfg),
            "iteration": self.iteration,
            "best_ap": self.best_ap,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def save(self, path: Path) -> None:
        _atomic_save(self.state_dict(), path)

    def load(self, path: Path) -> None:
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.iteration = ckpt["iteration"]
        self.best_ap = ckpt["best_ap"]

    # -- evaluation and the loop -------------------------------------------------------
    def evaluate(self) -> EvalReport | None:
        if self.val_dir is None:
            return None
        spec = PoseSpec(input_size=self.input_size)
        return evaluate(
            self.val_dir, (spec, torch_estimator(self.ema.module)), image_ids=self.val_ids
        )

    def fit(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        history = []
        while self.iteration < self.total_iters:
            epoch, start = divmod(self.iteration, self.iters_per_epoch)
            t0, losses = time.perf_counter(), []
            bar = _progress(
                self.iters_per_epoch - start, f"epoch {epoch + 1}/{cfg.epochs}", self.log
            )
            for batch in self.loader(epoch, start):
                losses.append(self.train_step(batch))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                if cfg.max_iters and self.iteration >= cfg.max_iters:
                    break
            bar.close()
            seconds = time.perf_counter() - t0
            row: dict[str, Any] = {
                "epoch": epoch + 1, "iteration": self.iteration,
                "loss": float(np.mean(losses)) if losses else math.nan,
                "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(seconds, 1),
                "samples_per_s": round(len(losses) * cfg.batch_size / max(seconds, 1e-9), 1),
                "augment": "stage2" if self.dataset.augment is STAGE2 else self.cfg.augment,
            }  # fmt: skip
            last = self.iteration >= self.total_iters or bool(
                cfg.max_iters and self.iteration >= cfg.max_iters
            )
            if self.val_dir is not None and ((epoch + 1) % cfg.eval_every == 0 or last):
                report = self.evaluate()
                assert report is not None
                row["val_ap"], row["val_ar"] = report.ap, report.ar
                if report.ap > self.best_ap:
                    self.best_ap = report.ap
                    self.save(self.out / "best.pth")
            self.save(self.out / "last.pth")
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            if self.log:
                print(json.dumps(row), file=sys.stderr, flush=True)
            history.append(row)
            if last:
                break
        return history


def _progress(total: int, desc: str, enabled: bool):
    """A bar on a terminal, a line every 30 s in logs (``service.progress``), or nothing."""
    if enabled:
        return progress_bar(total, desc, "it", every=30.0)

    class _Null:
        def update(self, *_): ...
        def set_postfix(self, **_): ...
        def close(self): ...

    return _Null()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", nargs="+", help="COCO-format folders (images/ + keypoints JSON)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl)")
    p.add_argument(
        "--variant",
        help="t, s, m, l (RTMPose) or n (RTMDet-nano backbone); default t, or the --init export's",
    )
    p.add_argument(
        "--input-size", type=int, nargs=2, metavar=("W", "H"),
        help="default 192 256, or the --init export's",
    )  # fmt: skip
    p.add_argument(
        "--init",
        help="onnx:FILE: every weight of an RTMPose export (checked against onnxruntime), or the "
        "backbone of a detector's; served:NAME[:VERSION]: the ONNX the model repository serves "
        "for NAME (its serving version by default), imported whole; checkpoint:FILE (mmpose)",
    )
    p.add_argument(
        "--model-repository",
        help="runtime model repository for --init served: (default: the service's, "
        "$RTMSERVE_REPOSITORY or $RTMSERVE_HOME/repository)",
    )
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float)
    p.add_argument("--clip-grad", type=float, help="max gradient norm")
    p.add_argument(
        "--freeze-bn", action="store_true",
        help="keep BN statistics fixed: fine-tuning a whole imported model on a small set",
    )  # fmt: skip
    p.add_argument("--augment", choices=("strong", "light", "none"), default="strong")
    p.add_argument("--stage2-epochs", type=int)
    p.add_argument("--holdout", type=float, default=0.0)
    p.add_argument("--val", help="COCO folder to evaluate on each epoch")
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--max-iters", type=int)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pth")
    a = p.parse_args(argv)
    cfg = TrainConfig(
        data=a.data, out=a.out, variant=a.variant, init=a.init,
        input_size=tuple(a.input_size) if a.input_size else None,
        model_repository=a.model_repository,
        epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, clip_grad=a.clip_grad,
        freeze_bn=a.freeze_bn,
        augment=a.augment,
        stage2_epochs=a.stage2_epochs, holdout=a.holdout, val=a.val, eval_every=a.eval_every,
        seed=a.seed, workers=a.workers, threads=a.threads, device=a.device, amp=not a.no_amp,
        max_iters=a.max_iters,
    )  # fmt: skip
    try:
        trainer = Trainer(cfg)
    except ValueError as exc:  # a wrong --init, --variant or --input-size: say so plainly
        p.error(str(exc))
    if a.resume:
        trainer.load(Path(a.out) / "last.pth")
    trainer.fit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
