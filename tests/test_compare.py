"""``harness compare``: a hand-written fixture table checked cell by cell in every format, best
markers (lowest wins for ranks), deltas, the reference row, bootstrap intervals and the plot."""

from __future__ import annotations

import argparse
import csv
import io
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from PIL import Image
from result_fixtures import write_baselines, write_record

from harness.baselines import load_baseline_file
from harness.compare import (
    ComparisonTable,
    Row,
    add_compare_parser,
    bootstrap_interval,
    build_tables,
    lower_is_better,
    run_intervals,
)
from harness.comparison_plot import save_plot
from harness.errors import ConfigError, DataError
from harness.records import load_record
from harness.table_formats import format_delta, render

NOTE = (
    "Deltas in parentheses are against Alpha (1M) (published). "
    "Bold marks the best value per column (lowest for rank metrics)."
)
# Published Alpha has every metric, Beta lacks mean_rank; the run is best on r1 and mean_rank,
# Beta on acc. Rows of another split and another task must not appear.
EXPECTED_CELLS = [
    ["model", "type", "acc", "r1", "mean_rank"],
    ["Alpha (1M)", "published", "50.00", "40.00", "3.00"],
    ["Beta (2M)", "published", "**60.00** (+10.00)", "35.00 (-5.00)", "-"],
    ["tiny (seed0)", "run", "55.50 (+5.50)", "**45.25** (+5.25)", "**2.50** (-0.50)"],
]


@pytest.fixture
def fixture_tables(tmp_path: Path) -> list[ComparisonTable]:
    run = load_record(write_record(tmp_path / "run"))
    baselines = [load_baseline_file(write_baselines(tmp_path / "toy_paper.json"))]
    return build_tables([run], baselines)


