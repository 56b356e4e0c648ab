"""PNG figures of an evaluation: precision-recall curves per class and the confusion matrix."""

import os

import numpy as np

# Up to this many classes the figures name each one (a legend entry, matrix tick labels and counts).
MAX_NAMED_CLASSES = 20


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def plot_precision_recall(curves, out_png, iou="IoU=0.50"):
    """Write `precision_recall_curves`' curves at `iou` (one thin line per class, their mean bold); returns `out_png`."""
    plt = _pyplot()
    recall = np.asarray(curves["recall"])
    classes = curves["classes"]
    figure, axis = plt.subplots(figsize=(7, 5.5))
    named = len(classes) <= MAX_NAMED_CLASSES
    for name, by_iou in classes.items():
        precision = np.asarray(by_iou[iou])
        axis.plot(recall, precision, linewidth=1, alpha=0.8 if named else 0.3, label=f"{name} {precision.mean():.3f}" if named else None)
    if classes:
        mean = np.mean([by_iou[iou] for by_iou in classes.values()], axis=0)
        axis.plot(recall, mean, color="black", linewidth=3, label=f"all classes {mean.mean():.3f}")
        axis.legend(loc="lower left", fontsize=8)
    else:
        axis.text(0.5, 0.5, "no class with ground truth", ha="center", va="center", transform=axis.transAxes)
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"precision-recall, {iou}")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_png, dpi=110)
    plt.close(figure)
    return out_png


def plot_confusion_matrix(matrix, class_names, out_png, title="confusion matrix"):
    """Write `confusion_matrix`'s counts, each ground-truth row normalised to 1; returns `out_png`."""
    plt = _pyplot()
    matrix = np.asarray(matrix, np.float64)
    names = [*class_names, "background"]
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = min(4 + 0.45 * len(names), 24)
    figure, axis = plt.subplots(figsize=(size, size * 0.85))
    image = axis.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the ground-truth row")
    if len(names) <= MAX_NAMED_CLASSES + 1:
        ticks = np.arange(len(names))
        axis.set_xticks(ticks, names, rotation=45, ha="right")
        axis.set_yticks(ticks, names)
        for (row, column), count in np.ndenumerate(matrix):
            if count:
                colour = "white" if share[row, column] > 0.5 else "black"
                axis.text(column, row, f"{int(count)}", ha="center", va="center", color=colour, fontsize=8)
    axis.set(xlabel="predicted", ylabel="ground truth", title=title)
    figure.tight_layout()
    figure.savefig(out_png, dpi=110)
    plt.close(figure)
    return out_png


def write_evaluation_figures(stats, out_dir, prefix=""):
    """The PR curves (IoU 0.5) and confusion matrix of an `evaluate_coco` / `evaluate_dota` dict as PNGs; their paths.

    Files: `<prefix>precision_recall.png` (when `stats` has `pr_curves`) and
    `<prefix>confusion_matrix.png` (when it has `confusion_matrix`).
    """
    written = []
    if "pr_curves" in stats:
        written.append(plot_precision_recall(stats["pr_curves"], os.path.join(out_dir, f"{prefix}precision_recall.png")))
    if "confusion_matrix" in stats:
        record = stats["confusion_matrix"]
        title = f"confusion matrix (score ≥ {record['score_threshold']}, IoU ≥ {record['iou_threshold']})"
        path = os.path.join(out_dir, f"{prefix}confusion_matrix.png")
        written.append(plot_confusion_matrix(record["matrix"], record["classes"][:-1], path, title=title))
    return written
