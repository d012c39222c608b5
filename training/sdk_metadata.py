"""MMDeploy SDK metadata for an exported pose model: an official SDK folder's ``deploy.json`` /
``pipeline.json`` / ``detail.json`` with this model's ONNX and input size, so the official
``mmdeploy_runtime.PoseDetector`` runs it (the fidelity tests' and the benchmarks' reference).
The SDK reads the keypoint count from the model's outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def sdk_pose_dir(template: Path, onnx: Path, input_size: tuple[int, int], out: Path) -> Path:
    """``template``: an official RTMPose SDK folder (its ``end2end.onnx`` is replaced);
    ``input_size``: (width, height)."""
    shutil.copytree(template, out, dirs_exist_ok=True)
    shutil.copyfile(onnx, out / "end2end.onnx")
    pipeline = json.loads((out / "pipeline.json").read_text())
    for task in pipeline["pipeline"]["tasks"]:
        for transform in task.get("transforms", []):
            if "image_size" in transform:
                transform["image_size"] = list(input_size)
        if "input_size" in task.get("params", {}):
            task["params"]["input_size"] = list(input_size)
    (out / "pipeline.json").write_text(json.dumps(pipeline))
    return out
