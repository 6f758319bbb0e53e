"""``harness compare --plot``: per task, each run's headline metrics against its reference row.

One row of panels per table (task and split) and one small axis per headline metric, so metrics
of different scales (CIDEr beside BLEU, ranks beside recalls) never share an axis. On each axis a
run is a filled dot in its own colour, the same colour in every panel, with its bootstrap
interval as an error bar when ``--ci`` computed one; the published row its deltas are against is
a hollow black diamond at the same position, joined to the dot. Every value is written beside its
marker and the delta beside the run's. Tables of runs set apart from published rows (toy data, a
``--limit`` subset) are drawn without a reference and titled as not comparable.

Drawn on a bare ``Figure`` with the Agg canvas (no pyplot), so plotting works headless in CI and
leaves no global figure state behind.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D

from harness.compare import RUN, ComparisonTable, lower_is_better
from harness.table_formats import format_delta

MAX_PANELS = 5
"""Headline metrics drawn per task; tasks name at most five, a record without any shows its first five."""
PALETTE = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
)
"""Okabe-Ito colours: distinguishable with the common colour-vision deficiencies and in greyscale."""
REFERENCE_STYLE = {"marker": "D", "markersize": 7, "markerfacecolor": "white", "markeredgecolor": "black",
                   "markeredgewidth": 1.2, "linestyle": "none"}
PANEL_WIDTH = 2.7
PANEL_HEIGHT = 2.5


def run_colours(tables: Sequence[ComparisonTable]) -> dict[str, str]:
    """One colour per model (and settings) across every panel, in order of first appearance:
    ``blip`` keeps its colour whichever task's weights a panel shows."""
    keys = dict.fromkeys(row.colour_key for table in tables for row in table.rows if row.kind == RUN)
    return {key: PALETTE[index % len(PALETTE)] for index, key in enumerate(keys)}


def _panel_metrics(table: ComparisonTable) -> list[str]:
    """The headline metrics of the table's runs, in the task's order."""
    runs = [row for row in table.rows if row.kind == RUN]
    named = dict.fromkeys(m for row in runs for m in (row.headline or tuple(row.metrics)) if m in table.metrics)
    return list(named)[:MAX_PANELS]


def _draw_metric(ax: Axes, table: ComparisonTable, metric: str, colours: dict[str, str], digits: int) -> None:
    runs = [index for index, row in enumerate(table.rows) if row.kind == RUN]
    values: list[float] = []
    for position, index in enumerate(runs):
        row = table.rows[index]
        value = row.metrics.get(metric)
        if value is None:
            continue
        colour = colours[row.colour_key]
        reference = table.reference_of(index)
        base = None if reference is None else reference.metrics.get(metric)
        interval = row.intervals.get(metric)
        if base is not None:
            ax.plot([position, position], [base, value], color=colour, linewidth=1, alpha=0.5, zorder=1)
            ax.plot([position], [base], zorder=2, **REFERENCE_STYLE)
            ax.annotate(f"{base:.{digits}f}", (position, base), xytext=(-6, 0), textcoords="offset points",
                        ha="right", va="center", fontsize=7, color="0.35")
            values.append(base)
        if interval is not None:
            ax.errorbar([position], [value], yerr=[[value - interval[0]], [interval[1] - value]],
                        color=colour, capsize=3, linewidth=1, zorder=3)
            values += list(interval)
        ax.plot([position], [value], "o", color=colour, markersize=7, zorder=4)
        delta = table.delta(index, metric)
        text = f"{value:.{digits}f}" + (f"\n{format_delta(delta, digits)}" if delta is not None else "")
        ax.annotate(text, (position, value), xytext=(7, 0), textcoords="offset points", ha="left",
                    va="center", fontsize=7, color=colour, fontweight="bold")
        values.append(value)
    if values:
        low, high = min(values), max(values)
        pad = max((high - low) * 0.35, abs(high) * 0.02, 0.5)
        ax.set_ylim(low - pad, high + pad)
    ax.set_xlim(-0.9, max(len(runs), 1) - 1 + 0.9)
    ax.set_xticks([])
    ax.set_title(f"{metric} (lower better)" if lower_is_better(metric) else metric, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _draw_table(
    subfigure: SubFigure, table: ComparisonTable, colours: dict[str, str], digits: int, columns: int,
) -> None:
    metrics = _panel_metrics(table)
    axes = subfigure.subplots(1, columns, squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=False):
        _draw_metric(ax, table, metric, colours, digits)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    references = {ref.label for i in range(len(table.rows)) if (ref := table.reference_of(i)) is not None}
    title = f"{table.task} / {table.split}"
    if not table.comparable:
        title += ": not comparable with published results (shown without them)"
    elif references:
        title += f": against {', '.join(sorted(references))}"
    else:
        title += ": no published row of the same model on this split"
    # About 11 characters of 10-point bold per inch: wrap so a narrow figure keeps its whole title.
    subfigure.suptitle(textwrap.fill(title, width=int(PANEL_WIDTH * columns * 11)), fontsize=10, x=0.01,
                       ha="left", fontweight="bold")


def plot_tables(tables: Sequence[ComparisonTable], digits: int = 1) -> Figure:
    """One row of small axes per table, one axis per headline metric, one colour per run."""
    columns = max(max((len(_panel_metrics(table)) for table in tables), default=1), 2)
    figure = Figure(figsize=(PANEL_WIDTH * columns, PANEL_HEIGHT * len(tables) + 0.7), layout="constrained")
    FigureCanvasAgg(figure)
    colours = run_colours(tables)
    subfigures = figure.subfigures(len(tables), 1, squeeze=False)[:, 0]
    for subfigure, table in zip(subfigures, tables, strict=True):
        _draw_table(subfigure, table, colours, digits, columns)
    handles = [Line2D([], [], marker="o", color=colour, linestyle="none", markersize=7, label=label)
               for label, colour in colours.items()]
    if any(table.has_deltas for table in tables):
        handles.append(Line2D([], [], label="published row of the same model (its value on the left; the delta "
                              "under the run's value)", **REFERENCE_STYLE))
    if any(table.has_intervals for table in tables):
        handles.append(Line2D([], [], marker="|", color="0.3", linestyle="none", markersize=10,
                              label="bootstrap 95% confidence interval"))
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize=8,
                  frameon=False)
    return figure


def save_plot(tables: Sequence[ComparisonTable], path: Path) -> Figure:
    """Draw ``tables`` and write the PNG; returns the figure so callers can inspect it."""
    figure = plot_tables(tables)
    figure.savefig(path, format="png", dpi=150)
    return figure
