"""``harness regress``: the CI gate. A run passes when every metric of its reference record is
within tolerance; records that did not measure the same thing are refused, naming the field.

The check is two-sided on purpose: on a fixed checkpoint and fixed data, a metric that moves up
beyond tolerance is as much a sign of changed behaviour as one that moves down, and the fix is
to regenerate the reference deliberately.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, ExitCode, OutputError
from harness.records import RESULT_NAME, RunRecord, find_records

DEFAULT_TOLERANCE = 1e-6
"""Absolute, in the metric's unit (percent): equal up to floating-point rounding."""
_SLACK = 1e-9
"""Keeps a delta of exactly the tolerance from failing on the last bit of a float."""
_NOTED_FIELDS = ("device", "precision", "seed", "batch_size", "world_size")
"""Settings that may legitimately differ (a GPU reference, a CPU CI); reported, never refused."""


class IncomparableRecords(ConfigError):
    """A reference and a run that measured different things (task, split, protocol, data, weights)."""


@dataclass(frozen=True)
class MetricCheck:
    """One metric of the reference against the run."""

    metric: str
    reference: float
    now: float | None
    tolerance: float

    @property
    def delta(self) -> float | None:
        return None if self.now is None else self.now - self.reference

    @property
    def passed(self) -> bool:
        if self.now is None:
            return False
        if math.isnan(self.reference) or math.isnan(self.now):
            return math.isnan(self.reference) and math.isnan(self.now)
        return abs(self.now - self.reference) <= self.tolerance + _SLACK

    @property
    def verdict(self) -> str:
        if self.now is None:
            return "FAIL (missing in run)"
        return "ok" if self.passed else "FAIL"


@dataclass(frozen=True)
class RegressionResult:
    """The checks of one reference record; ``run`` is None when no run record matched it."""

    reference: RunRecord
    run: RunRecord | None
    checks: tuple[MetricCheck, ...]
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.run is not None and all(check.passed for check in self.checks)

    @property
    def failed_metrics(self) -> list[str]:
        return [check.metric for check in self.checks if not check.passed]


def _dotted(data: Mapping[str, Any], dotted: str) -> Any:
    value: Any = data
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def differences(reference: RunRecord, run: RunRecord, *, allow_weights_change: bool = False) -> list[str]:
    """Every field that makes two records measure different things, as ``field (reference X,
    run Y)``; empty when they are comparable."""
    pairs: list[tuple[str, Any, Any]] = [
        ("task", reference.task, run.task),
        ("split", reference.split, run.split),
        ("model", reference.model, run.model),
    ]
    if not allow_weights_change:
        pairs += [
            ("weights.name", reference.weights_name, run.weights_name),
            ("weights.files[].sha256", reference.weights_hashes, run.weights_hashes),
        ]
    pairs += [
        ("data.fingerprint", reference.fingerprint, run.fingerprint),
        ("samples.limit", _dotted(reference.data, "samples.limit"), _dotted(run.data, "samples.limit")),
    ]
    missing = object()
    for key in sorted(set(reference.protocol) | set(run.protocol)):
        pairs.append((f"protocol.{key}", reference.protocol.get(key, missing), run.protocol.get(key, missing)))
    return [
        f"{name} (reference {'absent' if a is missing else repr(a)}, run {'absent' if b is missing else repr(b)})"
        for name, a, b in pairs
        if a != b
    ]


def check_comparable(reference: RunRecord, run: RunRecord, *, allow_weights_change: bool = False) -> None:
    """Refuse, naming each differing field, two records that did not measure the same thing."""
    found = differences(reference, run, allow_weights_change=allow_weights_change)
    if found:
        raise IncomparableRecords(
            f"refusing to compare {run.path} with reference {reference.path}: "
            + "; ".join(f"{item} differs" for item in found)
        )


def _notes(reference: RunRecord, run: RunRecord) -> tuple[str, ...]:
    # The git commit differs on every CI run by design; the library versions are what explain a drift.
    versions = sorted(set(reference.data.get("versions") or {}) - {"git_commit"})
    fields = [*_NOTED_FIELDS, *(f"versions.{k}" for k in versions)]
    notes = []
    for name in fields:
        a, b = _dotted(reference.data, name), _dotted(run.data, name)
        if a != b:
            notes.append(f"{name} differs (reference {a!r}, run {b!r})")
    return tuple(notes)


