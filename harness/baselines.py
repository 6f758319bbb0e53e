"""Published results (``results/baselines/*.json``): loading, validation, and the plugin that
registers the repository's own tables.

The repository's tables are registered through the ``harness_register_baselines`` hook, exactly
as a third-party plugin adds its own, so ``harness compare`` treats them alike. The schema is
documented in ``results/baselines/README.md``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import harness
from harness.errors import ConfigError, DataError
from harness.hookspecs import hookimpl
from harness.records import check_metrics, read_json

if TYPE_CHECKING:
    from harness.registry import Registry

BASELINE_SCHEMA = "harness.baselines/1"
_ROW_KEYS = {"task", "split", "model", "metrics", "source", "note"}
_REQUIRED_ROW_KEYS = ("task", "split", "model", "metrics", "source")


@dataclass(frozen=True)
class BaselineRow:
    """One published result: a model's metrics on one task and split, with where it was printed."""

    task: str
    split: str
    model: str
    metrics: dict[str, float]
    source: str
    note: str | None = None


@dataclass(frozen=True)
class BaselineTable:
    """One baseline file: a named, versioned set of published rows."""

    name: str
    about: str
    rows: tuple[BaselineRow, ...]
    path: Path

    def rows_for(self, task: str, split: str) -> list[BaselineRow]:
        return [row for row in self.rows if row.task == task and row.split == split]


def _parse_row(raw: Any, where: str) -> BaselineRow:
    if not isinstance(raw, Mapping):
        raise DataError(f"{where}: a row must be an object, got {raw!r}")
    missing = [key for key in _REQUIRED_ROW_KEYS if key not in raw]
    if missing:
        raise DataError(f"{where}: missing {', '.join(repr(k) for k in missing)}")
    unknown = sorted(set(raw) - _ROW_KEYS)
    if unknown:
        raise DataError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(_ROW_KEYS)}")
    for key in ("task", "split", "model", "source"):
        if not isinstance(raw[key], str) or not raw[key]:
            raise DataError(f"{where}: {key!r} must be a non-empty string, got {raw[key]!r}")
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise DataError(f"{where}: 'note' must be a string, got {note!r}")
    return BaselineRow(
        task=raw["task"],
        split=raw["split"],
        model=raw["model"],
        metrics=check_metrics(raw["metrics"], where),
        source=raw["source"],
        note=note,
    )


def parse_baselines(data: Any, path: Path) -> BaselineTable:
    """Validate a baseline file's content; errors name the file and the row (index and model)."""
    if not isinstance(data, Mapping):
        raise DataError(f"{path}: a baseline file must be a JSON object, got {type(data).__name__}")
    if data.get("schema") != BASELINE_SCHEMA:
        raise DataError(f"{path}: field 'schema' must be {BASELINE_SCHEMA!r}, got {data.get('schema')!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise DataError(f"{path}: field 'name' must be a non-empty string, got {name!r}")
    about = data.get("about", "")
    if not isinstance(about, str):
        raise DataError(f"{path}: field 'about' must be a string, got {about!r}")
    raw_rows = data.get("rows")
    if not isinstance(raw_rows, list) or not raw_rows:
        raise DataError(f"{path}: field 'rows' must be a non-empty list, got {raw_rows!r}")
    rows: list[BaselineRow] = []
    seen: set[tuple[str, str, str]] = set()
    for index, raw in enumerate(raw_rows):
        model = raw.get("model") if isinstance(raw, Mapping) else None
        where = f"{path}: rows[{index}]" + (f" ({model!r})" if model else "")
        row = _parse_row(raw, where)
        key = (row.task, row.split, row.model)
        if key in seen:
            raise DataError(f"{where}: a second row for model {row.model!r} on {row.task}/{row.split}")
        seen.add(key)
        rows.append(row)
    return BaselineTable(name=name, about=about, rows=tuple(rows), path=path)


def load_baseline_file(path: Path) -> BaselineTable:
    path = Path(path)
    return parse_baselines(read_json(path, "baseline file"), path)


def load_baseline_files(paths: Iterable[Path]) -> list[BaselineTable]:
    """Load each file once; two files claiming the same table name are refused."""
    tables: dict[str, BaselineTable] = {}
    for path in dict.fromkeys(Path(p).resolve() for p in paths):
        table = load_baseline_file(path)
        if table.name in tables:
            raise DataError(
                f"baseline table {table.name!r} is defined twice: {tables[table.name].path} and {path}"
            )
        tables[table.name] = table
    return list(tables.values())


def is_baseline_path(name: str) -> bool:
    """Whether a ``--baselines`` value names a file rather than a registered table."""
    return name.endswith(".json") or Path(name).is_file()


def select_baselines(available: Sequence[BaselineTable], names: Sequence[str] | None) -> list[BaselineTable]:
    """The tables named (all when ``names`` is None). A name that is a path to a ``.json`` file
    loads that file directly, so an unregistered table can be compared without a plugin."""
    if names is None:
        return list(available)
    by_name = {table.name: table for table in available}
    chosen: list[BaselineTable] = []
    for name in names:
        if is_baseline_path(name):
            chosen.append(load_baseline_file(Path(name)))
        elif name in by_name:
            chosen.append(by_name[name])
        else:
            close = difflib.get_close_matches(name, list(by_name), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown baseline table {name!r}{hint} (registered: {', '.join(sorted(by_name)) or 'none'})"
            )
    return chosen


def registered_baselines(registry: Registry | None = None) -> list[BaselineTable]:
    """Every table added through ``harness_register_baselines`` by the installed plugins."""
    if registry is None:
        from harness.registry import get_registry

        registry = get_registry()
    return load_baseline_files(registry.collect().baseline_files)


def builtin_baseline_dir() -> Path:
    """Where the repository's tables live: ``results/baselines`` beside the package in a source
    checkout or editable install; in a wheel, the same files shipped as ``harness/baselines_data``."""
    package_dir = Path(harness.__file__).resolve().parent
    checkout = package_dir.parent / "results" / "baselines"
    return checkout if checkout.is_dir() else package_dir / "baselines_data"


@hookimpl
def harness_register_baselines(registry: Registry) -> None:
    for path in sorted(builtin_baseline_dir().glob("*.json")):
        registry.add_baselines(path)
