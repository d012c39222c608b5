"""COCO keypoint AP/AR the way the published RTMPose numbers are computed (mmpose CocoMetric).

Predict on ground-truth boxes (score 1) or on the serving detector's boxes, rescore each
person as box score x mean of its keypoint scores above 0.2, apply OKS-NMS at 0.9 per image,
then pycocotools ``COCOeval(..., "keypoints")`` with the COCO sigmas. Crops, decoding and the
detector all go through ``service.core``: the same code the service runs. The same evaluation
runs against a live server over HTTP (``--server``).

    python -m training.evaluate DATA_DIR --onnx model.onnx [--boxes gt|detector] --out eval.json
    python -m training.evaluate DATA_DIR --server http://localhost:8080 --pose-model NAME
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from service.core.contract import DETECTOR_OUTPUTS, INPUT, POSE_MAX_BATCH, POSE_OUTPUTS, session
from service.core.keypoints import COCO_SIGMAS
from service.core.pipeline import run_topdown
from service.core.specs import DetectorSpec, PoseSpec
from service.core.topdown import box_to_center_scale
from training.dataset import annotation_file, load_instances

Estimate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
KEYPOINT_SCORE_THR = 0.2
OKS_NMS_THR = 0.9


@dataclass
class Prediction:
    image_id: int
    keypoints: np.ndarray  # (K, 3)
    box_score: float
    area: float


@dataclass
class EvalReport:
    ap: float
    ap50: float
    ap75: float
    ap_m: float
    ap_l: float
    ar: float
    boxes: str
    dataset: str
    gt_sha256: str
    images: int
    instances: int
    image_ids: list[int] | None = None  # None: every image of the dataset
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rescore(keypoints: np.ndarray, box_score: float) -> float:
    s = keypoints[:, 2]
    valid = s[s > KEYPOINT_SCORE_THR]
    return float(box_score * (valid.mean() if len(valid) else 0.0))


def oks_iou(
    g: np.ndarray,
    d: np.ndarray,
    area_g: float,
    area_d: np.ndarray,
    sigmas: Sequence[float] = COCO_SIGMAS,
) -> np.ndarray:
    """OKS of one (K, 3) instance against (M, K, 3), ignoring keypoints scored <= 0.2; ``sigmas``:
    the keypoint set's (``service.core.keypoints``)."""
    var = (np.asarray(sigmas) * 2) ** 2
    e = ((d[..., 0] - g[:, 0]) ** 2 + (d[..., 1] - g[:, 1]) ** 2) / var
    e = e / ((area_g + area_d[:, None]) / 2 + np.spacing(1)) / 2
    vis = (g[:, 2] > KEYPOINT_SCORE_THR) & (d[..., 2] > KEYPOINT_SCORE_THR)
    counts = vis.sum(1)
    return np.where(counts > 0, (np.exp(-e) * vis).sum(1) / np.maximum(counts, 1), 0.0)


def oks_nms(
    preds: list[Prediction], scores: list[float], sigmas: Sequence[float] = COCO_SIGMAS
) -> list[int]:
    order = list(np.argsort(scores)[::-1])
    kpts = np.stack([p.keypoints for p in preds]) if preds else np.zeros((0, len(sigmas), 3))
    areas = np.array([p.area for p in preds])
    keep = []
    while order:
        i, rest = order[0], np.array(order[1:], int)
        keep.append(int(i))
        if len(rest) == 0:
            break
        ovr = oks_iou(kpts[i], kpts[rest], areas[i], areas[rest], sigmas)
        order = list(rest[ovr <= OKS_NMS_THR])
    return keep


def coco_results(
    preds: list[Prediction], sigmas: Sequence[float] = COCO_SIGMAS
) -> list[dict[str, Any]]:
    by_image: dict[int, list[int]] = {}
    for i, p in enumerate(preds):
        by_image.setdefault(p.image_id, []).append(i)
    results = []
    for image_id, idx in by_image.items():
        group = [preds[i] for i in idx]
        scores = [rescore(p.keypoints, p.box_score) for p in group]
        for j in oks_nms(group, scores, sigmas):
            results.append({
                "image_id": image_id,
                "category_id": 1,
                "keypoints": [round(float(v), 3) for v in group[j].keypoints.reshape(-1)],
                "score": scores[j],
            })  # fmt: skip
    return results


