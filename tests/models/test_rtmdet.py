"""The RTMDet task: sizes, configs, inputs and outputs."""

import os

import numpy as np
import pytest

from keras_rtmdet import RTMDet
from keras_rtmdet.utils.detection_matching import match_detections
from tests.test_case import FIXTURES
from tests.test_case import build_shapes_only
from tests.test_case import run_serialization_test
from tests.test_case import tiny_model
from tests.test_case import to_numpy
from tests.test_case import trainable_parameter_count

# Trainable parameters of the official models (mmdet's unique parameters).
PRESET_PARAMS = {
    "rtmdet_tiny_coco": 4_896_168,
    "rtmdet_s_coco": 8_886_924,
    "rtmdet_m_coco": 24_709_188,
    "rtmdet_l_coco": 52_315_804,
    "rtmdet_x_coco": 94_855_572,
}


@pytest.mark.backend_independent
@pytest.mark.parametrize("preset", sorted(PRESET_PARAMS))
def test_preset_architectures_have_the_reference_parameter_count(preset):
    model = build_shapes_only(lambda: RTMDet.from_preset(preset, load_weights=False))
    trainable = trainable_parameter_count(model)
    assert trainable == PRESET_PARAMS[preset] == RTMDet.presets[preset]["params"]
    assert len(model.class_names) == 80 and model.class_names[0] == "person"


@pytest.fixture(scope="module")
def tiny():
    # Reference weights (random but well conditioned) so that boxes are not degenerate.
    model = tiny_model(num_classes=80, image_size=(96, 128), score_threshold=0.0)
    model.load_checkpoint(os.path.join(FIXTURES, "det_mini_linear", "checkpoint.pth"))
    return model


def test_parts_config_round_trip(tiny):
    """The task's own round trip is in its task test (test_rtmdet_task.py)."""
    for sub in (tiny.backbone, tiny.neck, tiny.head, tiny.normalizer):
        run_serialization_test(sub)


def test_raw_outputs_shapes(tiny):
    out = tiny(np.zeros((2, 96, 128, 3), "float32"))
    priors = 12 * 16 + 6 * 8 + 3 * 4
    assert tuple(out["cls_logits"].shape) == (2, priors, 80)
    assert tuple(out["bbox_preds"].shape) == (2, priors, 4)
    assert tuple(tiny.priors((96, 128)).shape) == (priors, 4)


def test_predict_output_contract(tiny):
    images = [
        np.random.default_rng(0).integers(0, 255, (50, 300, 3), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 255, (200, 90, 3), dtype=np.uint8),
        np.random.default_rng(2).uniform(0, 255, (96, 128, 3)).astype("float32"),
    ]
    out = tiny.predict(images, max_detections=7, verbose=0)
    assert out["boxes"].shape == (3, 7, 4) and out["scores"].shape == (3, 7)
    assert out["labels"].shape == (3, 7) and out["num_detections"].shape == (3,)
    for b, image in enumerate(images):
        n = out["num_detections"][b]
        assert n == 7  # threshold 0: every image has candidates to spare
        boxes = out["boxes"][b, :n]
        assert np.all(np.diff(out["scores"][b, :n]) <= 0)
        # Boxes come back in original pixels; the padding region lies beyond
        # the image's own extent scaled back, so allow that margin.
        h, w = image.shape[:2]
        scale = min(96 / h, 128 / w, 128 / max(h, w))
        assert boxes[:, [0, 2]].max() <= 128 / scale + 1e-3
        assert boxes[:, [1, 3]].max() <= 96 / scale + 1e-3
    assert tiny.max_detections == 300, "per-call settings must not stick"


def test_score_threshold_above_all_scores_gives_padded_empty_output(tiny):
    out = tiny.predict(np.zeros((64, 64, 3), np.uint8), score_threshold=0.999, verbose=0)
    assert out["num_detections"].tolist() == [0]
    assert np.all(out["labels"] == -1) and np.all(out["boxes"] == -1) and np.all(out["scores"] == -1)


@pytest.mark.parametrize(
    "images, error, message",
    [
        (np.zeros((4, 4), np.uint8), ValueError, r"got an array of shape \(4, 4\)"),
        (np.zeros((1, 2, 8, 8, 3), np.uint8), ValueError, "shape"),
        (np.zeros((8, 8, 4), np.uint8), ValueError, "3 colour channels"),
        (np.zeros((0, 8, 8, 3), np.uint8), ValueError, "empty batch"),
        ([], ValueError, "empty batch"),
        ([np.zeros((0, 8, 3), np.uint8)], ValueError, "Image 0 is empty"),
        (np.zeros((8, 8, 3), bool), TypeError, "dtype bool"),
        (np.full((8, 8, 3), np.nan, np.float32), ValueError, "NaN"),
        ("missing.jpg", ValueError, "Cannot read image missing.jpg: no such file"),
        ({"images": 1}, TypeError, "array or a list of arrays"),
    ],
)
def test_bad_images_are_rejected_with_a_reason(tiny, images, error, message):
    with pytest.raises(error, match=message):
        tiny.predict(images, verbose=0)


def test_bad_settings_are_rejected(tiny):
    with pytest.raises(ValueError, match="iou_threshold"):
        tiny.predict(np.zeros((8, 8, 3), np.uint8), iou_threshold=1.5, verbose=0)
    with pytest.raises(ValueError, match="Unknown post-processing setting"):
        tiny.predict(np.zeros((8, 8, 3), np.uint8), nms_threshold=0.5, verbose=0)
    with pytest.raises(ValueError, match="Channel order must be one of"):
        tiny.predict(np.zeros((8, 8, 3), np.uint8), channel_order="hsv", verbose=0)
    with pytest.raises(ValueError, match="class names"):
        RTMDet(tiny.backbone, tiny.neck, tiny.head, class_names=["a", "b"])


def test_detect_matches_predict_on_a_preprocessed_batch(tiny):
    """The same detections; the compiled and eager graphs round differently (TF: 7e-6 on the scores), so
    two near-equal scores may come out in either order, or either side of the max_detections cut."""
    image = np.random.default_rng(3).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    predicted = tiny.predict(image, verbose=0)
    detected = {k: to_numpy(v) for k, v in tiny.detect(image[None].astype("float32")).items()}
    n = int(predicted["num_detections"][0])
    assert int(detected["num_detections"][0]) == n > 0
    result = match_detections(
        tuple(predicted[key][0, :n] for key in ("boxes", "scores", "labels")),
        tuple(detected[key][0, :n] for key in ("boxes", "scores", "labels")),
        box_tol=1e-3,
        score_tol=1e-4,
        score_floors=[float(predicted["scores"][0, n - 1])],  # a near-tie at the max_detections cut
    )
    assert result["matched"] >= n - 2 and not result["unexplained_ours"] and not result["unexplained_reference"]


@pytest.mark.backends("torch")
def test_detect_records_no_backward_graph(tiny):
    """Eager torch would otherwise keep every activation of the forward alive with its outputs."""
    out = tiny.detect(np.zeros((1, 96, 128, 3), "float32"))
    assert not any(value.requires_grad for value in out.values())
