"""CSPNeXt ImageNet classifiers: sizes, preprocessing, presets, fine-tuning and detector start-up."""

import os

import keras
import numpy as np
import pytest

from keras_rtmdet import CSPNeXtClassifier
from keras_rtmdet import RTMDet
from keras_rtmdet.models.cspnext.cspnext_classifier_preprocessor import CSPNeXtClassifierPreprocessor
from keras_rtmdet.models.cspnext.cspnext_classifier_presets import CSPNEXT_CLASSIFIER_PRESETS
from keras_rtmdet.weights import download
from keras_rtmdet.weights.checkpoint import CheckpointError
from tests.test_case import FIXTURES
from tests.test_case import build_shapes_only
from tests.test_case import one_batch_forever
from tests.test_case import run_serialization_test
from tests.test_case import tiny_model
from tests.test_case import to_numpy
from tests.test_case import trainable_parameter_count

CLS_MINI = os.path.join(FIXTURES, "cls_mini")
EPOCHS = 60


@pytest.mark.backend_independent
@pytest.mark.parametrize("preset", sorted(CSPNEXT_CLASSIFIER_PRESETS))
def test_parameter_counts_match_the_published_table(preset):
    spec = CSPNEXT_CLASSIFIER_PRESETS[preset]
    model = build_shapes_only(lambda: CSPNeXtClassifier.from_preset(preset, load_weights=False))
    trainable = trainable_parameter_count(model)
    assert round(trainable / 1e6, 2) == spec["params_m"], trainable


def test_preprocessing_resizes_the_short_side_and_centre_crops():
    from PIL import Image

    prep = CSPNeXtClassifierPreprocessor(224, 236)
    assert prep.resized_size(300, 200) == (354, 236) and prep.resized_size(200, 301) == (236, 355)
    image = np.random.default_rng(0).integers(0, 256, (200, 301, 3)).astype(np.uint8)
    out = prep(image)
    resized = np.asarray(Image.fromarray(image).resize((355, 236), Image.BICUBIC))
    top, left = round((236 - 224) / 2), round((355 - 224) / 2)
    np.testing.assert_array_equal(out[0], resized[top : top + 224, left : left + 224])
    bgr = prep(image, input_channel_order="rgb", output_channel_order="bgr")
    np.testing.assert_array_equal(bgr[0], out[0][..., ::-1])
    with pytest.raises(ValueError, match="resize_short"):
        CSPNeXtClassifierPreprocessor(224, 200)


def test_predict_gives_probabilities_and_the_config_round_trips():
    model = CSPNeXtClassifier.from_arch(0.167, 0.125, num_classes=5, class_names=list("abcde"), image_size=64, resize_short=72)
    images = [np.random.default_rng(i).integers(0, 256, (50 + 10 * i, 90, 3)).astype(np.uint8) for i in range(2)]
    probs = model.predict(images, verbose=0)
    assert probs.shape == (2, 5)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    top = model.top_k(probs, 2)
    assert len(top) == 2 and top[0][0][1] in "abcde" and top[0][0][2] >= top[0][1][2]
    clone = run_serialization_test(model)
    assert clone.image_size == 64 and clone.class_names == list("abcde")


def shape_images(count, seed=0):
    """Generated 64² images of 4 classes: a disc, a square, a ring or a triangle on noise."""
    from keras_rtmdet.data.synthetic import draw_sample

    rng = np.random.default_rng(seed)
    images, labels = [], []
    while len(images) < count:
        image, _, lab, _ = draw_sample(rng, 64, 64, num_classes=4, max_objects=1, min_size=34, max_size=44)
        if len(lab) == 1:
            images.append(image)
            labels.append(int(lab[0]))
    return np.stack(images).astype(np.float32), np.array(labels, np.int32)


def test_tiny_classifier_overfits_generated_images():
    images, labels = shape_images(8)
    assert len(set(labels.tolist())) >= 3
    keras.utils.set_random_seed(0)
    model = CSPNeXtClassifier.from_arch(0.167, 0.125, num_classes=4, image_size=64, resize_short=64)
    model.compile(optimizer=keras.optimizers.AdamW(3e-3))
    history = model.fit(one_batch_forever(images, labels), steps_per_epoch=1, epochs=EPOCHS, verbose=0).history
    assert history["loss"][-1] < 0.1 * history["loss"][0], history["loss"][::10]
    predicted = np.argmax(to_numpy(model(images, training=False)), -1)
    np.testing.assert_array_equal(predicted, labels)


