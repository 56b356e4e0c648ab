"""The batched DynamicSoftLabelAssigner equals mmdet 3.3.0's per-image one.

Fixtures: tests/fixtures/assigner/<case>.npz (copied from the shared reference
fixtures; see fixtures/README.md, section `assigner/`). Tolerances there:
`gt_inds` and labels exact, `max_overlaps` ≤ 1e-4 abs (on positives only; it is
-1e8 elsewhere).
"""

import os

import keras
import numpy as np
import pytest

from keras_rtmdet.losses import DynamicSoftLabelAssigner
from keras_rtmdet.losses import mask_centers_of_mass
from tests.losses.loss_cases import ASSIGNER_FIXTURES
from tests.losses.loss_cases import maybe_jit
from tests.test_case import to_numpy

CASES = ["gt0", "gt1", "gt50", "small", "crowded", "few_priors", "gt_masks"]
METRIC_ABS_TOL = 1e-4


def load_case(name):
    data = dict(np.load(os.path.join(ASSIGNER_FIXTURES, f"{name}.npz")))
    if data["gt_masks"].shape[0] > 0:
        # RTMDet-Ins: the centre prior uses the GT mask's centre of mass.
        data["gt_centers"] = numpy_center_of_mass(data["gt_masks"])
    else:
        data["gt_centers"] = None
    return data


def numpy_center_of_mass(masks, eps=1e-7):
    """mmdet's `center_of_mass`: integer pixel indices, Σx·m / max(Σm, eps)."""
    m = masks.astype(np.float32)
    h, w = m.shape[-2:]
    norm = np.maximum(m.sum(axis=(-2, -1)), eps)
    cx = (m * np.arange(w, dtype=np.float32)[None, None, :]).sum(axis=(-2, -1)) / norm
    cy = (m * np.arange(h, dtype=np.float32)[None, :, None]).sum(axis=(-2, -1)) / norm
    return np.stack([cx, cy], axis=-1).astype(np.float32)


def pad_gts(cases, num_gts=None, pad_box=(0.0, 0.0, 0.0, 0.0)):
    """Stack the GTs of several cases to (B, G) with -1 labels in the padding."""
    g = max([len(c["gt_labels"]) for c in cases] + [num_gts or 0])
    b = len(cases)
    boxes = np.tile(np.asarray(pad_box, np.float32), (b, g, 1))
    labels = -np.ones((b, g), np.int64)
    centers = np.zeros((b, g, 2), np.float32)
    for i, c in enumerate(cases):
        k = len(c["gt_labels"])
        boxes[i, :k] = c["gt_bboxes"]
        labels[i, :k] = c["gt_labels"]
        if c["gt_centers"] is not None:
            centers[i, :k] = c["gt_centers"]
        elif k:
            centers[i, :k] = (c["gt_bboxes"][:, :2] + c["gt_bboxes"][:, 2:]) / 2
    return boxes, labels, centers


def run_assigner(cases, num_gts=None, pad_box=(0.0, 0.0, 0.0, 0.0), use_centers=None, jit=True, **kwargs):
    boxes, labels, centers = pad_gts(cases, num_gts, pad_box)
    if use_centers is None:
        use_centers = any(c["gt_centers"] is not None for c in cases)
    dsl = DynamicSoftLabelAssigner(**kwargs)
    call = maybe_jit(lambda *a, **k: dsl(*a, **k)) if jit else dsl
    out = call(
        cases[0]["priors"],
        np.stack([c["pred_scores"] for c in cases]),
        np.stack([c["pred_bboxes"] for c in cases]),
        boxes,
        labels,
        gt_centers=centers if use_centers else None,
    )
    return {k: to_numpy(v) for k, v in out.items()}


def check_against_fixture(out, case, b=0):
    """Exact gt_inds/labels, metrics ≤ 1e-4 on positives; returns max |Δ metric|."""
    ref_index = case["gt_inds"] - 1  # fixture: 0 = background, k + 1 = GT k
    pos = ref_index >= 0
    np.testing.assert_array_equal(out["assigned_gt_index"][b], ref_index)
    np.testing.assert_array_equal(out["labels"][b], case["labels"])
    np.testing.assert_array_equal(out["foreground_mask"][b], pos)
    metrics = out["assign_metrics"][b]
    assert np.all(metrics[~pos] == 0.0)
    assert np.isfinite(metrics).all()
    err = float(np.abs(metrics[pos] - case["max_overlaps"][pos]).max()) if pos.any() else 0.0
    assert err <= METRIC_ABS_TOL, err
    target = out["target_boxes"][b]
    if pos.any():
        np.testing.assert_array_equal(target[pos], case["gt_bboxes"][ref_index[pos]])
    assert np.all(target[~pos] == 0.0)
    return err


