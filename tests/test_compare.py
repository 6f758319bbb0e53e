"""``harness compare``: a hand-written fixture table checked cell by cell in every format, best
markers (lowest wins for ranks), deltas, the reference row, bootstrap intervals and the plot."""

from __future__ import annotations

import argparse
import csv
import html
import io
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
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
from harness.table_formats import CSV_COLUMNS, format_delta, render

BLIP_PAPER = Path(__file__).resolve().parents[1] / "results" / "baselines" / "blip_paper.json"

REAL_DATA = {"root": "/data", "fingerprint": "e" * 64, "toy": False}
"""A record's data block for the benchmark's own files: only such runs stand beside published rows."""
OWN_ROW = {"table": "toy_paper", "model": "Beta (2M)"}
"""The fixture run's model is the one published as Beta, so its deltas are against Beta."""
NOTES = [
    "Deltas in parentheses are against the row named in column 'deltas against'. "
    "Bold marks the best value per column (lowest for rank metrics).",
    "Beta (2M): no rank reported",
    "tiny (seed0): trained on the test split",
]
# Published Alpha has every metric, Beta lacks mean_rank; the run is best on r1 and mean_rank,
# Beta on acc. Rows of another split and another task must not appear.
EXPECTED_CELLS = [
    ["model", "type", "deltas against", "acc", "r1", "mean_rank"],
    ["Alpha (1M)", "published", "", "50.00", "40.00", "3.00"],
    ["Beta (2M)", "published", "", "**60.00**", "35.00", "-"],
    ["tiny (seed0)", "run", "Beta (2M)", "55.50 (-4.50)", "**45.25** (+10.25)", "**2.50**"],
]


def comparable_run(run_dir: Path, **changes) -> Path:
    return write_record(run_dir, **{"data": REAL_DATA, "baseline_row": OWN_ROW, **changes})


@pytest.fixture
def fixture_tables(tmp_path: Path) -> list[ComparisonTable]:
    run = load_record(comparable_run(tmp_path / "run", caveats=["trained on the test split"]))
    baselines = [load_baseline_file(write_baselines(tmp_path / "toy_paper.json"))]
    return build_tables([run], baselines)