def _markdown_cells(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|")]
    del rows[1]  # the alignment row
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_markdown_cell_by_cell(fixture_tables):
    text = render(fixture_tables, "md")
    assert text.splitlines()[0] == "### toy_task / test"
    assert "|:--|:--|--:|--:|--:|" in text
    assert _markdown_cells(text) == EXPECTED_CELLS
    assert NOTE in text


def test_csv_cell_by_cell(fixture_tables):
    rows = list(csv.reader(io.StringIO(render(fixture_tables, "csv"))))
    assert rows == [
        ["task", "split", "model", "type", "reference", "acc", "acc_delta", "r1", "r1_delta", "mean_rank", "mean_rank_delta"],
        ["toy_task", "test", "Alpha (1M)", "published", "yes", "50.00", "", "40.00", "", "3.00", ""],
        ["toy_task", "test", "Beta (2M)", "published", "", "60.00*", "+10.00", "35.00", "-5.00", "", ""],
        ["toy_task", "test", "tiny (seed0)", "run", "", "55.50", "+5.50", "45.25*", "+5.25", "2.50*", "-0.50"],
    ]


def test_latex_exact(fixture_tables):
    expected = "\n".join([
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[ht]",
        r"\centering",
        r"\caption{toy\_task / test. " + NOTE + "}",
        r"\begin{tabular}{llrrr}",
        r"\toprule",
        r"Model & Type & acc & r1 & mean\_rank \\",
        r"\midrule",
        r"Alpha (1M) & published & 50.00 & 40.00 & 3.00 \\",
        r"Beta (2M) & published & \textbf{60.00} (+10.00) & 35.00 (-5.00) & - \\",
        r"\midrule",
        r"tiny (seed0) & run & 55.50 (+5.50) & \textbf{45.25} (+5.25) & \textbf{2.50} (-0.50) \\",
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
        "",
    ])
    assert render(fixture_tables, "latex") == expected


class _TableCells(HTMLParser):
    """Cells of every <tr>, with <strong> written back as ** so they compare with Markdown."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "meta":  # a void element: no end tag follows
            return
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
        elif tag == "strong":
            self.rows[-1][-1] += "**"

    def handle_endtag(self, tag):
        assert self.tags.pop() == tag, f"unbalanced </{tag}>"
        if tag == "strong":
            self.rows[-1][-1] += "**"

    def handle_data(self, data):
        if self.tags and self.tags[-1] in ("td", "th", "strong"):
            self.rows[-1][-1] += data


def test_html_cell_by_cell(fixture_tables):
    text = render(fixture_tables, "html")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    parser = _TableCells()
    parser.feed(text)
    assert parser.tags == []
    assert parser.rows == EXPECTED_CELLS
    assert "<h2>toy_task / test</h2>" in text and NOTE in text


def test_escaping_of_labels(tmp_path):
    run = load_record(write_record(tmp_path / "run", model="a|b_c&d", weights={"name": "<w>", "files": []}))
    tables = build_tables([run], [])
    assert r"a\|b_c&d (<w>)" in render(tables, "md")
    assert r"a|b\_c\&d (<w>)" in render(tables, "latex")
    assert "a|b_c&amp;d (&lt;w&gt;)" in render(tables, "html")


def test_unknown_format_is_refused(fixture_tables):
    with pytest.raises(ConfigError, match="unknown table format 'txt'"):
        render(fixture_tables, "txt")


def test_lower_is_better_names():
    assert lower_is_better("mean_rank") and lower_is_better("t2v_median_rank")
    assert not lower_is_better("r_mean") and not lower_is_better("txt_r1") and not lower_is_better("cider")


def test_best_marks_ties_at_printed_precision():
    table = ComparisonTable(
        "t", "s", ("acc", "mean_rank"),
        (Row("a", "published", {"acc": 70.004, "mean_rank": 4.0}, ""),
         Row("b", "published", {"acc": 70.001, "mean_rank": 3.999}, ""),
         Row("c", "run", {"acc": 69.0, "mean_rank": 5.0}, "")),
        reference=0,
    )
    assert table.best_rows("acc", 2) == {0, 1}
    assert table.best_rows("acc", 3) == {0}
    assert table.best_rows("mean_rank", 2) == {0, 1}
    assert table.best_rows("mean_rank", 3) == {1}
    lone = ComparisonTable("t", "s", ("acc",), (Row("a", "run", {"acc": 1.0}, ""), Row("b", "run", {}, "")), 0)
    assert lone.best_rows("acc", 2) == set()


def test_delta_never_prints_negative_zero():
    assert format_delta(-0.001, 2) == "+0.00"
    assert format_delta(-0.006, 2) == "-0.01"


def test_reference_option_picks_the_run_and_typos_are_refused(tmp_path):
    run = load_record(write_record(tmp_path / "run"))
    baselines = [load_baseline_file(write_baselines(tmp_path / "toy_paper.json"))]
    (table,) = build_tables([run], baselines, reference="TINY (seed0)")
    assert table.rows[table.reference].label == "tiny (seed0)"
    assert table.delta(0, "acc") == pytest.approx(50.0 - 55.5)
    assert table.delta(2, "acc") is None
    assert table.delta(1, "mean_rank") is None  # Beta has no rank
    with pytest.raises(ConfigError, match=r"names no row.*did you mean 'Alpha \(1M\)'"):
        build_tables([run], baselines, reference="Alpha (1m")


def test_one_table_per_task_and_split_and_metric_union(tmp_path):
    first = load_record(write_record(tmp_path / "a", metrics={"acc": 1.0, "r1": 2.0}))
    second = load_record(write_record(tmp_path / "b", split="val", metrics={"acc": 3.0}))
    third = load_record(write_record(tmp_path / "c", metrics={"r1": 4.0, "extra": 5.0}))
    baselines = [load_baseline_file(write_baselines(tmp_path / "toy_paper.json"))]
    tables = build_tables([first, second, third], baselines)
    assert [(t.task, t.split) for t in tables] == [("toy_task", "test"), ("toy_task", "val")]
    assert tables[0].metrics == ("acc", "r1", "extra", "mean_rank")
    # Two runs with the same label get their directory appended.
    assert [r.label for r in tables[0].rows] == ["Alpha (1M)", "Beta (2M)", "tiny (seed0) [a]", "tiny (seed0) [c]"]
    assert [r.label for r in tables[1].rows] == ["Gamma (other split)", "tiny (seed0)"]


def test_bootstrap_interval_is_deterministic_and_contains_the_mean():
    values = np.random.default_rng(1).uniform(0, 100, size=200)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high
    assert (low, high) == bootstrap_interval(values)
    assert bootstrap_interval(values, seed=1) != (low, high)
    # Chunked resampling gives the same numbers as one draw of the whole matrix.
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, values.size, size=(1000, values.size))].mean(axis=1)
    assert (low, high) == tuple(np.percentile(means, [2.5, 97.5]))
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval([])


def test_ci_from_per_sample_file(tmp_path):
    hits = [100.0 if i % 3 else 0.0 for i in range(30)]
    per_sample = [{"sample_id": f"s{i}", "metrics": {"acc": v}} for i, v in enumerate(hits)]
    run = load_record(write_record(tmp_path / "run", per_sample=per_sample, metrics={"acc": float(np.mean(hits)), "r1": 1.0}))
    intervals = run_intervals(run)
    assert set(intervals) == {"acc"}  # r1 is not a mean over samples here
    low, high = intervals["acc"]
    assert low < run.metrics["acc"] < high
    assert intervals == run_intervals(run)
    (table,) = build_tables([run], [], ci=True)
    assert f"| 66.67 [{low:.2f}, {high:.2f}] | 1.00 |" in render([table], "md")
    single_row = render([table], "md")
    assert "bootstrap 95% confidence interval" in single_row
    assert "Deltas" not in single_row and "Bold" not in single_row  # one row: nothing to compare
    rows = list(csv.DictReader(io.StringIO(render([table], "csv"))))
    assert (rows[0]["acc_ci_low"], rows[0]["acc_ci_high"]) == (f"{low:.2f}", f"{high:.2f}")


def test_ci_refuses_per_sample_values_on_another_scale(tmp_path):
    per_sample = [{"sample_id": "a", "metrics": {"acc": 1.0}}, {"sample_id": "b", "metrics": {"acc": 0.0}}]
    run = load_record(write_record(tmp_path / "run", per_sample=per_sample, metrics={"acc": 50.0}))
    with pytest.raises(DataError, match=r"per_sample\.jsonl: the mean of 'acc' over 2 samples is 0\.5"):
        run_intervals(run)


def test_ci_needs_a_per_sample_file(tmp_path):
    run = load_record(write_record(tmp_path / "run"))
    with pytest.raises(DataError, match="'per_sample_file' is null"):
        build_tables([run], [], ci=True)


def test_plot_is_a_png_with_one_series_per_row(tmp_path, fixture_tables):
    path = tmp_path / "plot.png"
    figure = save_plot(fixture_tables, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    (axes,) = figure.axes
    bars = [c for c in axes.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3
    assert [len(c.patches) for c in bars] == [3, 3, 3]  # one bar per metric
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["Alpha (1M)", "Beta (2M)", "tiny (seed0)"]
    assert np.isnan(bars[1].patches[2].get_height())  # Beta has no mean_rank
    assert not any(isinstance(c, ErrorbarContainer) for c in axes.containers)


def test_plot_draws_error_bars_for_intervals(tmp_path):
    per_sample = [{"sample_id": str(i), "metrics": {"acc": float(i % 2) * 100}} for i in range(10)]
    run = load_record(write_record(tmp_path / "run", per_sample=per_sample, metrics={"acc": 50.0}))
    other = load_record(write_record(tmp_path / "other", split="val", metrics={"acc": 1.0}))
    tables = build_tables([run], [load_baseline_file(write_baselines(tmp_path / "b.json"))], ci=True)
    tables += build_tables([other], [])
    figure = save_plot(tables, tmp_path / "ci.png")
    assert len(figure.axes) == 2
    assert sum(isinstance(c, ErrorbarContainer) for c in figure.axes[0].containers) == 1
    assert sum(isinstance(c, BarContainer) for c in figure.axes[1].containers) == 1


def _compare_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="harness")
    add_compare_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["compare", *argv])


def test_command_writes_every_output(tmp_path, capsys):
    run = write_record(tmp_path / "runs" / "toy")
    baselines = write_baselines(tmp_path / "toy_paper.json")
    out, plot = tmp_path / "out" / "table.csv", tmp_path / "out" / "plot.png"
    args = _compare_args([str(tmp_path / "runs"), "--baselines", str(baselines), "--format", "csv",
                          "--output", str(out), "--plot", str(plot)])
    assert args.func(args) == 0
    assert capsys.readouterr().out == ""
    assert out.read_text().splitlines()[3].startswith("toy_task,test,tiny (seed0),run,,55.50,+5.50")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    args = _compare_args([str(run), "--baselines", str(baselines), "--reference", "Beta (2M)"])
    assert args.func(args) == 0
    assert "| Alpha (1M) | published | 50.00 (-10.00) |" in capsys.readouterr().out


def test_command_refuses_a_plot_that_is_not_png(tmp_path):
    args = _compare_args([str(write_record(tmp_path / "run")), "--baselines", "x.json", "--plot", "p.svg"])
    with pytest.raises(ConfigError, match="PNG"):
        args.func(args)


def test_every_option_has_help():
    parser = argparse.ArgumentParser(prog="harness")
    compare = add_compare_parser(parser.add_subparsers())
    assert all(action.help for action in compare._actions)
