"""The pre/post-processing conventions, checked against their definitions and the MMDeploy SDK."""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from service.core.letterbox import Letterbox, detector_input, detector_output, letterbox
from service.core.normalize import to_input_tensor
from service.core.simcc import decode, simcc_maximum
from service.core.specs import DetectorSpec, PoseSpec, spec_from_dict
from service.core.topdown import affine_crop, box_to_center_scale, sdk_crop, warp_matrix
from tests.support.paths import COCO_VAL, MODELS_MIRROR

RTMDET = MODELS_MIRROR / "rtmdet-nano_person_320x320_ort-end2end"


@pytest.mark.parametrize("w,h", [(640, 429), (429, 640), (320, 320), (1000, 10), (100, 80)])
def test_letterbox_resizes_like_the_sdk_and_pads_bottom_right(w, h):
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    canvas, box = letterbox(image, (320, 320), 114)
    s = np.float32(min(320 / max(h, w), 320 / min(h, w)))
    dw, dh = int(np.float32(w) * s + np.float32(0.5)), int(np.float32(h) * s + np.float32(0.5))
    assert canvas.shape == (320, 320, 3)
    assert (box.scale_x, box.scale_y) == (dw / w, dh / h)
    expected = (
        cv2.resize(image, (dw, dh), interpolation=cv2.INTER_LINEAR) if (dw, dh) != (w, h) else image
    )
    assert np.array_equal(canvas[:dh, :dw], expected)
    assert (canvas[dh:] == 114).all() and (canvas[:, dw:] == 114).all()


def test_detector_boxes_map_back_and_clip_to_the_image():
    spec = DetectorSpec()
    box = Letterbox(scale_x=0.5, scale_y=0.25, width=100, height=200)
    dets = np.array([[10, 10, 20, 20, 0.9], [-4, -4, 80, 90, 0.6], [0, 0, 5, 5, 0.05]], np.float32)
    out = detector_output(dets, np.zeros(3, np.int64), box, spec)
    assert out.shape == (2, 5)  # score must be strictly above the 0.05 floor
    np.testing.assert_allclose(out[0], [20, 40, 40, 80, 0.9], rtol=1e-6)
    np.testing.assert_allclose(out[1], [0, 0, 99, 199, 0.6], rtol=1e-6)  # clipped to W-1, H-1


def test_center_scale_pads_and_fixes_the_aspect_ratio():
    boxes = np.array([[10, 20, 110, 420], [0, 0, 300, 100]], np.float32)
    center, scale = box_to_center_scale(boxes, (192, 256), 1.25)
    np.testing.assert_allclose(center, [[60, 220], [150, 50]])
    np.testing.assert_allclose(scale[:, 0] / scale[:, 1], 0.75, rtol=1e-6)
    np.testing.assert_allclose(scale[0], [400 * 1.25 * 0.75, 400 * 1.25])  # tall: width grows
    np.testing.assert_allclose(scale[1], [300 * 1.25, 300 * 1.25 / 0.75])  # wide: height grows


def test_warp_maps_the_scaled_box_onto_the_model_input():
    center, scale = np.array([60.0, 220.0], np.float32), np.array([375.0, 500.0], np.float32)
    m = warp_matrix(center, scale, (192, 256))
    corners = np.array([[[60 - 187.5, 220 - 250], [60 + 187.5, 220 + 250], [60, 220]]], np.float32)
    np.testing.assert_allclose(
        cv2.transform(corners, m)[0], [[0, 0], [192, 256], [96, 128]], atol=1e-3
    )


def test_affine_crop_fills_outside_pixels_with_zero():
    image = np.full((50, 50, 3), 200, np.uint8)
    center, scale = np.array([25.0, 25.0], np.float32), np.array([150.0, 200.0], np.float32)
    out = affine_crop(image, center, scale, (192, 256))
    assert out.shape == (256, 192, 3)
    assert out[0, 0].tolist() == [0, 0, 0] and out[128, 96].tolist() == [200, 200, 200]


def test_normalisation_matches_its_formula():
    images = np.random.default_rng(1).integers(0, 255, (2, 8, 6, 3), dtype=np.uint8)
    spec = PoseSpec()
    x = to_input_tensor(images, spec.mean, spec.std, to_rgb=True)
    mean, std = np.float32(spec.mean), np.float32(spec.std)
    ref = ((images[..., ::-1].astype(np.float32) - mean) / std).transpose(0, 3, 1, 2)
    assert x.shape == (2, 3, 8, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x, ref, rtol=1e-6)


