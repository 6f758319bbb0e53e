"""``harness compare``: this project's runs beside published results, one table per task and split.

Tables are built here as plain data (rows, metrics, each row's reference row, best values,
bootstrap intervals, caveats); ``harness.table_formats`` turns them into Markdown, CSV, LaTeX or
HTML and ``harness.comparison_plot`` into a figure, so every output format shows the same numbers.
A run is measured against the published row of its own model (recorded by the model's preset,
``harness.caveats``), and runs on toy data or a subset get tables of their own
(docs/comparing.md).
"""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from harness.baselines import BaselineTable, is_baseline_path, registered_baselines, select_baselines
from harness.caveats import not_comparable_reason
from harness.config import split_names
from harness.errors import ConfigError, DataError, OutputError
from harness.records import RunRecord, find_all_records, load_per_sample
from harness.table_formats import FORMATS, render

PUBLISHED = "published"
RUN = "run"
CI_RESAMPLES = 1000
CI_CONFIDENCE = 0.95
CI_SEED = 0


def lower_is_better(metric: str) -> bool:
    """Rank metrics (``mean_rank``, ``t2v_median_rank``) improve downwards; recalls, accuracies,
    caption scores and ``r_mean`` (a mean of recalls) improve upwards."""
    return metric.endswith("rank")


@dataclass(frozen=True)
class Row:
    """One line of a comparison table: a published result or one of this project's runs."""

    label: str
    kind: str
    metrics: Mapping[str, float]
    source: str
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """Bootstrap confidence interval (low, high) per metric; runs only, with ``--ci``."""
    caveats: tuple[str, ...] = ()
    """What a reader needs to interpret the row: a published row's note, a run's recorded caveats."""
    headline: tuple[str, ...] = ()
    """A run's headline metrics (the task's own choice, from its record), for the figure."""
    series: str = ""
    """What a figure gives one colour across tasks: a run's model and settings without the
    per-task weights (``blip``, ``blip-tiny (k_test=16)``); the label when empty."""

    @property
    def colour_key(self) -> str:
        return self.series or self.label


@dataclass(frozen=True)
class ComparisonTable:
    """Rows for one (task, split), the union of their metrics, and the row each row's deltas are
    taken against.

    A table is either ``comparable`` (published rows beside runs on the benchmark's data) or a
    table of runs set apart from the published rows, with ``notes`` saying why.
    """

    task: str
    split: str
    metrics: tuple[str, ...]
    rows: tuple[Row, ...]
    references: tuple[int | None, ...]
    """Per row, the index in ``rows`` of the row its deltas are against (None: no deltas)."""
    comparable: bool = True
    notes: tuple[str, ...] = ()
    """Table-level remarks: why the runs stand apart, a missing reference row, skipped intervals."""

    def value(self, row: int, metric: str) -> float | None:
        return self.rows[row].metrics.get(metric)

    def reference_of(self, row: int) -> Row | None:
        """The row ``row``'s deltas are against, if any."""
        index = self.references[row]
        return None if index is None or index == row else self.rows[index]

    def delta(self, row: int, metric: str) -> float | None:
        """``row - its reference`` for the metric; None without a reference or when either lacks it."""
        index = self.references[row]
        if index is None or index == row:
            return None
        value, base = self.value(row, metric), self.value(index, metric)
        return None if value is None or base is None else value - base

    def best_rows(self, metric: str, digits: int) -> set[int]:
        """Rows holding the best value as printed (ties at ``digits`` decimals all count); none
        when fewer than two rows report the metric, since a lone value is best of nothing."""
        shown = {
            index: round(value, digits)
            for index in range(len(self.rows))
            if (value := self.value(index, metric)) is not None and math.isfinite(value)
        }
        if len(shown) < 2:
            return set()
        best = (min if lower_is_better(metric) else max)(shown.values())
        return {index for index, value in shown.items() if value == best}

    @property
    def has_intervals(self) -> bool:
        return any(row.intervals for row in self.rows)

    @property
    def has_deltas(self) -> bool:
        return any(self.reference_of(index) is not None for index in range(len(self.rows)))


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    *,
    resamples: int = CI_RESAMPLES,
    confidence: float = CI_CONFIDENCE,
    seed: int = CI_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    A fixed seed makes the interval reproducible, so two ``compare`` runs over the same records
    print the same table. Resampling is chunked so a 200k-question VQA split stays in memory.

    Example: ``bootstrap_interval([0, 100, 100, 0])`` gives an interval around 50 within [0, 100].
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"bootstrap needs a non-empty 1-D array of values, got shape {array.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // array.size)
    means = []
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        means.append(array[rng.integers(0, array.size, size=(count, array.size))].mean(axis=1))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(means), [tail, 100 - tail])
    return float(low), float(high)


