"""Comparison tables as Markdown, CSV, LaTeX (booktabs) and standalone HTML.

Every format prints the same cell: the value, the bootstrap interval in brackets for runs with
``--ci``, and the delta to the reference row in parentheses; the best value per column is bold
(a trailing ``*`` in CSV, whose delta and interval get their own numeric columns instead).
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.compare import ComparisonTable

MISSING = "-"
FORMATS = ("md", "csv", "latex", "html")


def format_number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def format_delta(delta: float, digits: int) -> str:
    """Signed, and never ``-0.00``: a delta that rounds to zero reads as no change."""
    rounded = round(delta, digits)
    return f"{(rounded if rounded != 0 else 0.0):+.{digits}f}"


def cell_text(table: ComparisonTable, row: int, metric: str, digits: int, bold: Callable[[str], str]) -> str:
    """One cell as shown in Markdown, LaTeX and HTML; ``bold`` wraps the best value."""
    value = table.value(row, metric)
    if value is None:
        return MISSING
    text = format_number(value, digits)
    if row in table.best_rows(metric, digits):
        text = bold(text)
    interval = table.rows[row].intervals.get(metric)
    if interval is not None:
        text += f" [{format_number(interval[0], digits)}, {format_number(interval[1], digits)}]"
    delta = table.delta(row, metric)
    if delta is not None:
        text += f" ({format_delta(delta, digits)})"
    return text


def heading(table: ComparisonTable) -> str:
    return f"{table.task} / {table.split}"


def note(table: ComparisonTable) -> str:
    """What the marks in a table mean, including which row the deltas are against; a table of
    one row has neither deltas nor a best value, so its note says only what applies."""
    sentences = []
    if len(table.rows) > 1:
        reference = table.rows[table.reference]
        sentences.append(
            f"Deltas in parentheses are against {reference.label} ({reference.kind}). "
            "Bold marks the best value per column (lowest for rank metrics)."
        )
    if table.has_intervals:
        sentences.append("Brackets: bootstrap 95% confidence interval of the run (percentile, 1000 resamples).")
    return " ".join(sentences)


def _body(table: ComparisonTable, digits: int, bold: Callable[[str], str]) -> list[list[str]]:
    return [
        [row.label, row.kind, *(cell_text(table, index, metric, digits, bold) for metric in table.metrics)]
        for index, row in enumerate(table.rows)
    ]


def render_markdown(tables: Sequence[ComparisonTable], digits: int = 2) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    parts = []
    for table in tables:
        lines = [
            f"### {escape(heading(table))}",
            "",
            "| " + " | ".join(["model", "type", *table.metrics]) + " |",
            "|" + "|".join([":--", ":--", *("--:" for _ in table.metrics)]) + "|",
        ]
        for cells in _body(table, digits, lambda text: f"**{text}**"):
            lines.append("| " + " | ".join(escape(cell) for cell in cells) + " |")
        lines += ["", escape(note(table)), ""] if note(table) else [""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


def render_csv(tables: Sequence[ComparisonTable], digits: int = 2) -> str:
    """One CSV for all tables: a row per table row, the union of metric columns (empty where a
    table lacks the metric), each followed by its delta and, with intervals, its bounds."""
    metrics = list(dict.fromkeys(metric for table in tables for metric in table.metrics))
    with_ci = any(table.has_intervals for table in tables)
    suffixes = ["", "_delta", *(["_ci_low", "_ci_high"] if with_ci else [])]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["task", "split", "model", "type", "reference", *(m + s for m in metrics for s in suffixes)])
    for table in tables:
        for index, row in enumerate(table.rows):
            cells = [table.task, table.split, row.label, row.kind, "yes" if index == table.reference else ""]
            for metric in metrics:
                value = table.value(index, metric) if metric in table.metrics else None
                delta = table.delta(index, metric) if metric in table.metrics else None
                interval = row.intervals.get(metric)
                shown = "" if value is None else format_number(value, digits)
                if value is not None and index in table.best_rows(metric, digits):
                    shown += "*"
                cells += [shown, "" if delta is None else format_delta(delta, digits)]
                if with_ci:
                    cells += ["", ""] if interval is None else [format_number(v, digits) for v in interval]
            writer.writerow(cells)
    return out.getvalue()


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def render_latex(tables: Sequence[ComparisonTable], digits: int = 2) -> str:
    """A ``table`` float per task and split; needs ``\\usepackage{booktabs}``. Published rows and
    runs are separated by a rule."""
    parts = []
    for table in tables:
        lines = [
            r"% requires \usepackage{booktabs}",
            r"\begin{table}[ht]",
            r"\centering",
            rf"\caption{{{latex_escape('. '.join(filter(None, [heading(table), note(table)])))}}}",
            rf"\begin{{tabular}}{{ll{'r' * len(table.metrics)}}}",
            r"\toprule",
            " & ".join(latex_escape(h) for h in ["Model", "Type", *table.metrics]) + r" \\",
            r"\midrule",
        ]
        body = _body(table, digits, lambda text: rf"\textbf{{{text}}}")
        for index, cells in enumerate(body):
            if index > 0 and table.rows[index].kind != table.rows[index - 1].kind:
                lines.append(r"\midrule")
            escaped = [latex_escape(cells[0]), latex_escape(cells[1]), *cells[2:]]
            lines.append(" & ".join(escaped) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


_HTML_STYLE = (
    "body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:.5em}"
    "th,td{padding:.25em .6em;border-bottom:1px solid #ccc}td.num{text-align:right}"
    "tr.run{background:#eef4ff}p.note{color:#555;font-size:90%}"
)


def render_html(tables: Sequence[ComparisonTable], digits: int = 2) -> str:
    """A standalone page (no external assets) holding one table per task and split."""
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><title>harness compare</title>',
        f"<style>{_HTML_STYLE}</style></head>",
        "<body>",
    ]
    for table in tables:
        lines += [f"<h2>{html.escape(heading(table))}</h2>", "<table>", "<thead>"]
        lines.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in ["model", "type", *table.metrics]) + "</tr>")
        lines += ["</thead>", "<tbody>"]
        body = _body(table, digits, lambda text: f"<strong>{text}</strong>")
        for row, cells in zip(table.rows, body, strict=True):
            label_cells = "".join(f"<td>{html.escape(cell)}</td>" for cell in cells[:2])
            # Values contain only digits, signs and our own <strong>; nothing to escape.
            value_cells = "".join(f'<td class="num">{cell}</td>' for cell in cells[2:])
            lines.append(f'<tr class="{row.kind}">{label_cells}{value_cells}</tr>')
        lines += ["</tbody>", "</table>"]
        if note(table):
            lines.append(f'<p class="note">{html.escape(note(table))}</p>')
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[Sequence[ComparisonTable], int], str]] = {
    "md": render_markdown,
    "csv": render_csv,
    "latex": render_latex,
    "html": render_html,
}


def render(tables: Sequence[ComparisonTable], fmt: str, digits: int = 2) -> str:
    """The tables in ``fmt`` (one of ``FORMATS``)."""
    if fmt not in RENDERERS:
        raise ConfigError(f"unknown table format {fmt!r}; choose from {', '.join(FORMATS)}")
    return RENDERERS[fmt](tables, digits)
