"""Shared helpers for the test suite (the keras-hub `TestCase` idea, as functions)."""

import json
import os

import keras
import numpy as np

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")

# Tolerances of the reference fixtures (fixtures/README.md).
DENSE_REL_TOL = 2e-4
BOX_TOL_PX = 0.02
SCORE_TOL = 2e-4


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def load_fixture(name):
    """The arrays and meta.json of a reference fixture folder."""
    folder = os.path.join(FIXTURES, name)
    data = {"path": folder}
    for part in ("inputs", "features", "head", "preds"):
        data[part] = dict(np.load(os.path.join(folder, f"{part}.npz")))
    with open(os.path.join(folder, "meta.json")) as f:
        data["meta"] = json.load(f)
    data["checkpoint"] = os.path.join(folder, "checkpoint.pth")
    return data


def nchw_to_nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def assert_dense_close(actual, reference_nchw, name):
    """max|Δ| ≤ 2e-4 · max|ref|, the fixtures' dense-array tolerance."""
    ref = nchw_to_nhwc(reference_nchw) if reference_nchw.ndim == 4 else reference_nchw
    actual = to_numpy(actual)
    assert actual.shape == ref.shape, f"{name}: shape {actual.shape} != {ref.shape}"
    err = np.abs(actual - ref).max() / np.abs(ref).max()
    assert err <= DENSE_REL_TOL, f"{name}: relative error {err:.3g} > {DENSE_REL_TOL}"
    return err


def match_detections(boxes, scores, labels, ref_boxes, ref_scores, ref_labels, score_floors):
    """Order-independent matching of two detection sets (the fixtures' rule).

    Each detection must pair with one reference detection of the same label,
    box within 0.02 px and score within 2e-4. Unpaired detections on either
    side are allowed only within 2e-4 of one of `score_floors` (the score
    threshold, the lowest kept score), where near-ties may legitimately differ.

    Returns (matched, max box Δ, max score Δ, unmatched_ours, unmatched_ref).
    """
    used = np.zeros(len(ref_boxes), bool)
    box_d, score_d, unmatched = 0.0, 0.0, []
    for i in np.argsort(-scores):
        cand = np.where(
            (ref_labels == labels[i])
            & ~used
            & (np.abs(ref_scores - scores[i]) <= SCORE_TOL)
            & (np.abs(ref_boxes - boxes[i]).max(axis=1) <= BOX_TOL_PX)
        )[0]
        if len(cand) == 0:
            unmatched.append(i)
            continue
        j = cand[np.argmin(np.abs(ref_boxes[cand] - boxes[i]).max(axis=1))]
        used[j] = True
        box_d = max(box_d, float(np.abs(ref_boxes[j] - boxes[i]).max()))
        score_d = max(score_d, float(abs(ref_scores[j] - scores[i])))
    def excused(score):
        return any(abs(score - floor) <= SCORE_TOL for floor in score_floors)

    bad_ours = [i for i in unmatched if not excused(scores[i])]
    bad_ref = [j for j in np.where(~used)[0] if not excused(ref_scores[j])]
    return int(used.sum()), box_d, score_d, bad_ours, bad_ref


def run_serialization_test(obj):
    """`get_config` → `from_config` gives an equal config, and survives JSON."""
    config = obj.get_config()
    clone = type(obj).from_config(config)
    assert json.loads(json.dumps(clone.get_config())) == json.loads(json.dumps(config))
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(revived) is type(obj)
    return clone