def run_intervals(record: RunRecord, **bootstrap_options: float) -> dict[str, tuple[float, float]]:
    """Intervals for the record's metrics that its per-sample file holds (means over samples).

    The per-sample mean must reproduce the recorded metric; otherwise the interval would describe
    another quantity (another scale, or a metric that is not a mean), so that is an error.
    """
    per_metric: dict[str, list[float]] = {}
    for sample_metrics in load_per_sample(record).values():
        for name, value in sample_metrics.items():
            per_metric.setdefault(name, []).append(value)
    intervals: dict[str, tuple[float, float]] = {}
    for name, values in per_metric.items():
        if name not in record.metrics:
            continue
        mean, recorded = float(np.mean(values)), record.metrics[name]
        if not math.isclose(mean, recorded, rel_tol=1e-6, abs_tol=1e-6):
            raise DataError(
                f"{record.run_dir / record.data['per_sample_file']}: the mean of {name!r} over "
                f"{len(values)} samples is {mean!r} but {record.path} records {recorded!r}; "
                "per-sample values must be on the metric's scale"
            )
        intervals[name] = bootstrap_interval(values, **bootstrap_options)
    return intervals


def _metric_order(rows: Sequence[Row]) -> tuple[str, ...]:
    """Union of metrics in first-appearance order, runs first: a task scores its metrics in its
    own reading order, while published tables often print only a subset."""
    runs_first = sorted(rows, key=lambda row: row.kind != RUN)
    return tuple(dict.fromkeys(name for row in runs_first for name in row.metrics))


def _format_setting(key: str, value: object) -> str:
    return f"{key}={value}" if not isinstance(value, str) else f"{key}={value!r}"


def _changes_text(record: RunRecord) -> str:
    """`` (k_test=16)`` for a run that changed protocol settings, so two runs that differ by
    ``--set`` read as what they are; empty otherwise."""
    changes = record.protocol_changes
    return f" ({', '.join(_format_setting(k, v) for k, v in sorted(changes.items()))})" if changes else ""


def _distinguishing_settings(records: Sequence[RunRecord]) -> list[str]:
    """Per record, what sets it apart from the others with the same label: the protocol keys,
    seed, precision, limit, data or weights whose values differ among them; empty strings when
    nothing recorded differs (then the run directory tells them apart)."""
    aspects: dict[str, list[object]] = {}
    keys = sorted({key for record in records for key in record.protocol})
    for key in keys:
        aspects[key] = [record.protocol.get(key) for record in records]
    aspects["seed"] = [record.data.get("seed") for record in records]
    aspects["precision"] = [record.data.get("precision") for record in records]
    aspects["limit"] = [(record.data.get("samples") or {}).get("limit") for record in records]
    aspects["data"] = [record.fingerprint[:8] for record in records]
    aspects["weights"] = [",".join(h[:8] for h in record.weights_hashes) for record in records]
    differing = {name: values for name, values in aspects.items() if len({repr(v) for v in values}) > 1}
    return [
        ", ".join(_format_setting(name, values[index]) for name, values in differing.items())
        for index in range(len(records))
    ]


def _run_labels(records: Sequence[RunRecord]) -> list[tuple[str, str]]:
    """(label, series) for the runs of one table. The label is model, weights and changed
    settings, then whatever else differs between runs that would still share it, and the run
    directory as a last resort; the series is the same without the weights."""
    labels = [record.label + _changes_text(record) for record in records]
    series = [record.model + _changes_text(record) for record in records]
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    for indices in by_label.values():
        if len(indices) < 2:
            continue
        settings = _distinguishing_settings([records[i] for i in indices])
        for index, extra in zip(indices, settings, strict=True):
            suffix = f" [{extra or records[index].run_dir.name}]"
            labels[index] += suffix
            series[index] += suffix
    return list(zip(labels, series, strict=True))