def test_simcc_decode_takes_argmax_min_score_and_maps_to_the_image():
    sx = np.full((1, 2, 384), -1.0, np.float32)
    sy = np.full((1, 2, 512), -1.0, np.float32)
    sx[0, 0, 100], sy[0, 0, 300] = 0.9, 0.6  # keypoint 0: score min(0.9, 0.6)
    sx[0, 1, 10], sy[0, 1, 20] = 0.5, -0.2  # keypoint 1: score <= 0 -> location -1
    locs, scores = simcc_maximum(sx, sy)
    np.testing.assert_allclose(scores, [[0.6, -0.2]], rtol=1e-6)
    np.testing.assert_array_equal(locs, [[[100, 300], [-1, -1]]])
    center, scale = np.array([[96.0, 128.0]]), np.array([[192.0, 256.0]])  # crop == image
    kpts = decode(sx, sy, center, scale, (192, 256), 2.0)
    np.testing.assert_allclose(kpts[0, 0], [50, 150, 0.6], rtol=1e-6)
    np.testing.assert_allclose(kpts[0, 1, :2], [-0.5, -0.5], rtol=1e-6)


def test_spec_round_trips_through_json_dicts():
    for spec in (DetectorSpec(input_size=(416, 416)), PoseSpec(input_size=(288, 384))):
        assert spec_from_dict(spec.to_dict()) == spec


def test_detector_pipeline_equals_the_mmdeploy_sdk():
    sdk = pytest.importorskip("mmdeploy_runtime")
    detector = sdk.Detector(model_path=str(RTMDET), device_name="cpu", device_id=0)
    session = ort.InferenceSession(str(RTMDET / "end2end.onnx"), providers=["CPUExecutionProvider"])
    spec = DetectorSpec()
    for path in sorted((COCO_VAL / "images").glob("*.jpg"))[:8]:
        image = cv2.imread(str(path))
        tensor, box = detector_input(image, spec)
        dets, labels = session.run(None, {"input": tensor})
        ours = detector_output(dets[0], labels[0], box, spec)
        theirs, _, _ = detector(image)
        assert ours.shape == theirs.shape, path.name
        # onnxruntime 1.31 here vs the SDK's bundled 1.15: float noise of a few hundredths px
        np.testing.assert_allclose(ours[:, :4], theirs[:, :4], atol=0.05, err_msg=path.name)
        np.testing.assert_allclose(ours[:, 4], theirs[:, 4], atol=1e-4, err_msg=path.name)


def test_sdk_crop_keeps_the_geometry_decoding_relies_on():
    """A pixel of the image lands where the corrected center/scale say it does."""
    image = np.zeros((300, 400, 3), np.uint8)
    image[120:124, 200:204] = 255  # a 4x4 white square centred at (202, 122) (pixel centres)
    center, scale = box_to_center_scale(np.array([[150, 40, 260, 250]]), (192, 256))
    out, c, s = sdk_crop(image, center[0], scale[0], (192, 256))
    ys, xs = np.nonzero(out[..., 0] > 0)
    weights = out[ys, xs, 0].astype(np.float64)
    centroid = np.array([np.average(xs, weights=weights), np.average(ys, weights=weights)])
    back = centroid * s / np.array([192, 256]) + c - s * 0.5  # SimCC decode's mapping
    np.testing.assert_allclose(back, [202.0, 122.0], atol=0.6)


def test_sdk_crop_matches_mmdeploy_center_and_scale_for_any_box():
    sdk = pytest.importorskip("mmdeploy_runtime")
    transforms = [
        {"type": "LoadImageFromFile"},
        {"type": "TopDownGetBboxCenterScale", "padding": 1.25, "image_size": [192, 256]},
        {"type": "TopDownAffine", "image_size": [192, 256]},
        {"type": "Collect", "keys": ["img"], "meta_keys": ["center", "scale"]},
    ]
    task = {
        "type": "Task",
        "module": "Transform",
        "name": "Preprocess",
        "input": ["img"],
        "output": ["prep"],
        "transforms": transforms,
    }
    config = {"type": "Pipeline", "input": ["img"], "output": ["prep"], "tasks": [task]}
    pipeline = sdk.Pipeline(config, sdk.Context(sdk.Device("cpu")))
    image = cv2.imread(str(COCO_VAL / "images" / "000000196141.jpg"))
    rng = np.random.default_rng(0)
    for _ in range(200):  # boxes inside, across and outside the image edges
        x1, y1, w, h = rng.uniform(-100, 600), rng.uniform(-100, 400), *rng.uniform(5, 400, 2)
        box = np.array([x1, y1, x1 + w, y1 + h], np.float32)
        xywh = [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1]), 1.0]
        meta = pipeline({"ori_img": image, "bbox": xywh, "rotation": 0.0})[0]["img_metas"]
        center, scale = box_to_center_scale(box[None], (192, 256))
        _, c, s = sdk_crop(image, center[0], scale[0], (192, 256))
        if np.isnan(meta["center"]).any():  # box wholly outside: the SDK divides 0 by 0
            assert np.array_equal(c, center[0]) and np.array_equal(s, scale[0])
            continue
        np.testing.assert_allclose(c, meta["center"], atol=1e-3)
        np.testing.assert_allclose(s, np.float32(meta["scale"]) * 200, atol=1e-3)
