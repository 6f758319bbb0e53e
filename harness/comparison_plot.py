"""``harness compare --plot``: grouped bars per metric, one series per table row.

Drawn on a bare ``Figure`` with the Agg canvas (no pyplot), so plotting works headless in CI and
leaves no global figure state behind. Runs are hatched so they stand out from published rows;
with ``--ci`` their bars carry the bootstrap interval as error bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.compare import RUN, ComparisonTable, lower_is_better


def plot_tables(tables: Sequence[ComparisonTable]) -> Figure:
    """One axes per table (stacked), metrics on the x axis, a bar series per row."""
    widest = max(len(table.metrics) for table in tables)
    figure = Figure(figsize=(max(6.0, 1.2 * widest + 3.0), 3.6 * len(tables)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(tables), 1, squeeze=False)[:, 0]
    for ax, table in zip(axes, tables, strict=True):
        positions = np.arange(len(table.metrics))
        width = 0.8 / len(table.rows)
        for index, row in enumerate(table.rows):
            heights = [row.metrics.get(metric, np.nan) for metric in table.metrics]
            errors = None
            if row.intervals:
                errors = np.array([
                    [h - row.intervals[m][0], row.intervals[m][1] - h] if m in row.intervals else [0.0, 0.0]
                    for m, h in zip(table.metrics, heights, strict=True)
                ]).T
            ax.bar(
                positions + (index - (len(table.rows) - 1) / 2) * width,
                heights,
                width,
                label=row.label,
                yerr=errors,
                capsize=2 if errors is not None else 0,
                hatch="//" if row.kind == RUN else None,
                edgecolor="black" if row.kind == RUN else None,
            )
        labels = [f"{m} (lower better)" if lower_is_better(m) else m for m in table.metrics]
        ax.set_xticks(positions, labels, rotation=30, ha="right")
        ax.set_title(f"{table.task} / {table.split}")
        ax.legend(fontsize="small", ncols=2 if len(table.rows) > 6 else 1, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure


def save_plot(tables: Sequence[ComparisonTable], path: Path) -> Figure:
    """Draw ``tables`` and write the PNG; returns the figure so callers can inspect it."""
    figure = plot_tables(tables)
    figure.savefig(path, format="png", dpi=120)
    return figure
