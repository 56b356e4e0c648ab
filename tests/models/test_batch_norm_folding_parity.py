"""MMDetection parity through `predict` with BatchNorm folded into the convs (the inference default) and unfolded.

The `det_mini_linear` fixture (tests/models/test_rtmdet_parity.py) has random, non-trivial BatchNorm
statistics in every conv-BN unit, so a wrong fold in any of them shows in the outputs. The folded run
letterboxes on the device (`letterbox="device"`, one image per call), the unfolded one on the host: both
against mmdet's detections of the same raw images.
"""

import numpy as np

from keras_rtmdet.layers.batch_norm_folding import batch_norm_folding
from tests.test_case import assert_dense_close
from tests.test_case import assert_reference_detections
from tests.test_case import load_fixture
from tests.test_case import nchw_to_nhwc
from tests.test_case import reference_model
from tests.test_case import to_numpy

FOLDING_REL_TOL = 1e-4


def test_folded_and_unfolded_outputs_agree_and_match_mmdet():
    fx = load_fixture("det_mini_linear")
    model = reference_model(fx)
    images = nchw_to_nhwc(fx["inputs"]["inputs"])
    head = fx["head"]
    reference_logits = np.concatenate(
        [nchw_to_nhwc(head[f"cls_score_{level}"]).reshape(len(images), -1, model.num_classes) for level in range(3)],
        axis=1,
    )
    raw = {}
    for folding in (True, False):
        with batch_norm_folding(folding):
            raw[folding] = {k: to_numpy(v) for k, v in model.raw_outputs(images, normalized=True).items()}
    for key in ("cls_logits", "bbox_preds"):
        error = np.abs(raw[True][key] - raw[False][key]).max() / np.abs(raw[False][key]).max()
        assert error <= FOLDING_REL_TOL, f"{key}: folded vs unfolded relative error {error:.3g}"
    for outputs in raw.values():
        assert_dense_close(outputs["cls_logits"], reference_logits, "cls_logits")
        assert_dense_close(outputs["bbox_preds"], head["flat_bbox_pred"], "flat_bbox_pred")

    pipe = [fx["inputs"]["pipe_raw_image_0"], fx["inputs"]["pipe_raw_image_1"]]
    per_image = [model.predict(image, channel_order="bgr", letterbox="device", verbose=0) for image in pipe]
    folded = {key: np.concatenate([out[key] for out in per_image]) for key in per_image[0]}
    with batch_norm_folding(False):
        unfolded = model.predict(pipe, channel_order="bgr", letterbox="host", verbose=0)
    for out in (folded, unfolded):
        assert_reference_detections(fx, out, "pipe_", model.max_detections, model.score_threshold)
