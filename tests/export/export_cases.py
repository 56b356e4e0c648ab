"""Tiny detectors, served images and Keras references shared by the export tests."""

import numpy as np

from keras_rtmdet.export.serving_graph import ServingGraph
from keras_rtmdet.utils.detection_matching import match_detections
from tests.test_case import iou_matrix
from tests.test_case import load_fixture
from tests.test_case import reference_model
from tests.test_case import to_numpy

# Served images twice the fixtures' 160² network input: the in-graph resize runs, and no padding is
# added (padding gives whole regions of exactly tied scores, which two correct NMS may break differently).
SERVED = (320, 320)


def tiny_detector():
    """`det_mini_linear`: an RTMDet-tiny layout at widen 0.125, 160², with MMDetection's random weights.

    Its weights give varied scores and boxes (a fresh Keras model's head is ~0: every class of a prior
    scores alike); served RGB while the model takes BGR, so the export's channel flip is checked too.
    """
    return reference_model(load_fixture("det_mini_linear"), max_detections=100)


def tiny_ins():
    """`ins_mini`: RTMDet-Ins at the same scale, MMDetection's random weights (varied masks)."""
    return reference_model(load_fixture("ins_mini"), max_detections=30)


def tiny_rotated():
    """`rot_mini`: RTMDet-R at the same scale (256² input, 15 DOTA classes), MMRotate's random weights.

    200 candidates and 100 detections: ~50 detections an image on `served_images`, below the cap, and a
    short NMS loop in the exported graphs.
    """
    return reference_model(load_fixture("rot_mini"), max_candidates=200, max_detections=100)


def served_images(batch, size=SERVED, seed=0):
    """uint8 (batch, H, W, 3): smooth shapes plus noise, so no two priors score exactly alike."""
    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    images = rng.integers(0, 60, (batch, height, width, 3)).astype(np.float32)
    for b in range(batch):
        for _ in range(3):
            cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(8, 30)
            images[b][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.uniform(60, 190, 3)
    return np.clip(images, 0, 255).astype(np.uint8)


def keras_raw(model, images, input_size=SERVED):
    graph = ServingGraph(model, "raw", input_size=input_size, channel_order="rgb")
    return dict(zip(graph.output_names, (to_numpy(x) for x in graph(images))))


def keras_end_to_end(model, images):
    """`model.predict` on the raw RGB images: the user's path (cv2 letterbox on the host), which the
    exported graph's in-graph letterbox reproduces bit for bit."""
    detections = model.predict(images, channel_order="rgb", verbose=0)
    if "masks" in detections:
        counts = detections["num_detections"]
        detections["masks"] = [detections["masks"][b, : counts[b]] for b in range(len(images))]
    return detections


def assert_raw_close(actual, expected, image_side=max(SERVED)):
    """Raw outputs within 1e-4: scores absolutely, boxes relative to the image side, the rest to their range."""
    assert set(actual) == set(expected), (sorted(actual), sorted(expected))
    for name, reference in expected.items():
        value = np.asarray(actual[name])
        assert value.shape == reference.shape, (name, value.shape, reference.shape)
        scale = {"scores": 1.0, "boxes": image_side}.get(name, float(np.abs(reference).max()) or 1.0)
        np.testing.assert_allclose(value, reference, rtol=0, atol=1e-4 * scale, err_msg=name)


def assert_same_detections(actual, expected, min_mask_agreement=0.999):
    """The same detections per image (any order: near-tied scores may swap), masks agreeing on ≥ 99.9 %."""
    counts = np.asarray(actual["num_detections"])
    np.testing.assert_array_equal(counts, expected["num_detections"])
    assert counts.sum() > 0, "nothing detected: the comparison would check nothing"
    for b, n in enumerate(counts):
        ours = [np.asarray(actual[key])[b, :n] for key in ("boxes", "scores", "labels")]
        reference = [expected[key][b, :n] for key in ("boxes", "scores", "labels")]
        assert np.all(np.asarray(actual["labels"])[b, n:] == -1)
        floors = (float(reference[1].min()),) if n else ()
        match = match_detections(ours, reference, box_tol=1e-2, score_tol=1e-4, score_floors=floors)
        assert not match["unexplained_ours"] and not match["unexplained_reference"], match
        assert match["matched"] >= n - 1, match
        if "masks" in expected:
            _assert_masks_agree(ours, reference, np.asarray(actual["masks"])[b, :n], expected["masks"][b], min_mask_agreement)


def _assert_masks_agree(ours, reference, our_masks, reference_masks, min_agreement):
    assert our_masks.shape == reference_masks.shape, (our_masks.shape, reference_masks.shape)
    assert len(reference_masks) == 0 or 0.01 < reference_masks.mean() < 0.99, "uniform masks would check little"
    for i in range(len(our_masks)):
        same = (reference[2] == ours[2][i]) & (np.abs(reference[0] - ours[0][i]).max(-1) <= 1e-2)
        same &= np.abs(reference[1] - ours[1][i]) <= 1e-4
        if same.any():
            j = np.flatnonzero(same)[np.argmin(np.abs(reference[1][same] - ours[1][i]))]
            assert np.mean(our_masks[i] == reference_masks[j]) >= min_agreement, i


def top_detection_agreement(ours, reference, top, min_iou):
    """How far a reduced-precision artefact keeps the reference's detections (fp16 / INT8 against fp32).

    Returns: (the share of each image's `top` best reference detections that `ours` has too: same label,
    IoU > `min_iou`; the largest score difference of those matches). Detections are score-sorted.
    """
    found, deltas = [], [0.0]
    for b, count in enumerate(reference["num_detections"]):
        n, m = min(top, int(count)), int(ours["num_detections"][b])
        overlaps = iou_matrix(reference["boxes"][b, :n], ours["boxes"][b, :m]) if m else np.zeros((n, 1))
        overlaps = overlaps * (reference["labels"][b, :n, None] == ours["labels"][b, None, :m]) if m else overlaps
        hit = overlaps.max(1) > min_iou
        found.extend(hit)
        deltas.extend(np.abs(reference["scores"][b, :n][hit] - ours["scores"][b, overlaps.argmax(1)[hit]]))
    assert found, "no reference detection to compare"
    return float(np.mean(found)), float(max(deltas))
