"""Where the shared data and models are: ``../shared`` beside the checkout (``RTMSERVE_SHARED``
overrides it)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("RTMSERVE_SHARED", REPO.parent / "shared")).resolve()
MODELS_MIRROR = SHARED / "models"
COCO_VAL = SHARED / "data" / "coco_val_subset"
VIDEOS = SHARED / "data" / "videos"
RTMDET_DIR = MODELS_MIRROR / "rtmdet-nano_person_320x320_ort-end2end"
RTMDET_ONNX = RTMDET_DIR / "end2end.onnx"
POSE_SDK_METADATA = MODELS_MIRROR / "rtmpose-m_aic-coco_256x192_sdk-metadata-only"
YOLOX_COCO80_ONNX = MODELS_MIRROR / "yolox-nano_coco80_416x416_megvii-raw" / "yolox_nano.onnx"