@pytest.fixture
def mini_classifier_preset(monkeypatch, tmp_path):
    """A built-in-style classifier preset whose 'official' checkpoint is the cls_mini fixture, served by file://."""
    checkpoint = os.path.join(CLS_MINI, "checkpoint.pth")
    monkeypatch.setenv("KERAS_RTMDET_HOME", str(tmp_path / "home"))
    spec = dict(CSPNEXT_CLASSIFIER_PRESETS["cspnext_tiny_imagenet"])
    spec.update(
        arch={"deepen_factor": 0.167, "widen_factor": 0.125, "num_classes": 10},
        checkpoint_url=f"file://{os.path.abspath(checkpoint)}",
        checkpoint_filename="cls_mini.pth",
        sha256_prefix=download.sha256_of(checkpoint)[:8],
    )
    monkeypatch.setitem(CSPNeXtClassifier.presets, "mini_test_imagenet", spec)
    return checkpoint


def test_detector_starts_from_an_imagenet_backbone_preset(mini_classifier_preset):
    classifier = CSPNeXtClassifier.from_preset("mini_test_imagenet")
    detector = tiny_model()
    fresh = {v.path: to_numpy(v) for v in detector.weights}
    detector.load_backbone_preset("mini_test_imagenet")
    for source, target in zip(classifier.backbone.weights, detector.backbone.weights):
        np.testing.assert_array_equal(to_numpy(target), to_numpy(source))
    for variable in detector.neck.weights + detector.head.weights:
        np.testing.assert_array_equal(to_numpy(variable), fresh[variable.path])
    other = RTMDet.from_arch(0.33, 0.125, 1, False, num_classes=3)
    with pytest.raises(CheckpointError, match="deepen_factor=0.167 but this model's backbone has deepen_factor=0.33"):
        other.load_backbone_preset("mini_test_imagenet")


def test_fine_tuning_keeps_the_backbone_and_wrong_checkpoints_fail(mini_classifier_preset):
    pretrained = CSPNeXtClassifier.from_preset("mini_test_imagenet")
    model = CSPNeXtClassifier.from_preset("mini_test_imagenet", num_classes=3, class_names=["a", "b", "c"])
    assert tuple(model.fc.kernel.shape)[-1] == 3
    for a, b in zip(model.backbone.weights, pretrained.backbone.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    wrong = CSPNeXtClassifier.from_arch(0.33, 0.125, num_classes=10)
    with pytest.raises(CheckpointError, match="does not match this architecture|has no tensor"):
        wrong.load_checkpoint(mini_classifier_preset)


@pytest.fixture(scope="module")
def cls_mini():
    data = dict(np.load(os.path.join(CLS_MINI, "data.npz")))
    arch = {"deepen_factor": 0.167, "widen_factor": 0.125, "num_classes": 10}
    model = CSPNeXtClassifier.from_arch(**arch)
    model.load_checkpoint(os.path.join(CLS_MINI, "checkpoint.pth"))
    return data, model


def test_mmpretrain_preprocessing_is_reproduced(cls_mini):
    """ResizeEdge(236, pillow bicubic) + CenterCrop(224) of mmpretrain, on the fixture's raw images."""
    data, model = cls_mini
    raw = [data["raw_rgb_0"], data["raw_rgb_1"]]
    ours = model.preprocessor(raw, input_channel_order="rgb", output_channel_order="bgr")
    np.testing.assert_array_equal(ours, data["crop_bgr"].astype(np.float32))


def test_logits_match_mmpretrain(cls_mini):
    data, model = cls_mini
    normalized = np.transpose(data["normalized_rgb"], (0, 2, 3, 1))
    features = model.backbone(normalized)
    features = to_numpy(features[-1] if isinstance(features, (list, tuple)) else features)
    ref_features = np.transpose(data["features"], (0, 2, 3, 1))
    assert np.abs(features - ref_features).max() <= 2e-4 * np.abs(ref_features).max()
    logits = to_numpy(model.fc(model.get_layer("neck")(features)))
    err = np.abs(logits - data["logits"]).max() / np.abs(data["logits"]).max()
    assert err <= 2e-4, err
    # End to end from the raw images: preprocessing, normalisation and network.
    probs = model.predict([data["raw_rgb_0"], data["raw_rgb_1"]], verbose=0)
    np.testing.assert_allclose(probs, data["probs"], atol=2e-4 * max(1.0, float(np.abs(data["probs"]).max())))
    np.testing.assert_array_equal(np.argmax(probs, -1), np.argmax(data["probs"], -1))
