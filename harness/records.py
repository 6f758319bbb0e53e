"""Reading result records (``result.json``) and their per-sample metric files for ``compare`` and
``regress``.

The runner writes records; this module only reads them, and validates just the fields the readers
rely on, so a record from a newer harness with extra fields still loads. A malformed record stops
with a ``DataError`` naming the file and the field, never with a ``KeyError`` deep inside a table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.caveats import headline
from harness.errors import DataError

RESULT_SCHEMA = "harness.result/1"
RESULT_NAME = "result.json"
SUMMARY_SCHEMA = "harness.summary/1"
"""The run summary ``harness run`` writes beside its run directories (``harness.run_summary``)."""


def is_number(value: Any) -> bool:
    """A JSON metric value: int or float, never bool (``True`` is an int in Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file, turning a missing or malformed file into one clear ``DataError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataError(f"{path}: {what} not found") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: {what} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc


def check_metrics(metrics: Any, where: str) -> dict[str, float]:
    """A ``{name: number}`` mapping as floats; ``where`` prefixes the error (file and record)."""
    if not isinstance(metrics, Mapping) or not metrics:
        raise DataError(f"{where}: 'metrics' must be a non-empty object of name -> number, got {metrics!r}")
    for name, value in metrics.items():
        if not is_number(value):
            raise DataError(f"{where}: metric {name!r} must be a number, got {value!r}")
    return {str(name): float(value) for name, value in metrics.items()}


def _require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if key not in data:
        raise DataError(f"{path}: result record lacks the field {key!r}")
    value = data[key]
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataError(f"{path}: field {key!r} must be {names}, got {value!r}")
    return value


@dataclass(frozen=True)
class RunRecord:
    """One validated ``result.json`` and where it was read from."""

    path: Path
    data: Mapping[str, Any]
    metrics: dict[str, float]

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def task(self) -> str:
        return self.data["task"]

    @property
    def split(self) -> str:
        return self.data["split"]

    @property
    def model(self) -> str:
        return self.data["model"]

    @property
    def weights_name(self) -> str:
        return self.data["weights"]["name"]

    @property
    def weights_hashes(self) -> list[str]:
        """SHA-256 of each weights file, sorted: the identity that survives a move to another
        machine, where the cache path differs."""
        return sorted(str(f.get("sha256")) for f in self.data["weights"].get("files") or [])

    @property
    def protocol(self) -> Mapping[str, Any]:
        return self.data["protocol"]

    @property
    def fingerprint(self) -> str:
        return self.data["data"]["fingerprint"]

    @property
    def baseline_row(self) -> Mapping[str, str] | None:
        """``{"table", "model"}`` of the published row this run's model reproduces, if known."""
        return self.data.get("baseline_row")

    @property
    def caveats(self) -> list[str]:
        return list(self.data.get("caveats") or [])

    @property
    def protocol_changes(self) -> Mapping[str, Any]:
        """Protocol settings this run changed from the task's defaults (``--set``)."""
        return self.data.get("protocol_changes") or {}

    @property
    def headline(self) -> list[str]:
        """The task's headline metrics that this record has (every metric when it names none)."""
        return headline(self.data)

    @property
    def label(self) -> str:
        """How a table names this run: the model and, when it says more, the weights."""
        weights = self.weights_name
        return self.model if not weights or weights == self.model else f"{self.model} ({weights})"


def _check_interpretation(data: Mapping[str, Any], path: Path) -> None:
    """The optional fields that say how to read a record (``harness.caveats``); absent in records
    written before them, which then simply have no reference row and no caveats."""
    row = data.get("baseline_row")
    if row is not None and not (
        isinstance(row, Mapping) and all(isinstance(row.get(key), str) for key in ("table", "model"))
    ):
        raise DataError(f"{path}: field 'baseline_row' must be null or {{table, model}} strings, got {row!r}")
    for key in ("caveats", "headline_metrics"):
        value = data.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise DataError(f"{path}: field {key!r} must be a list of strings, got {value!r}")
    changes = data.get("protocol_changes")
    if changes is not None and not isinstance(changes, Mapping):
        raise DataError(f"{path}: field 'protocol_changes' must be an object, got {changes!r}")


def parse_record(data: Any, path: Path) -> RunRecord:
    """Validate the fields ``compare`` and ``regress`` read; ``path`` is used in errors."""
    if not isinstance(data, Mapping):
        raise DataError(f"{path}: a result record must be a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if schema != RESULT_SCHEMA:
        raise DataError(f"{path}: field 'schema' must be {RESULT_SCHEMA!r}, got {schema!r}")
    for key in ("task", "split", "model"):
        _require(data, key, str, path)
    weights = _require(data, "weights", Mapping, path)
    if not isinstance(weights.get("name"), str):
        raise DataError(f"{path}: field 'weights.name' must be a string, got {weights.get('name')!r}")
    files = weights.get("files") or []
    if not isinstance(files, list) or not all(isinstance(f, Mapping) for f in files):
        raise DataError(f"{path}: field 'weights.files' must be a list of {{path, sha256}} objects, got {files!r}")
    _require(data, "protocol", Mapping, path)
    data_info = _require(data, "data", Mapping, path)
    if not isinstance(data_info.get("fingerprint"), str):
        raise DataError(
            f"{path}: field 'data.fingerprint' must be a string, got {data_info.get('fingerprint')!r}"
        )
    metrics = check_metrics(_require(data, "metrics", Mapping, path), str(path))
    _check_interpretation(data, path)
    return RunRecord(path=path, data=data, metrics=metrics)


def load_record(path: Path) -> RunRecord:
    """A record from a ``result.json`` file or from the run directory holding one."""
    path = Path(path)
    file = path / RESULT_NAME if path.is_dir() else path
    return parse_record(read_json(file, "result record"), file)


def _summary_runs(data: Any, path: Path) -> list[RunRecord] | None:
    """The records a run summary (``summary-*.json`` of one ``harness run``) lists, read from its
    run directories beside it; None when ``data`` is not a summary."""
    if not isinstance(data, Mapping) or data.get("schema") != SUMMARY_SCHEMA:
        return None
    runs = data.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, Mapping) and isinstance(r.get("run_dir"), str) for r in runs):
        raise DataError(f"{path}: field 'runs' must be a list of objects with a 'run_dir' string")
    return [load_record(path.parent / run["run_dir"]) for run in runs]


