"""The YOLOX COCO-80 detector (Megvii's raw head, ``service.core.yolox``) against an independent
reference (``tests/support/yolox_reference.py``: Megvii's ONNX demo) on the real yolox_nano.onnx
and the 110 COCO photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from service.core.contract import YOLOX_INPUT, check_onnx_signature, session
from service.core.yolox import yolox_input, yolox_output
from service.models.catalogue import ANIMAL_DETECTOR, CATALOGUE, COCO_ANIMALS
from tests.support.paths import YOLOX_COCO80_ONNX
from tests.support.yolox_reference import megvii_detect, megvii_preproc

SPEC = CATALOGUE[ANIMAL_DETECTOR].spec
pytestmark = pytest.mark.skipif(not YOLOX_COCO80_ONNX.is_file(), reason="staged models")


@pytest.fixture(scope="module")
def sess():
    return session(YOLOX_COCO80_ONNX, quiet=True)


def test_the_staged_file_keeps_megvii_signature():
    report = check_onnx_signature(YOLOX_COCO80_ONNX, SPEC)
    assert report is not None
    assert session(YOLOX_COCO80_ONNX, quiet=True).get_inputs()[0].name == YOLOX_INPUT


def test_input_equals_megvii_preproc(coco_images):
    for path in coco_images[:12]:
        image = cv2.imread(str(path))
        ours, r = yolox_input(image, SPEC)
        theirs, r2 = megvii_preproc(image, (416, 416))
        assert r == r2 and np.array_equal(ours[0], theirs)


def test_detections_equal_megvii_demo_on_every_photo(sess, coco_images, capsys):
    animals = 0
    for path in coco_images:
        image = cv2.imread(str(path))
        ref = megvii_detect(sess, image)
        ref = ref[np.isin(ref[:, 5].astype(int), COCO_ANIMALS)]
        x, r = yolox_input(image, SPEC)
        (raw,) = sess.run(None, {YOLOX_INPUT: x})
        dets, labels = yolox_output(raw[0], r, SPEC)
        assert len(dets) == len(ref), path.name
        order = np.argsort(-ref[:, 4], kind="stable")
        np.testing.assert_allclose(dets[:, :4], ref[order, :4], atol=1e-3)
        np.testing.assert_allclose(dets[:, 4], ref[order, 4], atol=1e-6)
        assert np.array_equal(labels, ref[order, 5].astype(int))
        animals += len(dets)
    with capsys.disabled():
        print(f"\nYOLOX-nano COCO-80: {animals} animal detections on 110 photos, equal to Megvii's")
    assert animals > 0  # the COCO subset has cats, dogs, horses...