def coco_keypoint_ap(
    gt_file: Path,
    results: list[dict],
    image_ids: Iterable[int],
    sigmas: Sequence[float] = COCO_SIGMAS,
) -> dict:
    """pycocotools' keypoint AP with the keypoint set's OKS sigmas (COCO's by default; a
    COCO-WholeBody file flattened to 133 keypoints takes the whole-body set's)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ids = sorted(image_ids)
        if not results:
            return dict.fromkeys(("ap", "ap50", "ap75", "ap_m", "ap_l", "ar"), 0.0)
        evaluator = COCOeval(gt, gt.loadRes(results), "keypoints")
        evaluator.params.imgIds = ids
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    s = [max(0.0, float(v)) for v in evaluator.stats]
    return {"ap": s[0], "ap50": s[1], "ap75": s[2], "ap_m": s[3], "ap_l": s[4], "ar": s[5]}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evaluation_images(directory: Path, image_ids: set[int] | None) -> dict[int, Path]:
    coco = json.loads(annotation_file(directory).read_text())
    return {
        im["id"]: directory / "images" / im["file_name"]
        for im in coco["images"]
        if image_ids is None or im["id"] in image_ids
    }


def evaluate(
    directory: str | Path,
    pose: tuple[PoseSpec, Estimate],
    detector: tuple[DetectorSpec, Estimate] | None = None,
    image_ids: set[int] | None = None,
    progress: bool = False,
) -> EvalReport:
    """AP on ``directory`` (COCO format) with GT boxes, or with ``detector`` boxes if given."""
    directory = Path(directory)
    images = evaluation_images(directory, image_ids)
    gt_boxes: dict[int, list[np.ndarray]] = {}
    for inst in load_instances(directory, set(images), skip_flagged=False):
        gt_boxes.setdefault(inst.image_id, []).append(np.append(inst.bbox, 1.0))
    preds: list[Prediction] = []
    for n, (image_id, path) in enumerate(sorted(images.items())):
        if detector is None and image_id not in gt_boxes:
            continue
        image = cv2.imread(str(path))
        boxes = None if detector else np.array(gt_boxes[image_id], np.float32)
        result = run_topdown(image, detector, pose, boxes=boxes)
        preds += predictions(image_id, result.boxes, result.keypoints, pose[0])
        if progress:
            print(f"\r{n + 1}/{len(images)} images", end="", file=sys.stderr)
    report = _report(directory, images, preds, "detector" if detector else "gt")
    report.image_ids = sorted(image_ids) if image_ids is not None else None
    return report


def predictions(image_id: int, boxes: np.ndarray, keypoints: np.ndarray, spec: PoseSpec):
    _, scales = box_to_center_scale(boxes, spec.input_size, spec.bbox_padding)
    return [
        Prediction(image_id, k, float(b[4]), float(np.prod(s)))
        for b, k, s in zip(boxes, keypoints, scales, strict=True)
    ]


def _report(directory: Path, images: dict, preds: list[Prediction], boxes: str) -> EvalReport:
    gt_file = annotation_file(directory)
    stats = coco_keypoint_ap(gt_file, coco_results(preds), images)
    return EvalReport(
        **stats, boxes=boxes, dataset=str(directory), gt_sha256=_sha256(gt_file),
        images=len(images), instances=len(preds),
    )  # fmt: skip


def evaluate_server(
    directory: str | Path,
    url: str,
    pose_model: str | None = None,
    image_ids: set[int] | None = None,
) -> EvalReport:
    """The same evaluation through a running service (its detector, threshold 0)."""
    import httpx

    directory = Path(directory)
    images = evaluation_images(directory, image_ids)
    params: dict[str, Any] = {"score_threshold": 0, "max_persons": 1000}
    if pose_model:
        params["pose_model"] = pose_model
    preds: list[Prediction] = []
    versions = set()
    with httpx.Client(base_url=url, timeout=600) as client:
        for image_id, path in sorted(images.items()):
            r = client.post("/v1/pose", content=path.read_bytes(), params=params)
            r.raise_for_status()
            body = r.json()
            versions.add((body["models"]["pose"]["name"], body["models"]["pose"]["version"]))
            persons = body["persons"]
            if not persons:
                continue
            boxes = np.array([[*p["bbox"], p["score"]] for p in persons], np.float32)
            kpts = np.array(
                [[[k["x"], k["y"], k["score"]] for k in p["keypoints"]] for p in persons],
                np.float32,
            )
            names = tuple(k["name"] for k in persons[0]["keypoints"])
            preds += predictions(image_id, boxes, kpts, PoseSpec(keypoint_names=names))
    report = _report(directory, images, preds, "detector")
    report.image_ids = sorted(image_ids) if image_ids is not None else None
    report.extra["served_by"] = sorted(f"{n} v{v}" for n, v in versions)
    return report


def onnx_estimator(path: str | Path, threads: int = 0) -> Estimate:
    sess = session(Path(path), threads)

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batches = range(0, len(x), POSE_MAX_BATCH)
        out = [sess.run(list(POSE_OUTPUTS), {INPUT: x[i : i + POSE_MAX_BATCH]}) for i in batches]
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])

    return run


def torch_estimator(model) -> Estimate:
    import torch

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        outs = []
        with torch.no_grad():
            for i in range(0, len(x), 64):
                sx, sy = model(torch.from_numpy(x[i : i + 64]).to(device))
                outs.append((sx.float().cpu().numpy(), sy.float().cpu().numpy()))
        model.train(was_training)
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", type=Path, help="COCO-format folder (images/ + keypoints JSON)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", type=Path, help="pose model ONNX (SimCC outputs)")
    src.add_argument("--server", help="URL of a running rtmserve")
    p.add_argument("--input-size", type=int, nargs=2, default=(192, 256), metavar=("W", "H"))
    p.add_argument("--boxes", choices=("gt", "detector"), default="gt")
    p.add_argument("--detector-onnx", type=Path, help="with --boxes detector (RTMDet export)")
    p.add_argument("--pose-model", help="with --server: which pose model to ask for")
    p.add_argument("--out", type=Path, help="write the report as JSON")
    args = p.parse_args(argv)
    if args.server:
        report = evaluate_server(args.data, args.server, args.pose_model)
    else:
        pose = (PoseSpec(input_size=tuple(args.input_size)), onnx_estimator(args.onnx))
        detector = None
        if args.boxes == "detector":
            if not args.detector_onnx:
                p.error("--boxes detector needs --detector-onnx")
            detector = (DetectorSpec(), onnx_detector(args.detector_onnx))
        report = evaluate(args.data, pose, detector, progress=True)
        report.extra["model"] = str(args.onnx)
    text = json.dumps(report.to_dict(), indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def onnx_detector(path: str | Path, threads: int = 0) -> Estimate:
    sess = session(Path(path), threads)
    return lambda x: tuple(sess.run(list(DETECTOR_OUTPUTS), {INPUT: x}))  # type: ignore[return-value]


if __name__ == "__main__":
    sys.exit(main())