def regress_record(
    reference: RunRecord,
    run: RunRecord,
    tolerances: Mapping[str, float],
    default_tolerance: float = DEFAULT_TOLERANCE,
    *,
    allow_weights_change: bool = False,
) -> RegressionResult:
    """Check every metric of ``reference`` in ``run``; a metric the run lacks fails."""
    check_comparable(reference, run, allow_weights_change=allow_weights_change)
    checks = tuple(
        MetricCheck(name, value, run.metrics.get(name), tolerances.get(name, default_tolerance))
        for name, value in reference.metrics.items()
    )
    return RegressionResult(reference, run, checks, _notes(reference, run))


def check_tolerance_names(references: Sequence[RunRecord], tolerances: Mapping[str, float]) -> None:
    """A tolerance naming no reference metric is a usage error: a typo there would silently
    loosen nothing."""
    known = {name for record in references for name in record.metrics}
    unknown = sorted(set(tolerances) - known)
    if unknown:
        raise ConfigError(
            f"--tolerance names metric(s) {unknown} that no reference record has; "
            f"reference metrics: {', '.join(sorted(known))}"
        )


def regress(
    references: Sequence[RunRecord],
    runs: Sequence[RunRecord],
    tolerances: Mapping[str, float] | None = None,
    default_tolerance: float = DEFAULT_TOLERANCE,
    *,
    allow_weights_change: bool = False,
) -> list[RegressionResult]:
    """Gate each reference record against the run record of the same task and split.

    One reference and one run are paired whatever they hold, so a mismatch of task or split is
    reported as such rather than as a missing run. A reference with no matching run fails; runs
    without a reference are not gated.
    """
    tolerances = dict(tolerances or {})
    check_tolerance_names(references, tolerances)
    keys = [(record.task, record.split) for record in references]
    duplicate = next((key for key in keys if keys.count(key) > 1), None)
    if duplicate:
        raise ConfigError(f"the reference holds two records for {duplicate[0]}/{duplicate[1]}; keep one")
    if len(references) == 1 and len(runs) == 1:
        pairs = [(references[0], runs[0])]
    else:
        by_key: dict[tuple[str, str], RunRecord] = {}
        for record in runs:
            if (record.task, record.split) in by_key:
                raise ConfigError(
                    f"the run directory holds two records for {record.task}/{record.split}: "
                    f"{by_key[(record.task, record.split)].path} and {record.path}"
                )
            by_key[(record.task, record.split)] = record
        pairs = [(ref, by_key.get((ref.task, ref.split))) for ref in references]
    results = []
    for reference, run in pairs:
        if run is None:
            checks = tuple(
                MetricCheck(name, value, None, tolerances.get(name, default_tolerance))
                for name, value in reference.metrics.items()
            )
            results.append(RegressionResult(reference, None, checks))
        else:
            results.append(
                regress_record(reference, run, tolerances, default_tolerance, allow_weights_change=allow_weights_change)
            )
    return results


def format_results(results: Sequence[RegressionResult], digits: int = 4) -> str:
    """Markdown: a metric / reference / now / delta / tolerance / verdict table per record, then
    a summary line naming every failing metric."""
    lines: list[str] = []
    for result in results:
        ref = result.reference
        run = "no matching run record" if result.run is None else str(result.run.path)
        lines += [
            f"### {ref.task} / {ref.split}",
            "",
            f"reference: {ref.path}  ",
            f"run: {run}",
            "",
            "| metric | reference | now | delta | tolerance | verdict |",
            "|:--|--:|--:|--:|--:|:--|",
        ]
        for check in result.checks:
            now = "-" if check.now is None else f"{check.now:.{digits}f}"
            delta = "-" if check.delta is None else f"{check.delta:+.{digits}f}"
            lines.append(
                f"| {check.metric} | {check.reference:.{digits}f} | {now} | {delta} | "
                f"{check.tolerance:.{digits}g} | {check.verdict} |"
            )
        lines += [f"note: {item}" for item in result.notes]
        lines.append("")
    failed = [
        f"{result.reference.task}/{result.reference.split} {metric}"
        for result in results
        for metric in result.failed_metrics
    ]
    checked = sum(len(result.checks) for result in results)
    if failed:
        lines.append(f"regress: FAILED {len(failed)} of {checked} metrics: {', '.join(failed)}")
    else:
        lines.append(f"regress: passed, {checked} metrics in {len(results)} record(s) within tolerance")
    return "\n".join(lines) + "\n"


