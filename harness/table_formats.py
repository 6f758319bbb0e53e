"""Comparison tables as Markdown, LaTeX (booktabs) and standalone HTML, and as tidy CSV.

The wide formats print the same cell: the value, the bootstrap interval in brackets for runs with
``--ci``, and the delta to the row's reference in parentheses, the best value per column in bold;
a column names each row's reference, and the notes under a table give its caveats. The CSV is
tidy: one line per row, metric and value, with every number in a numeric column of its own.
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
    title = f"{table.task} / {table.split}"
    return title if table.comparable else f"{title}: not comparable with published results"


def notes(table: ComparisonTable) -> list[str]:
    """What a reader needs under the table: what the marks mean, why the runs stand apart, then
    each row's caveats; a table of one row has neither deltas nor a best value, so its notes say
    only what applies."""
    sentences = list(table.notes)
    marks = []
    if table.has_deltas:
        marks.append(f"Deltas in parentheses are against the row named in column {AGAINST!r}.")
    if len(table.rows) > 1:
        marks.append("Bold marks the best value per column (lowest for rank metrics).")
    if table.has_intervals:
        marks.append("Brackets: bootstrap 95% confidence interval of the run (percentile, 1000 resamples).")
    if marks:
        sentences.insert(0, " ".join(marks))
    sentences += [f"{row.label}: {caveat}" for row in table.rows for caveat in row.caveats]
    return sentences


def note(table: ComparisonTable) -> str:
    """The notes as one paragraph (a LaTeX caption, a plot footnote)."""
    return " ".join(text if text.endswith(".") else text + "." for text in notes(table))


AGAINST = "deltas against"


def _header(table: ComparisonTable) -> list[str]:
    return ["model", "type", *([AGAINST] if table.has_deltas else []), *table.metrics]


def _body(table: ComparisonTable, digits: int, bold: Callable[[str], str]) -> list[list[str]]:
    body = []
    for index, row in enumerate(table.rows):
        reference = table.reference_of(index)
        against = [reference.label if reference is not None else ""] if table.has_deltas else []
        cells = [cell_text(table, index, metric, digits, bold) for metric in table.metrics]
        body.append([row.label, row.kind, *against, *cells])
    return body


def _label_columns(table: ComparisonTable) -> int:
    return 3 if table.has_deltas else 2


def render_markdown(tables: Sequence[ComparisonTable], digits: int = 2) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    parts = []
    for table in tables:
        lines = [
            f"### {escape(heading(table))}",
            "",
            "| " + " | ".join(escape(h) for h in _header(table)) + " |",
            "|" + "|".join([":--"] * _label_columns(table) + ["--:"] * len(table.metrics)) + "|",
        ]
        for cells in _body(table, digits, lambda text: f"**{text}**"):
            lines.append("| " + " | ".join(escape(cell) for cell in cells) + " |")
        lines.append("")
        lines += [f"- {escape(text)}" for text in notes(table)]
        parts.append("\n".join(lines + ([""] if notes(table) else [])))
    return "\n".join(parts)


CSV_COLUMNS = (
    "task", "split", "comparable", "row", "type", "metric", "value", "reference", "reference_value",
    "delta", "ci_low", "ci_high", "best", "lower_is_better", "source",
)


def _csv_number(value: float | None) -> str:
    """Twelve significant digits: every digit a metric carries, without the float noise of a
    difference (``0.19999999999999574``); empty where unknown (and for NaN)."""
    return "" if value is None or math.isnan(value) else f"{value:.12g}"


def render_csv(tables: Sequence[ComparisonTable], digits: int = 2) -> str:
    """Tidy data: one line per (row, task, split, metric) with the numbers in their own columns
    (``value``, ``reference_value``, ``delta``, ``ci_low``, ``ci_high``) unrounded, empty
    where unknown, never a mark inside a number. ``best`` is judged at ``digits`` decimals, as the
    wide tables print it; ``comparable`` is false for runs set apart from published rows."""
    # Imported here: harness.compare imports this module to render its tables.
    from harness.compare import lower_is_better

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for table in tables:
        for index, row in enumerate(table.rows):
            reference = table.reference_of(index)
            for metric in table.metrics:
                value = table.value(index, metric)
                if value is None:
                    continue
                interval = row.intervals.get(metric)
                writer.writerow([
                    table.task, table.split, str(table.comparable).lower(), row.label, row.kind, metric,
                    _csv_number(value),
                    "" if reference is None else reference.label,
                    _csv_number(None if reference is None else reference.metrics.get(metric)),
                    _csv_number(table.delta(index, metric)),
                    _csv_number(None if interval is None else interval[0]),
                    _csv_number(None if interval is None else interval[1]),
                    str(index in table.best_rows(metric, digits)).lower(),
                    str(lower_is_better(metric)).lower(),
                    row.source,
                ])
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
            rf"\begin{{tabular}}{{{'l' * _label_columns(table)}{'r' * len(table.metrics)}}}",
            r"\toprule",
            " & ".join(latex_escape(h) for h in _header(table)) + r" \\",
            r"\midrule",
        ]
        body = _body(table, digits, lambda text: rf"\textbf{{{text}}}")
        for index, cells in enumerate(body):
            if index > 0 and table.rows[index].kind != table.rows[index - 1].kind:
                lines.append(r"\midrule")
            columns = _label_columns(table)
            escaped = [*(latex_escape(cell) for cell in cells[:columns]), *cells[columns:]]
            lines.append(" & ".join(escaped) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


_HTML_STYLE = (
    "body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:.5em}"
    "th,td{padding:.25em .6em;border-bottom:1px solid #ccc}td.num{text-align:right}"
    "tr.run{background:#eef4ff}ul.note{color:#555;font-size:90%}"
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
        lines.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in _header(table)) + "</tr>")
        lines += ["</thead>", "<tbody>"]
        body = _body(table, digits, lambda text: f"<strong>{text}</strong>")
        columns = _label_columns(table)
        for row, cells in zip(table.rows, body, strict=True):
            label_cells = "".join(f"<td>{html.escape(cell)}</td>" for cell in cells[:columns])
            # Values contain only digits, signs and our own <strong>; nothing to escape.
            value_cells = "".join(f'<td class="num">{cell}</td>' for cell in cells[columns:])
            lines.append(f'<tr class="{row.kind}">{label_cells}{value_cells}</tr>')
        lines += ["</tbody>", "</table>"]
        if notes(table):
            items = "".join(f"<li>{html.escape(text)}</li>" for text in notes(table))
            lines.append(f'<ul class="note">{items}</ul>')
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
