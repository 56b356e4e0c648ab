"""Order-independent comparison of two detection sets (parity checks)."""

import numpy as np

# The reference fixtures' tolerances for final detections.
BOX_TOLERANCE_PX = 0.02
SCORE_TOLERANCE = 2e-4


def match_detections(ours, reference, box_tol=BOX_TOLERANCE_PX, score_tol=SCORE_TOLERANCE, score_floors=()):
    """Pair detections of two implementations regardless of their order.

    A pair matches when the labels are equal, every box coordinate is within
    `box_tol` px and the scores within `score_tol`. Reference detections are
    taken in descending score order, each paired with the closest free one of
    ours: near-equal scores may be ordered differently by the two sides.

    Args:
        ours, reference: (boxes (K, 4), scores (K,), labels (K,)) each.
        score_floors: scores (the score threshold, the lowest kept score)
            near which an unpaired detection is excused: a near-tie there may
            legitimately fall on either side of the cut.

    Returns: dict with `matched`, `max_box_delta`, `max_score_delta` (over
    matched pairs) and `unexplained_ours` / `unexplained_reference`: indices
    of unpaired detections not excused by `score_floors`.
    """
    boxes, scores, labels = (np.asarray(a) for a in ours)
    ref_boxes, ref_scores, ref_labels = (np.asarray(a) for a in reference)
    box_delta = np.abs(boxes[:, None, :].astype(np.float64) - ref_boxes[None].astype(np.float64))
    box_delta = box_delta.max(-1) if box_delta.size else np.zeros((len(boxes), len(ref_boxes)))
    score_delta = np.abs(scores[:, None].astype(np.float64) - ref_scores[None].astype(np.float64))
    ok = (labels[:, None] == ref_labels[None]) & (box_delta <= box_tol) & (score_delta <= score_tol)
    free = np.ones(len(boxes), bool)
    ref_used = np.zeros(len(ref_boxes), bool)
    max_box, max_score = 0.0, 0.0
    for j in np.argsort(-ref_scores, kind="stable"):
        candidates = np.flatnonzero(ok[:, j] & free)
        if candidates.size == 0:
            continue
        i = candidates[np.argmin(box_delta[candidates, j])]
        free[i], ref_used[j] = False, True
        max_box = max(max_box, float(box_delta[i, j]))
        max_score = max(max_score, float(score_delta[i, j]))

    def excused(score):
        return any(abs(score - floor) <= score_tol for floor in score_floors)

    return {
        "matched": int(ref_used.sum()),
        "max_box_delta": max_box,
        "max_score_delta": max_score,
        "unexplained_ours": [int(i) for i in np.flatnonzero(free) if not excused(scores[i])],
        "unexplained_reference": [int(j) for j in np.flatnonzero(~ref_used) if not excused(ref_scores[j])],
    }
