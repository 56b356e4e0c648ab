"""The training-results figure: loss and mAP curves from a run's results.csv."""

import csv
import math

LOSS_PREFIX = "loss_"
# COCO stats (det / Ins) and DOTA ones (rotated).
AP_COLUMNS = ("AP", "AP50", "AP75", "segm_AP", "segm_AP50", "segm_AP75", "mAP50", "mAP75", "mmAP")


def read_results(results_csv):
    """Columns of a results.csv as {name: [float or nan]}, sorted by epoch.

    A resumed run may repeat epochs (those between its last evaluation and
    the interruption): the last row of each epoch wins.
    """
    with open(results_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    by_epoch = {}
    for index, row in enumerate(rows):
        by_epoch[_float(row.get("epoch"), default=index + 1)] = row
    epochs = sorted(by_epoch)
    names = list(rows[0]) if rows else []
    columns = {name: [_float(by_epoch[e].get(name)) for e in epochs] for name in names}
    columns["epoch"] = epochs
    return columns


def _float(text, default=math.nan):
    try:
        return float(text)
    except (TypeError, ValueError):
        return default


def _plot_curves(axis, epochs, columns, names, title, empty_text):
    from matplotlib.ticker import MaxNLocator

    drawn = False
    for name in names:
        values = columns.get(name)
        if values is None or all(math.isnan(v) for v in values):
            continue
        axis.plot(epochs, values, marker="o", markersize=3, label=name)
        drawn = True
    axis.set_title(title)
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    if drawn:
        axis.legend()
    else:
        axis.text(0.5, 0.5, empty_text, ha="center", va="center", transform=axis.transAxes)


def plot_results(results_csv, out_png, loss_csv=None):
    """Write a PNG with the loss curves (loss, loss_*) and mAP curves (`AP_COLUMNS`) against epoch.

    Missing columns are skipped (a panel without any says so); a single row
    is drawn as points. `loss_csv`: a Keras `CSVLogger` file with every
    epoch's losses (results.csv has only the evaluated epochs); its 0-based
    epochs are shifted to results.csv's 1-based ones.

    Returns: `out_png`.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    columns = read_results(results_csv)
    loss_columns = columns
    if loss_csv is not None:
        loss_columns = read_results(loss_csv)
        loss_columns["epoch"] = [e + 1 for e in loss_columns["epoch"]]
    losses = [n for n in loss_columns if n == "loss" or n.startswith(LOSS_PREFIX)]
    figure, (loss_axis, ap_axis) = plt.subplots(1, 2, figsize=(11, 4))
    _plot_curves(loss_axis, loss_columns["epoch"], loss_columns, losses, "training loss", "no loss columns")
    _plot_curves(ap_axis, columns["epoch"], columns, AP_COLUMNS, "validation mAP", "no AP columns")
    figure.tight_layout()
    figure.savefig(out_png, dpi=100)
    plt.close(figure)
    return out_png