def parse_tolerances(items: Sequence[str] | None) -> dict[str, float]:
    """``["txt_r1=0.5", "cider=1"]`` -> ``{"txt_r1": 0.5, "cider": 1.0}``."""
    tolerances: dict[str, float] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not sep or not name.strip() or not math.isfinite(value) or value < 0:
            raise ConfigError(f"--tolerance {item!r}: expected METRIC=ABS with ABS a number >= 0, e.g. txt_r1=0.5")
        tolerances[name.strip()] = value
    return tolerances


def rerun_references(references: Sequence[RunRecord], output: Path) -> list[RunRecord]:
    """Run the model again for each reference record, with its model, weights, task, split,
    protocol and data (``harness.runner.run_from_record``), writing run directories under
    ``output``; returns the new records."""
    from harness.runner import run_from_record

    runs = []
    for reference in references:
        if not isinstance(reference.data.get("run_config"), Mapping):
            raise ConfigError(
                f"{reference.path}: the record has no 'run_config' (written by `harness run`), so "
                "its run cannot be repeated; run the model yourself and pass its RUN_DIR"
            )
        produced = run_from_record(reference.data, output)
        # The runner returns the record, not its directory: find the file it just wrote.
        written = [
            record for record in find_records(output)
            if record.data.get("created") == produced.get("created")
            and (record.task, record.split) == (reference.task, reference.split)
        ]
        if not written:
            raise OutputError(f"{output}: the re-run of {reference.path} left no matching {RESULT_NAME}")
        runs.append(written[-1])
    return runs


def run_regress(args: argparse.Namespace) -> int:
    """The ``harness regress`` command; exit 0 when every check passes, 1 otherwise."""
    if not math.isfinite(args.default_tolerance) or args.default_tolerance < 0:
        raise ConfigError(f"--default-tolerance must be a number >= 0, got {args.default_tolerance}")
    references = find_records(args.reference)
    tolerances = parse_tolerances(args.tolerance)
    check_tolerance_names(references, tolerances)
    runs = rerun_references(references, args.run_dir) if args.run else find_records(args.run_dir)
    results = regress(
        references,
        runs,
        tolerances,
        args.default_tolerance,
        allow_weights_change=args.allow_weights_change,
    )
    print(format_results(results), end="")
    return int(ExitCode.OK if all(result.passed for result in results) else ExitCode.GATE_FAILED)


def add_regress_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``harness regress``; the parser's ``func`` returns the exit code."""
    parser = subparsers.add_parser(
        "regress",
        help="CI gate: fail when a run's metrics leave the tolerance of a reference record",
        description=(
            "Compare every metric of the reference record(s) with the run's. Exit 0 when all are "
            "within tolerance, 1 when any is outside it or missing, 2 when the records are not "
            "comparable (task, split, protocol, data fingerprint, model or weights differ) or on "
            "a usage error."
        ),
    )
    parser.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR",
        help="the run to check: a run directory, its result.json, or a directory of run directories "
        "(with --run: the directory the new runs are written into)",
    )
    parser.add_argument(
        "--reference", type=Path, required=True, metavar="FILE_OR_DIR",
        help="reference result.json, run directory, or directory of run directories; records are "
        "paired with the run's by task and split",
    )
    parser.add_argument(
        "--tolerance", action="append", metavar="METRIC=ABS",
        help="absolute tolerance for one metric, in its unit (percent for recalls and accuracies); repeatable",
    )
    parser.add_argument(
        "--default-tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="ABS",
        help=f"tolerance for metrics without --tolerance (default: {DEFAULT_TOLERANCE:g}, i.e. equal "
        "up to float rounding)",
    )
    parser.add_argument(
        "--allow-weights-change", action="store_true",
        help="compare a run of other weights of the same model (e.g. a new checkpoint against the "
        "old one's record) instead of refusing",
    )
    parser.add_argument(
        "--run", action="store_true",
        help="first run the model with each reference record's settings (model, weights, task, "
        "split, protocol, data), writing into RUN_DIR, then check the new records",
    )
    parser.set_defaults(func=run_regress)
    return parser