def _load_file(path: Path) -> list[RunRecord]:
    """A record file, or the records a run summary lists. The summary's Markdown twin (what a
    shell glob such as ``results/runs/*`` passes along) holds no record and is passed over."""
    twin = path.with_suffix(".json")
    if path.suffix == ".md" and twin.is_file() and _summary_runs(read_json(twin, "run summary"), twin) is not None:
        return []
    data = read_json(path, "result record")
    summary = _summary_runs(data, path)
    return summary if summary is not None else [parse_record(data, path)]


def find_records(path: Path) -> list[RunRecord]:
    """Every record under ``path``: a ``result.json``, a run directory, a directory of run
    directories (what ``harness run`` writes for several tasks), a run summary (the runs of one
    ``harness run``), or a folder of records saved under other names
    (``results/reference/<task>.json``), in path order."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory (expected a run directory or {RESULT_NAME})")
    if path.is_file():
        return _load_file(path)
    if (path / RESULT_NAME).is_file():
        return [load_record(path)]
    files = sorted(path.rglob(RESULT_NAME)) or sorted(path.glob("*.json"))
    if not files:
        raise DataError(f"{path}: no {RESULT_NAME} (or record .json files) in this directory or below it")
    return [record for file in files for record in _load_file(file)]


def find_all_records(paths: Iterable[Path]) -> list[RunRecord]:
    """Records under each path, in the order given, each once: ``results/runs/*`` names a run
    directory and the summary listing it, and the run must not appear twice in a table."""
    records: dict[Path, RunRecord] = {}
    for path in paths:
        for record in find_records(path):
            records.setdefault(record.path.resolve(), record)
    return list(records.values())


def load_per_sample(record: RunRecord) -> dict[str, dict[str, float]]:
    """``sample_id -> {metric: value}`` from the run's per-sample file, for bootstrap intervals.

    Raises ``DataError`` when the record names no such file (the task has no per-sample metrics)
    or a line is malformed, naming the file and line.
    """
    name = record.data.get("per_sample_file")
    if not name:
        raise DataError(
            f"{record.path}: 'per_sample_file' is null; task {record.task!r} wrote no per-sample "
            "metrics, so no confidence interval can be computed"
        )
    path = record.run_dir / name
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the per-sample file named by {record.path} ({exc})") from exc
    samples: dict[str, dict[str, float]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where} is not JSON ({exc.msg})") from exc
        if not isinstance(entry, Mapping) or "sample_id" not in entry:
            raise DataError(f"{where}: expected an object with 'sample_id' and 'metrics', got {line[:80]!r}")
        sample_id = str(entry["sample_id"])
        if sample_id in samples:
            raise DataError(f"{where}: sample_id {sample_id!r} appears twice")
        metrics = check_metrics(entry.get("metrics"), f"{where} (sample {sample_id!r})")
        bad = [m for m, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise DataError(f"{where} (sample {sample_id!r}): metric {bad[0]!r} is not finite")
        samples[sample_id] = metrics
    if not samples:
        raise DataError(f"{path}: the per-sample file is empty")
    return samples
