"""A `DatasetReport` (`keras_rtmdet.data.dataset_report`) as a rich table, for `rtmdet train` to print."""

from rich.markup import escape
from rich.table import Table

# Class counts per row of the nested per-class table (name, count pairs).
CLASSES_PER_ROW = 4


def _count(value):
    return "unknown" if value is None else f"{value:,}"


def _reasons(counts):
    """`{reason: n}` as one line, largest first: `crowd: 8,595 · width or height < 1 px: 4,124`."""
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    return " · ".join(f"{escape(str(reason))}: {n:,}" for reason, n in ranked)


def _images_line(report):
    line = _count(report.images)
    if report.empty_images is not None:
        line += f" ({report.empty_images:,} without objects)"
    return line


def _skipped_line(report):
    if not report.skipped:
        return "none"
    examples = "\n".join(f"  {escape(name)}: {escape(reason)}" for name, reason in report.skipped_examples)
    more = report.skipped_images - len(report.skipped_examples)
    tail = f"\n  … and {more:,} more" if more > 0 else ""
    return f"{report.skipped_images:,} ({_reasons(report.skipped)})" + (f"\n{examples}{tail}" if examples else "")


def _per_class_table(instances):
    """Class names and counts side by side, `CLASSES_PER_ROW` pairs per row."""
    grid = Table(show_header=False, box=None, padding=(0, 1))
    for _ in range(min(CLASSES_PER_ROW, len(instances))):
        grid.add_column()
        grid.add_column(justify="right")
    items = list(instances.items())
    for start in range(0, len(items), CLASSES_PER_ROW):
        row = items[start : start + CLASSES_PER_ROW]
        cells = [cell for name, n in row for cell in (escape(str(name)), f"{n:,}" if n else "[red]0[/]")]
        grid.add_row(*cells, *[""] * (2 * min(CLASSES_PER_ROW, len(items)) - len(cells)))
    return grid


def dataset_report_table(report, title=None):
    """A `rich.table.Table` of a `DatasetReport`: images, backgrounds, skipped images, objects and why some were dropped.

    Args:
        report: a `DatasetReport` (`dataset_report(source)`).
        title: the table's title (default: "Dataset " and the report's name).
    """
    table = Table(title=title or f"Dataset {escape(report.name)}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("images", _images_line(report))
    if report.left_out_empty:
        table.add_row("left out", f"{report.left_out_empty:,} without objects (not trained on)")
    table.add_row("skipped", _skipped_line(report))
    if report.instances is None:
        table.add_row("objects", "unknown (counted as the data streams)")
    else:
        classes = sum(1 for n in report.instances.values() if n)
        table.add_row("objects", f"{report.objects:,} in {classes} of {len(report.instances)} classes")
    if report.dropped:
        table.add_row("not targets", f"{sum(report.dropped.values()):,} ({_reasons(report.dropped)})")
    if report.clipped:
        table.add_row("clipped", f"{report.clipped:,} partly outside their image (clipped by the transforms)")
    if report.instances:
        table.add_row("per class", _per_class_table(report.instances))
    for note in report.notes:
        table.add_row("note", escape(note))
    return table