def _unique_labels(rows: list[Row], origins: list[str]) -> list[Row]:
    """Append the origin (table name or run directory) to labels that would otherwise repeat."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.label] = counts.get(row.label, 0) + 1
    return [
        replace(row, label=f"{row.label} [{origin}]") if counts[row.label] > 1 else row
        for row, origin in zip(rows, origins, strict=True)
    ]


def _find_label(rows: Sequence[Row], wanted: str) -> int | None:
    return next((i for i, row in enumerate(rows) if row.label.casefold() == wanted.casefold()), None)


def _run_rows(
    records: Sequence[RunRecord], ci: bool, notes: list[str], known: Sequence[str] = (),
) -> list[Row]:
    """A row per run; caveats already in ``known`` (the reason a table stands apart) are not
    repeated per row."""
    rows = []
    for record, (label, series) in zip(records, _run_labels(records), strict=True):
        intervals: dict[str, tuple[float, float]] = {}
        if ci and not record.data.get("per_sample_file"):
            notes.append(
                f"No confidence interval for {label}: task {record.task!r} writes no per-sample metrics."
            )
        elif ci:
            intervals = run_intervals(record)
        caveats = tuple(caveat for caveat in record.caveats if caveat not in known)
        rows.append(Row(label, RUN, record.metrics, str(record.run_dir), intervals, caveats,
                        tuple(record.headline), series))
    return rows


def _comparable_table(
    task: str, split: str, runs: Sequence[RunRecord], baselines: Sequence[BaselineTable],
    reference: str | None, ci: bool,
) -> ComparisonTable:
    """Published rows of the task and split, then the runs, each run's deltas against the
    published row of its own model (``baseline_row`` of its record) unless ``reference`` names
    a row of this table for all of them."""
    notes: list[str] = []
    rows: list[Row] = []
    origins: list[str] = []
    keys: list[tuple[str, str]] = []
    for table in baselines:
        for published in table.rows_for(task, split):
            caveats = (published.note,) if published.note else ()
            rows.append(Row(published.model, PUBLISHED, published.metrics, published.source, caveats=caveats))
            origins.append(table.name)
            keys.append((table.name, published.model))
    first_run = len(rows)
    run_rows = _run_rows(runs, ci, notes)
    rows += run_rows
    origins += [record.run_dir.name for record in runs]
    rows = _unique_labels(rows, origins)
    references: list[int | None] = [None] * len(rows)
    forced = None if reference is None else _find_label(rows, reference)
    if forced is not None:
        references = [forced] * len(rows)
    else:
        for offset, record in enumerate(runs):
            wanted = record.baseline_row
            label = rows[first_run + offset].label
            if wanted is None:
                notes.append(
                    f"{label}: no published row is known for these weights, so no deltas; "
                    "choose one with --against ROW."
                )
            elif (wanted["table"], wanted["model"]) in keys:
                references[first_run + offset] = keys.index((wanted["table"], wanted["model"]))
            else:
                notes.append(
                    f"{label}: its published row, {wanted['model']} ({wanted['table']}), has no result "
                    f"on {task} / {split} among the baselines shown, so no deltas."
                )
    return ComparisonTable(task, split, _metric_order(rows), tuple(rows), tuple(references), True, tuple(notes))


def _apart_table(
    task: str, split: str, runs: Sequence[RunRecord], reasons: Sequence[str], hidden: int,
    reference: str | None, ci: bool,
) -> ComparisonTable:
    """Runs whose numbers may not stand beside published ones (toy data, a ``--limit`` subset):
    their own table, no published rows, deltas only against a run named by ``reference``."""
    notes = [
        "Shown apart from the published rows: "
        + "; ".join(dict.fromkeys(reasons)) + "."
    ]
    if hidden:
        notes.append(f"The {hidden} published row(s) of {task} / {split} are left out of this table.")
    rows = _unique_labels(_run_rows(runs, ci, notes, reasons), [record.run_dir.name for record in runs])
    forced = None if reference is None else _find_label(rows, reference)
    references = tuple([forced] * len(rows))
    return ComparisonTable(task, split, _metric_order(rows), tuple(rows), references, False, tuple(notes))


def build_tables(
    records: Sequence[RunRecord],
    baselines: Sequence[BaselineTable],
    *,
    reference: str | None = None,
    ci: bool = False,
) -> list[ComparisonTable]:
    """Tables per (task, split) the runs cover, in the order the runs were given.

    Runs on the benchmark's data share a table with the published rows of that task and split
    (in file order); each run's deltas are against the published row its record names as its
    own model's (``baseline_row``). Runs on toy data or a ``--limit`` subset get a table of
    their own after it, never ranked beside published rows. ``reference`` (``--against``) names
    one row, case-insensitive, that every delta of a table holding it is measured against
    instead; a name found in no table is an error, so a typo never silently falls back. With
    ``ci``, runs whose task writes no per-sample metrics get a note instead of an interval.
    """
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.task, record.split), []).append(record)
    tables = []
    for (task, split), runs in groups.items():
        reasons = [not_comparable_reason(record.data) for record in runs]
        comparable = [record for record, reason in zip(runs, reasons, strict=True) if reason is None]
        apart = [record for record, reason in zip(runs, reasons, strict=True) if reason is not None]
        if comparable:
            tables.append(_comparable_table(task, split, comparable, baselines, reference, ci))
        if apart:
            hidden = 0 if comparable else sum(len(table.rows_for(task, split)) for table in baselines)
            tables.append(_apart_table(task, split, apart, [r for r in reasons if r], hidden, reference, ci))
    if reference is not None:
        labels = [row.label for table in tables for row in table.rows]
        if not any(label.casefold() == reference.casefold() for label in labels):
            close = difflib.get_close_matches(reference, labels, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"--against {reference!r} names no row of any table{hint}")
    return tables


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from exc


def run_compare(args: argparse.Namespace) -> int:
    """The ``harness compare`` command: print or write the tables, optionally plot them."""
    # Imported here: matplotlib loads only when a plot is asked for.
    from harness.comparison_plot import save_plot

    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise ConfigError(f"--plot {args.plot}: the plot is written as PNG; give a file ending in .png")
    if args.digits < 0:
        raise ConfigError(f"--digits must be 0 or more, got {args.digits}")
    records = find_all_records(args.run_dirs)
    names = None if args.baselines is None else split_names(args.baselines)
    only_files = names is not None and all(is_baseline_path(n) for n in names)
    registered = [] if only_files else registered_baselines()
    tables = build_tables(records, select_baselines(registered, names), reference=args.against, ci=args.ci)
    text = render(tables, args.format, digits=args.digits)
    if args.output is None:
        print(text, end="")
    else:
        _write_text(args.output, text)
        apart = sum(not table.comparable for table in tables)
        print(f"wrote {len(tables)} table(s) for {len(records)} run(s) to {args.output}"
              + (f"; {apart} of them apart from the published rows (not comparable)" if apart else ""))
    if args.plot is not None:
        try:
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            save_plot(tables, args.plot)
        except OSError as exc:
            raise OutputError(f"{args.plot}: cannot write the plot ({exc.strerror})") from exc
    return 0


def add_compare_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``harness compare``; the parser's ``func`` returns the exit code."""
    parser = subparsers.add_parser(
        "compare",
        help="tables of runs beside published baselines (md, csv, latex, html) and a plot",
        description=(
            "One table per task and split: the published baseline rows for that task and split, "
            "then the given runs, each with its delta to the published row of its own model; the "
            "best value per column is marked (lowest for rank metrics). Runs on the toy suite or a "
            "--limit subset are shown in a table of their own, never ranked beside published rows."
        ),
    )
    parser.add_argument(
        "run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
        help="a run directory, its result.json, or a directory of run directories (one per task)",
    )
    parser.add_argument(
        "--baselines", action="append", metavar="NAME",
        help="baseline table to show, by name (e.g. blip_paper) or path to a .json file; repeat or "
        "comma-separate for several (default: every registered table)",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="md",
        help="output format: wide tables in Markdown, LaTeX (booktabs) or a standalone HTML page, or "
        "tidy CSV with one line per row, task, split and metric (default: md)",
    )
    parser.add_argument(
        "--against", "--reference", dest="against", metavar="ROW",
        help="label of the row every delta is measured against, e.g. 'BLIP (14M)' or a run's "
        "'model (weights)' label (default: each run's deltas are against the published row of its "
        "own model, recorded by the model's preset; published rows then show no deltas)",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png",
        help="also draw, per task, each run's headline metrics against its reference row (one "
        "small axis per metric, one colour per model, values and deltas written on) into this PNG",
    )
    parser.add_argument(
        "--ci", action="store_true",
        help="add bootstrap 95%% confidence intervals (percentile, 1000 resamples, seed 0) to the "
        "runs' metrics that are means over samples, from each run's per_sample.jsonl (tasks without "
        "per-sample metrics get a note instead)",
    )
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write the tables here instead of stdout"
    )
    parser.add_argument(
        "--digits", type=int, default=2, help="decimals shown for values and deltas (default: 2)"
    )
    parser.set_defaults(func=run_compare)
    return parser