# ----------------------------------------------------------------------------
# numpy transcription of mmdet's per-image assigner (the (V, G, C) version),
# for cases that have no stored fixture.


def numpy_reference_assign(priors, logits, boxes, gt_boxes, gt_labels, gt_centers=None, topk=13):
    n = len(priors)
    g = len(gt_boxes)
    index = -np.ones(n, np.int64)
    metrics = np.zeros(n, np.float32)
    if g == 0:
        return index, metrics
    pc = priors[:, :2]
    deltas = np.concatenate([pc[:, None] - gt_boxes[:, :2], gt_boxes[:, 2:] - pc[:, None]], -1)
    valid = (deltas.min(-1) > 0).any(1)
    if not valid.any():
        return index, metrics
    if gt_centers is None:
        gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2.0
    vp = priors[valid]
    with np.errstate(over="ignore"):
        dist = np.sqrt(((vp[:, None, :2] - gt_centers[None]) ** 2).sum(-1)) / vp[:, 2:3]
        center = np.power(np.float32(10.0), (dist - 3.0).astype(np.float32))
    b = boxes[valid]
    area1 = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    area2 = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    lt = np.maximum(b[:, None, :2], gt_boxes[None, :, :2])
    rb = np.minimum(b[:, None, 2:], gt_boxes[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    overlap = wh[..., 0] * wh[..., 1]
    ious = overlap / np.maximum(area1[:, None] + area2[None] - overlap, np.float32(1e-6))
    iou_cost = -np.log(ious + np.float32(1e-7)) * np.float32(3.0)
    onehot = np.eye(logits.shape[1], dtype=np.float32)[gt_labels]
    soft = onehot[None] * ious[..., None]
    x = np.repeat(logits[valid][:, None, :], g, axis=1)
    bce = np.maximum(x, 0) - x * soft + np.log1p(np.exp(-np.abs(x)))
    p = 1.0 / (1.0 + np.exp(-x))
    cls_cost = (bce * (soft - p) ** 2).sum(-1)
    cost = (cls_cost + iou_cost + center).astype(np.float32)
    cand = min(topk, len(vp))
    ks = np.maximum(np.sort(ious, 0)[::-1][:cand].sum(0).astype(np.int64), 1)
    match = np.zeros(cost.shape, np.uint8)
    for j in range(g):
        match[np.argsort(cost[:, j], kind="stable")[: ks[j]], j] = 1
    multi = match.sum(1) > 1
    if multi.any():
        rows = np.where(multi)[0]
        match[rows] = 0
        match[rows, cost[rows].argmin(1)] = 1
    fg = match.sum(1) > 0
    valid_index = np.where(valid)[0]
    assigned = match[fg].argmax(1)
    index[valid_index[fg]] = assigned
    metrics[valid_index[fg]] = ious[fg][np.arange(fg.sum()), assigned]
    return index, metrics


def synthetic_case(seed, image_size=128, num_gts=6, num_classes=80, big_gt=False):
    """Random GTs and "informative" predictions (as the fixtures are made)."""
    from keras_rtmdet.ops.priors import point_priors

    rng = np.random.default_rng(seed)
    priors = to_numpy(point_priors((image_size, image_size), (8, 16, 32)))
    n = len(priors)
    xy = rng.uniform(0, image_size * 0.8, (num_gts, 2))
    wh = rng.uniform(image_size * 0.02, image_size * 0.5, (num_gts, 2))
    gt_boxes = np.concatenate([xy, np.minimum(xy + wh, image_size)], 1).astype(np.float32)
    if big_gt:
        gt_boxes[0] = [0.0, 0.0, image_size, image_size]
    gt_labels = rng.integers(0, num_classes, num_gts)
    logits = rng.normal(-6.0, 1.5, (n, num_classes)).astype(np.float32)
    dist = rng.uniform(2, image_size * 0.3, (n, 4)).astype(np.float32)
    boxes = np.concatenate([priors[:, :2] - dist[:, :2], priors[:, :2] + dist[:, 2:]], 1)
    for j in range(num_gts):
        inside = (
            (priors[:, 0] > gt_boxes[j, 0]) & (priors[:, 0] < gt_boxes[j, 2])
            & (priors[:, 1] > gt_boxes[j, 1]) & (priors[:, 1] < gt_boxes[j, 3])
        )
        pick = inside & (rng.uniform(size=n) < 0.7)
        boxes[pick] = gt_boxes[j] + rng.normal(0, 0.08, (pick.sum(), 4)) * (gt_boxes[j, 2:] - gt_boxes[j, :2]).repeat(2)
        logits[pick, gt_labels[j]] += rng.uniform(2, 6, pick.sum())
    return {
        "priors": priors,
        "pred_scores": logits.astype(np.float32),
        "pred_bboxes": boxes.astype(np.float32),
        "gt_bboxes": gt_boxes,
        "gt_labels": gt_labels,
        "gt_centers": None,
    }


# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_matches_reference_fixture(name):
    case = load_case(name)
    out = run_assigner([case])
    err = check_against_fixture(out, case)
    print(f"{name}: max |Δ max_overlaps| on positives = {err:.3g}")


@pytest.mark.parametrize("name", [c for c in CASES if c != "gt0"])
def test_cost_and_ious_match_fixture_intermediates(name):
    case = load_case(name)
    boxes, labels, centers = pad_gts([case])
    res = maybe_jit(DynamicSoftLabelAssigner().compute_cost)(
        case["priors"], case["pred_scores"][None], case["pred_bboxes"][None], boxes, labels,
        gt_centers=centers if case["gt_centers"] is not None else None,
    )
    valid = to_numpy(res["valid"])[0]
    np.testing.assert_array_equal(valid, case["valid_mask_in_gts"])
    cost = to_numpy(res["cost"])[0][valid]
    ious = to_numpy(res["ious"])[0][valid]
    np.testing.assert_allclose(ious, case["pairwise_ious"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(cost, case["cost_matrix"], rtol=2e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["gt1", "gt50", "small", "crowded", "gt_masks"])
def test_padding_gts_changes_nothing(name):
    """Extra -1-labelled slots, even with a box covering the image, never match."""
    case = load_case(name)
    out = run_assigner([case], num_gts=len(case["gt_labels"]) + 5, pad_box=(-10.0, -10.0, 500.0, 500.0))
    check_against_fixture(out, case)


def test_batch_of_different_cases_equals_each_alone():
    names = ["gt50", "small", "gt0", "crowded", "gt_masks", "gt1"]
    cases = [load_case(n) for n in names]
    out = run_assigner(cases)  # centres given for all (box centres where no masks)
    assert out["assigned_gt_index"].shape == (len(names), 336)
    for b, case in enumerate(cases):
        check_against_fixture(out, case, b)
        alone = run_assigner([case])
        for key in ("assigned_gt_index", "labels", "foreground_mask", "target_boxes"):
            np.testing.assert_array_equal(out[key][b], alone[key][0], err_msg=f"{names[b]} {key}")
        # XLA may fuse differently per shape (ulp-level IoU differences under jit).
        np.testing.assert_allclose(out["assign_metrics"][b], alone["assign_metrics"][0], rtol=0, atol=1e-6)


def test_images_per_chunk_gives_same_result():
    cases = [load_case(n) for n in ["gt50", "crowded", "small"]]
    full = run_assigner(cases, use_centers=False)
    chunked = run_assigner(cases, use_centers=False, images_per_chunk=2)
    for key in full:
        if key == "assign_metrics":  # ulp-level differences under XLA
            np.testing.assert_allclose(full[key], chunked[key], rtol=0, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(full[key], chunked[key], err_msg=key)


def test_all_padded_gts_give_background():
    case = load_case("gt50")
    case = dict(case, gt_labels=-np.ones_like(case["gt_labels"]))  # boxes kept, all padding
    out = run_assigner([case, case])
    assert np.all(out["assigned_gt_index"] == -1)
    assert np.all(out["labels"] == -1)
    assert np.all(out["assign_metrics"] == 0.0)
    assert np.all(out["target_boxes"] == 0.0)
    assert not out["foreground_mask"].any()


def test_zero_gt_slots_give_background():
    case = load_case("gt0")
    n = len(case["priors"])
    out = DynamicSoftLabelAssigner()(
        case["priors"], case["pred_scores"][None], case["pred_bboxes"][None],
        np.zeros((1, 0, 4), np.float32), np.zeros((1, 0), np.int64),
    )
    out = {k: to_numpy(v) for k, v in out.items()}
    assert out["assigned_gt_index"].shape == (1, n)
    assert np.all(out["assigned_gt_index"] == -1) and np.all(out["labels"] == -1)
    assert np.all(out["assign_metrics"] == 0.0) and np.all(np.isfinite(out["target_boxes"]))


@pytest.mark.parametrize("seed", [0, 1])
def test_random_cases_match_numpy_reference(seed):
    """The numpy transcription of mmdet (itself checked on the fixtures below)."""
    case = synthetic_case(seed, num_gts=8)
    out = run_assigner([case])
    index, metrics = numpy_reference_assign(
        case["priors"], case["pred_scores"], case["pred_bboxes"], case["gt_bboxes"], case["gt_labels"])
    assert (index >= 0).sum() > 0
    np.testing.assert_array_equal(out["assigned_gt_index"][0], index)
    np.testing.assert_allclose(out["assign_metrics"][0], metrics, atol=METRIC_ABS_TOL)


def test_numpy_reference_reproduces_fixtures():
    for name in CASES:
        case = load_case(name)
        index, metrics = numpy_reference_assign(
            case["priors"], case["pred_scores"], case["pred_bboxes"], case["gt_bboxes"],
            case["gt_labels"], case["gt_centers"])
        np.testing.assert_array_equal(index, case["gt_inds"] - 1, err_msg=name)


def test_centre_prior_overflow_gives_no_nan():
    """A 640² image-sized GT: 10**(d − 3) is inf far from its centre (d > 41)."""
    case = synthetic_case(3, image_size=640, num_gts=3, big_gt=True)
    dsl = DynamicSoftLabelAssigner()
    boxes, labels, _ = pad_gts([case])
    cost = to_numpy(maybe_jit(dsl.compute_cost)(
        case["priors"], case["pred_scores"][None], case["pred_bboxes"][None], boxes, labels)["cost"])
    assert not np.isnan(cost).any()
    assert (cost == np.finfo(np.float32).max).any()  # overflowed pairs exist (clamped, not NaN)
    out = run_assigner([case])
    for v in out.values():
        assert not np.isnan(v.astype(np.float64)).any()
    index, metrics = numpy_reference_assign(
        case["priors"], case["pred_scores"], case["pred_bboxes"], case["gt_bboxes"], case["gt_labels"])
    np.testing.assert_array_equal(out["assigned_gt_index"][0], index)
    np.testing.assert_allclose(out["assign_metrics"][0], metrics, atol=METRIC_ABS_TOL)


def test_mask_centers_of_mass_matches_numpy():
    case = load_case("gt_masks")
    np.testing.assert_allclose(
        to_numpy(mask_centers_of_mass(case["gt_masks"])), case["gt_centers"], rtol=1e-6, atol=1e-4)


def test_inputs_are_not_differentiated():
    """The assigner runs under stop_gradient; zero gradient reaches predictions."""
    backend = keras.config.backend()
    case = load_case("gt1")
    boxes, labels, _ = pad_gts([case])
    dsl = DynamicSoftLabelAssigner()
    logits = case["pred_scores"][None]
    pred = case["pred_bboxes"][None]
    if backend == "jax":
        import jax

        grad = jax.grad(lambda b: dsl(case["priors"], logits, b, boxes, labels)["assign_metrics"].sum())(pred)
        assert np.all(np.asarray(grad) == 0)
    elif backend == "torch":
        import torch

        b = torch.tensor(pred, requires_grad=True)
        m = dsl(case["priors"], logits, b, boxes, labels)["assign_metrics"].sum()
        assert not m.requires_grad
    else:
        import tensorflow as tf

        b = tf.Variable(pred)
        with tf.GradientTape() as tape:
            m = tf.reduce_sum(dsl(case["priors"], logits, b, boxes, labels)["assign_metrics"])
        assert tape.gradient(m, b) is None


def test_eager_call_matches_fixture():
    """Without any jit (the tests above jit on JAX)."""
    cases = [load_case(n) for n in ["gt50", "gt_masks"]]
    out = run_assigner(cases, jit=False)
    for b, case in enumerate(cases):
        check_against_fixture(out, case, b)


@pytest.mark.backends("jax")
def test_jax_jit_matches_fixture():
    import jax

    cases = [load_case(n) for n in ["gt50", "gt_masks"]]
    boxes, labels, centers = pad_gts(cases)
    args = (
        cases[0]["priors"],
        np.stack([c["pred_scores"] for c in cases]),
        np.stack([c["pred_bboxes"] for c in cases]),
        boxes,
        labels,
        centers,
    )
    dsl = DynamicSoftLabelAssigner()
    jitted = jax.jit(lambda *a: dsl(*a[:5], gt_centers=a[5]))(*args)
    for b, case in enumerate(cases):
        check_against_fixture({k: np.asarray(v) for k, v in jitted.items()}, case, b)


@pytest.mark.backends("tensorflow")
def test_tensorflow_xla_matches_fixture():
    import tensorflow as tf

    cases = [load_case(n) for n in ["gt50", "gt_masks"]]
    boxes, labels, centers = pad_gts(cases)
    dsl = DynamicSoftLabelAssigner()
    fn = tf.function(lambda *a: dsl(*a[:5], gt_centers=a[5]), jit_compile=True)
    out = fn(
        tf.constant(cases[0]["priors"]),
        tf.constant(np.stack([c["pred_scores"] for c in cases])),
        tf.constant(np.stack([c["pred_bboxes"] for c in cases])),
        tf.constant(boxes),
        tf.constant(labels),
        tf.constant(centers),
    )
    for b, case in enumerate(cases):
        check_against_fixture({k: v.numpy() for k, v in out.items()}, case, b)
