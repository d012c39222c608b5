"""Run the official MMDeploy SDK (mmdeploy-runtime 1.3.1) on images: the fidelity reference.

Runs as its own process (``python -m tests.sdk_reference IN.npz OUT.npz``): the SDK crashes
the process instead of raising when a model does not suit it, and that must fail one test,
not end the test session.

IN holds ``paths`` (image files), ``boxes`` (all images' person boxes, concatenated) and
``counts`` (boxes per image); OUT gets the SDK's own detections (``dets``, ``det_counts``)
and its keypoints for the given boxes (``keypoints``).
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
from mmdeploy_runtime import Detector, PoseDetector


def main(detector_dir: str, pose_dir: str, inp: str, out: str) -> None:
    data = np.load(inp, allow_pickle=False)
    detector = Detector(model_path=detector_dir, device_name="cpu", device_id=0)
    pose = PoseDetector(model_path=pose_dir, device_name="cpu", device_id=0)
    dets, det_counts, keypoints = [], [], []
    offset = 0
    for path, count in zip(data["paths"], data["counts"], strict=True):
        image = cv2.imread(str(path))
        found, _, _ = detector(image)
        dets.append(found.reshape(-1, 5))
        det_counts.append(len(found))
        boxes = data["boxes"][offset : offset + count, :4].astype(np.float32)
        offset += count
        if count:
            # The SDK's C API takes inclusive pixel boxes (width = right - left + 1); mmpose
            # boxes are exclusive, so hand it right - 1 / bottom - 1 for the same crop.
            sdk_boxes = boxes - np.array([0, 0, 1, 1], np.float32)
            keypoints.append(pose(image, sdk_boxes).reshape(count, -1, 3))
    np.savez(
        out,
        dets=np.concatenate(dets) if dets else np.zeros((0, 5), np.float32),
        det_counts=np.array(det_counts),
        keypoints=np.concatenate(keypoints) if keypoints else np.zeros((0, 17, 3), np.float32),
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