def _markdown_cells(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|")]
    del rows[1]  # the alignment row
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_markdown_cell_by_cell(fixture_tables):
    text = render(fixture_tables, "md")
    assert text.splitlines()[0] == "### toy_task / test"
    assert "|:--|:--|:--|--:|--:|--:|" in text
    assert _markdown_cells(text) == EXPECTED_CELLS
    assert [line[2:] for line in text.splitlines() if line.startswith("- ")] == NOTES


def _number_or_empty(cell: str) -> bool:
    if cell == "":
        return True
    float(cell)  # raises on anything that is not a number
    return True


def test_csv_is_tidy_with_numeric_columns(fixture_tables):
    rows = list(csv.DictReader(io.StringIO(render(fixture_tables, "csv"))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    # One line per (row, metric) that has a value: Alpha 3, Beta 2, the run 3.
    assert [(r["row"], r["metric"]) for r in rows] == [
        ("Alpha (1M)", "acc"), ("Alpha (1M)", "r1"), ("Alpha (1M)", "mean_rank"),
        ("Beta (2M)", "acc"), ("Beta (2M)", "r1"),
        ("tiny (seed0)", "acc"), ("tiny (seed0)", "r1"), ("tiny (seed0)", "mean_rank"),
    ]
    run = {r["metric"]: r for r in rows if r["type"] == "run"}
    assert run["acc"]["value"] == "55.5" and run["acc"]["reference"] == "Beta (2M)"
    assert run["acc"]["reference_value"] == "60" and run["acc"]["delta"] == "-4.5"
    assert run["r1"]["delta"] == "10.25" and run["r1"]["best"] == "true"
    assert run["mean_rank"]["delta"] == "" and run["mean_rank"]["lower_is_better"] == "true"
    assert {r["comparable"] for r in rows} == {"true"}
    for row in rows:
        assert all(_number_or_empty(row[c]) for c in ("value", "reference_value", "delta", "ci_low", "ci_high"))


def test_latex_exact(fixture_tables):
    caption = "toy\\_task / test. " + " ".join(note if note.endswith(".") else note + "." for note in NOTES)
    expected = "\n".join([
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[ht]",
        r"\centering",
        r"\caption{" + caption + "}",
        r"\begin{tabular}{lllrrr}",
        r"\toprule",
        r"model & type & deltas against & acc & r1 & mean\_rank \\",
        r"\midrule",
        r"Alpha (1M) & published &  & 50.00 & 40.00 & 3.00 \\",
        r"Beta (2M) & published &  & \textbf{60.00} & 35.00 & - \\",
        r"\midrule",
        r"tiny (seed0) & run & Beta (2M) & 55.50 (-4.50) & \textbf{45.25} (+10.25) & \textbf{2.50} \\",
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
    assert "<h2>toy_task / test</h2>" in text
    assert all(f"<li>{html.escape(note)}</li>" in text for note in NOTES)


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
        references=(None, None, 0),
    )
    assert table.best_rows("acc", 2) == {0, 1}
    assert table.best_rows("acc", 3) == {0}
    assert table.best_rows("mean_rank", 2) == {0, 1}
    assert table.best_rows("mean_rank", 3) == {1}
    assert table.delta(2, "acc") == pytest.approx(-1.004) and table.delta(0, "acc") is None
    lone = ComparisonTable("t", "s", ("acc",), (Row("a", "run", {"acc": 1.0}, ""), Row("b", "run", {}, "")), (None, None))
    assert lone.best_rows("acc", 2) == set()


def test_delta_never_prints_negative_zero():
    assert format_delta(-0.001, 2) == "+0.00"
    assert format_delta(-0.006, 2) == "-0.01"


def test_each_run_is_measured_against_its_own_model(tmp_path):
    baselines = [load_baseline_file(write_baselines(tmp_path / "toy_paper.json"))]
    as_alpha = load_record(comparable_run(tmp_path / "alpha", model="alpha-repro",
                                          baseline_row={"table": "toy_paper", "model": "Alpha (1M)"}))
    as_beta = load_record(comparable_run(tmp_path / "beta", model="beta-repro"))
    unknown = load_record(comparable_run(tmp_path / "own", model="mine", baseline_row=None))
    missing = load_record(comparable_run(tmp_path / "gone", model="gamma-repro",
                                         baseline_row={"table": "toy_paper", "model": "Gamma (other split)"}))
    (table,) = build_tables([as_alpha, as_beta, unknown, missing], baselines)
    labels = [row.label for row in table.rows]
    assert [table.references[labels.index(f"{m} (seed0)")] for m in ("alpha-repro", "beta-repro")] == [0, 1]
    assert table.delta(labels.index("alpha-repro (seed0)"), "acc") == pytest.approx(5.5)
    assert table.delta(labels.index("beta-repro (seed0)"), "acc") == pytest.approx(-4.5)
    assert table.references[labels.index("mine (seed0)")] is None
    assert table.references[labels.index("gamma-repro (seed0)")] is None
    assert all(table.delta(0, m) is None for m in table.metrics)  # published rows show no deltas
    assert "mine (seed0): no published row is known for these weights" in table.notes[0]
    assert "gamma-repro (seed0): its published row, Gamma (other split) (toy_paper), has no result" in table.notes[1]


def test_against_option_picks_one_row_for_all_and_typos_are_refused(tmp_path):
    run = load_record(comparable_run(tmp_path / "run"))
    baselines = [load_baseline_file(write_baselines(tmp_path / "toy_paper.json"))]
    (table,) = build_tables([run], baselines, reference="TINY (seed0)")
    assert {table.reference_of(i).label for i in (0, 1)} == {"tiny (seed0)"}
    assert table.reference_of(2) is None
    assert table.delta(0, "acc") == pytest.approx(50.0 - 55.5)
    assert table.delta(1, "mean_rank") is None  # Beta has no rank
    (table,) = build_tables([run], baselines, reference="Alpha (1M)")
    assert table.delta(2, "acc") == pytest.approx(5.5) and table.delta(1, "acc") == pytest.approx(10.0)
    with pytest.raises(ConfigError, match=r"--against 'Alpha \(1m' names no row.*did you mean 'Alpha \(1M\)'"):
        build_tables([run], baselines, reference="Alpha (1m")


def test_toy_and_limited_runs_stand_apart_and_are_never_best_beside_published_rows(tmp_path):
    baselines = [load_baseline_file(write_baselines(tmp_path / "toy_paper.json"))]
    winner = {"acc": 99.0, "r1": 99.0, "mean_rank": 1.0}
    toy = load_record(write_record(tmp_path / "toy", metrics=winner, baseline_row=OWN_ROW))
    subset = load_record(comparable_run(tmp_path / "subset", model="sub", metrics=winner,
                                        samples={"total": 4, "evaluated": 2, "skipped": 0, "resumed": 0, "limit": 2}))
    real = load_record(comparable_run(tmp_path / "real"))
    comparable, apart = build_tables([toy, subset, real], baselines)
    assert comparable.comparable and [r.label for r in comparable.rows][-1] == "tiny (seed0)"
    assert len(comparable.rows) == 3  # the two published rows and the real run only
    assert not apart.comparable and [r.kind for r in apart.rows] == ["run", "run"]
    assert apart.references == (None, None)
    assert "toy suite" in apart.notes[0] and "--limit 2" in apart.notes[0]
    text = render([comparable, apart], "md")
    assert "### toy_task / test: not comparable with published results" in text
    # Beside the published rows nothing of the apart runs is marked best.
    assert comparable.best_rows("acc", 2) == {1}
    (alone,) = build_tables([toy], baselines)
    assert not alone.comparable and "The 2 published row(s) of toy_task / test are left out" in alone.notes[1]


def test_runs_that_differ_by_settings_are_labelled_by_them(tmp_path):
    default = load_record(comparable_run(tmp_path / "a"))
    changed = load_record(comparable_run(tmp_path / "b", protocol={"image_size": 32, "num_beams": 5},
                                         protocol_changes={"num_beams": 5}))
    reseeded = load_record(comparable_run(tmp_path / "c", seed=1))
    (table,) = build_tables([default, changed, reseeded], [])
    assert [row.label for row in table.rows] == [
        "tiny (seed0) [seed=0]", "tiny (seed0) (num_beams=5)", "tiny (seed0) [seed=1]",
    ]
    assert [row.series for row in table.rows] == ["tiny [seed=0]", "tiny (num_beams=5)", "tiny [seed=1]"]
    # Records that differ in nothing recorded are told apart by their run directories.
    twin = load_record(comparable_run(tmp_path / "d"))
    (table,) = build_tables([default, twin], [])
    assert [row.label for row in table.rows] == ["tiny (seed0) [a]", "tiny (seed0) [d]"]


def test_one_table_per_task_and_split_and_metric_union(tmp_path):
    first = load_record(comparable_run(tmp_path / "a", metrics={"acc": 1.0, "r1": 2.0}))
    second = load_record(comparable_run(tmp_path / "b", split="val", metrics={"acc": 3.0}))
    third = load_record(comparable_run(tmp_path / "c", model="other", metrics={"r1": 4.0, "extra": 5.0}))
    baselines = [load_baseline_file(write_baselines(tmp_path / "toy_paper.json"))]
    tables = build_tables([first, second, third], baselines)
    assert [(t.task, t.split) for t in tables] == [("toy_task", "test"), ("toy_task", "val")]
    assert tables[0].metrics == ("acc", "r1", "extra", "mean_rank")
    assert [r.label for r in tables[0].rows] == ["Alpha (1M)", "Beta (2M)", "tiny (seed0)", "other (seed0)"]
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
    assert (float(rows[0]["ci_low"]), float(rows[0]["ci_high"])) == pytest.approx((low, high))
    assert rows[1]["metric"] == "r1" and rows[1]["ci_low"] == rows[1]["ci_high"] == ""


def test_ci_refuses_per_sample_values_on_another_scale(tmp_path):
    per_sample = [{"sample_id": "a", "metrics": {"acc": 1.0}}, {"sample_id": "b", "metrics": {"acc": 0.0}}]
    run = load_record(write_record(tmp_path / "run", per_sample=per_sample, metrics={"acc": 50.0}))
    with pytest.raises(DataError, match=r"per_sample\.jsonl: the mean of 'acc' over 2 samples is 0\.5"):
        run_intervals(run)


def test_ci_skips_a_task_without_per_sample_metrics_with_a_note(tmp_path):
    per_sample = [{"sample_id": str(i), "metrics": {"acc": float(i % 2) * 100}} for i in range(10)]
    with_file = load_record(write_record(tmp_path / "a", per_sample=per_sample, metrics={"acc": 50.0}))
    without = load_record(write_record(tmp_path / "b", task="captions", metrics={"cider": 80.0}))
    first, second = build_tables([with_file, without], [], ci=True)
    assert first.rows[0].intervals and not second.rows[0].intervals
    assert "No confidence interval for tiny (seed0): task 'captions' writes no per-sample metrics." in second.notes


def _axes_by_title(figure) -> dict[str, list]:
    found: dict[str, list] = {}
    for ax in figure.axes:
        if ax.get_visible():
            found.setdefault(ax.get_title(), []).append(ax)
    return found


def test_plot_has_one_axis_per_headline_metric_and_one_colour_per_model(tmp_path):
    baselines = [load_baseline_file(write_baselines(tmp_path / "toy_paper.json"))]
    first = load_record(comparable_run(tmp_path / "a", headline_metrics=["acc", "mean_rank"]))
    other_task = load_record(comparable_run(tmp_path / "b", task="captions", metrics={"cider": 120.0, "bleu4": 38.0},
                                            headline_metrics=["bleu4", "cider"]))
    rival = load_record(comparable_run(tmp_path / "c", model="rival", headline_metrics=["acc", "mean_rank"],
                                       metrics={"acc": 52.0, "r1": 44.0, "mean_rank": 2.0}))
    tables = build_tables([first, other_task, rival], baselines)
    path = tmp_path / "plot.png"
    figure = save_plot(tables, path)
    with Image.open(path) as image:
        image.verify()
    axes = _axes_by_title(figure)
    # CIDEr and BLEU never share an axis; every headline metric has its own.
    assert sorted(axes) == ["acc", "bleu4", "cider", "mean_rank (lower better)"]
    acc = axes["acc"][0]
    dots = [line for line in acc.lines if line.get_marker() == "o"]
    diamonds = [line for line in acc.lines if line.get_marker() == "D"]
    assert len(dots) == 2 and len(diamonds) == 2  # both runs, each against Beta
    assert [d.get_ydata()[0] for d in diamonds] == [60.0, 60.0]
    texts = [t.get_text() for t in acc.texts]
    assert "55.5\n-4.5" in texts and "60.0" in texts
    tiny_colour = {line.get_color() for ax in figure.axes for line in ax.lines
                   if line.get_marker() == "o" and line.get_ydata()[0] in (55.5, 2.5, 38.0, 120.0)}
    assert len(tiny_colour) == 1  # the same model has one colour in every panel
    rival_dot = [d for d in dots if d.get_color() not in tiny_colour]
    assert len(rival_dot) == 1
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend[:2] == ["tiny", "rival"]


def test_plot_draws_error_bars_for_intervals_and_no_reference_for_apart_runs(tmp_path):
    per_sample = [{"sample_id": str(i), "metrics": {"acc": float(i % 2) * 100}} for i in range(10)]
    run = load_record(comparable_run(tmp_path / "run", per_sample=per_sample, metrics={"acc": 50.0},
                                     headline_metrics=["acc"]))
    toy = load_record(write_record(tmp_path / "toy", split="val", metrics={"acc": 1.0}, baseline_row=OWN_ROW))
    baselines = [load_baseline_file(write_baselines(tmp_path / "b.json"))]
    tables = build_tables([run, toy], baselines, ci=True)
    figure = save_plot(tables, tmp_path / "ci.png")
    first, second = [ax for ax in figure.axes if ax.get_visible()]
    assert sum(isinstance(c, ErrorbarContainer) for c in first.containers) == 1
    assert not second.containers and not [line for line in second.lines if line.get_marker() == "D"]
    assert "not comparable" in figure.subfigs[1]._suptitle.get_text()


def _compare_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="harness")
    add_compare_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["compare", *argv])


def test_command_writes_every_output(tmp_path, capsys):
    run = comparable_run(tmp_path / "runs" / "real")
    baselines = write_baselines(tmp_path / "toy_paper.json")
    out, plot = tmp_path / "out" / "table.csv", tmp_path / "out" / "plot.png"
    args = _compare_args([str(tmp_path / "runs"), "--baselines", str(baselines), "--format", "csv",
                          "--output", str(out), "--plot", str(plot)])
    assert args.func(args) == 0
    assert capsys.readouterr().out == f"wrote 1 table(s) for 1 run(s) to {out}\n"
    assert "toy_task,test,true,tiny (seed0),run,acc,55.5,Beta (2M),60,-4.5,,,false,false," in out.read_text()
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    args = _compare_args([str(run), "--baselines", str(baselines), "--against", "Beta (2M)"])
    assert args.func(args) == 0
    assert "| Alpha (1M) | published | Beta (2M) | 50.00 (-10.00) |" in capsys.readouterr().out


def test_command_on_a_toy_run_and_the_paper_rows(tmp_path, capsys):
    """The issue's case: a toy MSRVTT-QA run at 53.3 beside BLIP's real 19.2 is not marked best,
    stands in its own table, and its CSV holds numbers or empty cells only."""
    toy = write_record(tmp_path / "toy", task="msrvtt_qa", split="test", model="blip-tiny",
                       metrics={"accuracy": 53.3}, baseline_row={"table": "blip_paper", "model": "BLIP (129M, zero-shot)"})
    args = _compare_args([str(toy), "--baselines", str(BLIP_PAPER)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "### msrvtt_qa / test: not comparable with published results" in text
    assert "**" not in text and "19.20" not in text
    args = _compare_args([str(toy), "--baselines", str(BLIP_PAPER), "--format", "csv", "--ci"])
    assert args.func(args) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["row"], r["comparable"], r["best"]) for r in rows] == [("blip-tiny (seed0)", "false", "false")]
    for row in rows:
        assert all(_number_or_empty(row[c]) for c in ("value", "reference_value", "delta", "ci_low", "ci_high"))


def test_command_refuses_a_plot_that_is_not_png(tmp_path):
    args = _compare_args([str(write_record(tmp_path / "run")), "--baselines", "x.json", "--plot", "p.svg"])
    with pytest.raises(ConfigError, match="PNG"):
        args.func(args)


def test_every_option_has_help():
    parser = argparse.ArgumentParser(prog="harness")
    compare = add_compare_parser(parser.add_subparsers())
    assert all(action.help for action in compare._actions)
