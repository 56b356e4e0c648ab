"""Each detector variant declares its traits and hooks; the package finds and asks them, never their class."""

import copy
import json

import pytest

from keras_rtmdet import DenseDetector
from keras_rtmdet import RTMDet
from keras_rtmdet import RTMDetIns
from keras_rtmdet import RTMDetRotated
from keras_rtmdet.data.synthetic import SyntheticShapesSource
from keras_rtmdet.data.synthetic_rotated import SyntheticRotatedSource
from keras_rtmdet.evaluation.coco_callback import CocoEvaluationCallback
from keras_rtmdet.evaluation.dota_callback import DotaEvaluationCallback
from keras_rtmdet.evaluation.protocols import check_validation_data
from keras_rtmdet.evaluation.protocols import evaluation_callback
from keras_rtmdet.models.detector_variant import detector_class
from keras_rtmdet.models.detector_variant import detector_classes
from keras_rtmdet.models.detector_variant import preset_variant
from tests.test_case import build_shapes_only
from tests.test_case import tiny_model

VARIANTS = {"det": RTMDet, "ins": RTMDetIns, "rot": RTMDetRotated}


@pytest.mark.backend_independent
def test_every_variant_is_found_by_task_and_preset():
    assert detector_classes() == VARIANTS
    for task, cls in VARIANTS.items():
        assert detector_class(task) is cls and cls.variant.task == task
        for size in cls.variant.sizes:
            name = cls.variant.preset_for_size(size)
            assert name in cls.presets and preset_variant(name) is cls.variant
    with pytest.raises(ValueError, match="Unknown task 'seg'; known: det, ins, rot"):
        detector_class("seg")
    with pytest.raises(ValueError, match="RTMDet-R comes in sizes tiny, s, m, l; got 'x'"):
        RTMDetRotated.variant.preset_for_size("x")
    assert preset_variant("no_such_preset") is None


@pytest.mark.backend_independent
def test_a_preset_directory_names_its_variant(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"class_name": "RTMDetRotated", "config": {}}))
    assert preset_variant(tmp_path) is RTMDetRotated.variant


@pytest.mark.backend_independent
def test_rotated_and_detection_models_are_siblings():
    """An `RTMDetRotated` is no `RTMDet` (export, predict's boxes and training differ); `RTMDetIns` is one."""
    assert not issubclass(RTMDetRotated, RTMDet) and issubclass(RTMDetRotated, DenseDetector)
    assert issubclass(RTMDetIns, RTMDet)
    with pytest.raises(ValueError, match="'rtmdet_r_s_dota' is an RTMDetRotated preset.*RTMDetRotated.from_preset"):
        RTMDet.from_preset("rtmdet_r_s_dota", load_weights=False)


def test_any_preset_loads_through_the_base_class():
    model = build_shapes_only(lambda: DenseDetector.from_preset("rtmdet_r_tiny_dota", load_weights=False))
    assert type(model) is RTMDetRotated and model.variant.display_name == "RTMDet-R"


def test_each_variant_refuses_the_recipe_options_of_another():
    det = build_shapes_only(lambda: tiny_model(RTMDet))
    rotated = build_shapes_only(lambda: tiny_model(RTMDetRotated))
    shapes = SyntheticShapesSource(4, image_size=(64, 64), num_classes=3, seed=0)
    common = dict(image_size=64, batch_size=2, max_boxes=10, seed=0, shard=None, epochs=3)
    with pytest.raises(ValueError, match="rect_labels applies to RTMDet-R"):
        det.training_stages(shapes, rect_labels=[0], **common)
    with pytest.raises(ValueError, match="model_size must be one of"):
        det.training_stages(shapes, model_size="xl", **common)
    stages = det.training_stages(shapes, model_size="tiny", **common)
    assert [first for first, _ in stages] == [0, 2]  # stage 2: the last 20/300 of the epochs, at least one
    rotated_shapes = SyntheticRotatedSource(4, image_size=(64, 64), seed=0)
    with pytest.raises(ValueError, match="RTMDet-R trains in one stage"):
        rotated.training_stages(rotated_shapes, stage2_epochs=1, **common)
    assert [first for first, _ in rotated.training_stages(rotated_shapes, **common)] == [0]


def test_evaluation_follows_the_declared_protocol(tmp_path):
    shapes = SyntheticShapesSource(4, image_size=(64, 64), num_classes=3, seed=0)
    det, ins, rotated = (build_shapes_only(lambda cls=cls: tiny_model(cls)) for cls in VARIANTS.values())
    assert isinstance(evaluation_callback(rotated, SyntheticRotatedSource(2, seed=0), tmp_path), DotaEvaluationCallback)
    coco = evaluation_callback(ins, shapes, tmp_path)
    assert isinstance(coco, CocoEvaluationCallback) and tuple(coco.iou_types) == ("bbox", "segm")
    assert tuple(evaluation_callback(det, shapes, tmp_path).iou_types) == ("bbox",)
    check_validation_data(ins, shapes)
    boxes_only = BoxesOnly(shapes)
    check_validation_data(det, boxes_only)
    with pytest.raises(ValueError, match="BoxesOnly.*no instance masks, which the segm evaluation of an RTMDet-Ins"):
        check_validation_data(ins, boxes_only)


class BoxesOnly:
    """A source whose COCO ground truth has boxes and no `segmentation`s (a detection-only JSON)."""

    def __init__(self, source):
        coco = copy.deepcopy(source.coco)
        for annotation in coco.dataset["annotations"]:
            annotation.pop("segmentation", None)
        self.coco = coco
