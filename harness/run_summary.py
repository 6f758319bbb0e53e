"""What one ``harness run`` invocation leaves for a reader: the compact closing table it prints,
and ``summary-<UTC time>-<model>.json`` / ``.md`` beside its run directories.

One row per task with its headline metrics (the task's own choice; every metric stays in the
record) and the caveats, numbered once under the table. Each invocation writes its own pair of
files, named by the time it finished and the model, so two invocations into one ``--output``
never overwrite each other and ``ls`` lists them in the order they ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.caveats import headline, not_comparable_reason
from harness.errors import OutputError
from harness.records import SUMMARY_SCHEMA
from harness.results import write_json_atomic


def _metric_text(record: Mapping[str, Any]) -> str:
    metrics = record.get("metrics") or {}
    shown = [f"{name} {metrics[name]:.2f}" for name in headline(record)]
    return ", ".join(shown) or "no metrics (no ground truth)"


def _numbered_caveats(records: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(caveat for record in records for caveat in record.get("caveats") or []))


def closing_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The table ``harness run`` ends with: one row per task, its headline metrics, and the
    numbers of its caveats, which are written out once below the table."""
    caveats = _numbered_caveats(records)
    lines = ["", "| task | split | headline metrics | caveats |", "|---|---|---|---|"]
    for record in records:
        marks = " ".join(f"[{caveats.index(c) + 1}]" for c in record.get("caveats") or [])
        lines.append(f"| {record['task']} | {record['split']} | {_metric_text(record)} | {marks} |")
    if caveats:
        lines.append("")
        lines += [f"[{number}] {caveat}" for number, caveat in enumerate(caveats, start=1)]
    lines.append("")
    lines.append("Every metric, the protocol and the provenance are in each run's result.json; "
                 "`harness compare RUN_DIR...` puts them beside the published rows.")
    return "\n".join(lines)


def summary_data(records: Sequence[Mapping[str, Any]], run_dirs: Sequence[Path], command: str,
                 created: str) -> dict[str, Any]:
    """The JSON summary: per task the headline metrics, where the full record is, the published
    row it is measured against, its caveats and whether it may stand beside published numbers."""
    runs = []
    for record, run_dir in zip(records, run_dirs, strict=True):
        reason = not_comparable_reason(record)
        runs.append({
            "task": record["task"],
            "split": record["split"],
            "model": record["model"],
            "weights": record["weights"]["name"],
            "run_dir": run_dir.name,
            "headline_metrics": {name: record["metrics"][name] for name in headline(record)},
            "baseline_row": record.get("baseline_row"),
            "comparable_with_published": reason is None,
            "caveats": list(record.get("caveats") or []),
        })
    return {"schema": SUMMARY_SCHEMA, "created": created, "command": command, "runs": runs}


def summary_markdown(records: Sequence[Mapping[str, Any]], run_dirs: Sequence[Path], command: str,
                     created: str) -> str:
    lines = [f"# harness run, {created}", "", f"`{command}`", closing_table(records), "", "Run directories:", ""]
    lines += [f"- {record['task']} [{record['split']}]: `{run_dir.name}/`"
              for record, run_dir in zip(records, run_dirs, strict=True)]
    return "\n".join(lines) + "\n"


def summary_paths(output: Path, model: str, now: datetime) -> tuple[Path, Path]:
    """``summary-<UTC time>-<model>.json`` and ``.md``; a second invocation in the same second
    gets ``-2``, ``-3``, ... so no summary is ever overwritten."""
    stem = f"summary-{now.strftime('%Y%m%dT%H%M%SZ')}-{model.replace('/', '_')}"
    candidate, number = stem, 1
    while (output / f"{candidate}.json").exists() or (output / f"{candidate}.md").exists():
        number += 1
        candidate = f"{stem}-{number}"
    return output / f"{candidate}.json", output / f"{candidate}.md"


def write_run_summary(records: Sequence[Mapping[str, Any]], run_dirs: Sequence[Path], output: Path,
                      command: str) -> tuple[Path, Path]:
    """Write the invocation's summary pair into ``output`` (the ``--output`` directory, where its
    run directories are) and return their paths."""
    now = datetime.now(timezone.utc)
    created = now.isoformat(timespec="seconds")
    json_path, md_path = summary_paths(output, records[0]["model"], now)
    try:
        write_json_atomic(json_path, summary_data(records, run_dirs, command, created))
        md_path.write_text(summary_markdown(records, run_dirs, command, created), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{output}: cannot write the run summary ({exc.strerror or exc})") from exc
    return json_path, md_path
