"""Per-sample predictions, checkpointed as they are made so no finished sample is ever lost.

Each process appends JSON lines ``{"sample_id": ..., "prediction": ...}`` (or ``"skipped":
reason``) to its own part file and fsyncs them every ``flush_every`` records. On resume every part
file in the run directory is read, whatever process count wrote it, so a run can continue with a
different number of processes. A line cut short by a kill is dropped and the file truncated to its
last whole line. When a run finishes, process 0 merges the parts into ``predictions.jsonl``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.results import write_jsonl_atomic

PART_GLOB = "predictions.part*.jsonl"
MERGED_NAME = "predictions.jsonl"


_FIX = "the file was not written by this harness or was edited; delete it (its samples are computed again) or fix the line"


def _is_prediction_line(record: Any) -> bool:
    return (isinstance(record, dict) and isinstance(record.get("sample_id"), (str, int))
            and not isinstance(record.get("sample_id"), bool)
            and ("prediction" in record or isinstance(record.get("skipped"), str)))


def _read_lines(path: Path, *, repair: bool) -> list[dict[str, Any]]:
    """Records of one JSONL file; a torn last line is dropped (and cut off if ``repair``)."""
    records: list[dict[str, Any]] = []
    raw = path.read_bytes()
    good_until = 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        number = len(records) + 1
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: line {number} is not JSON ({getattr(exc, 'msg', exc)}); {_FIX}") from exc
        if not _is_prediction_line(record):
            raise DataError(
                f"{path}: line {number} is not a prediction line (expected an object with a "
                f"'sample_id' and a 'prediction' or a string 'skipped'); {_FIX}"
            )
        records.append(record)
        good_until += len(line)
    if repair and good_until < len(raw):
        with path.open("r+b") as handle:
            handle.truncate(good_until)
    return records


def read_predictions(run_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """All predictions and skips found in ``run_dir`` (merged file and part files)."""
    predictions: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    paths = sorted(run_dir.glob(PART_GLOB))
    merged = run_dir / MERGED_NAME
    if merged.exists():
        paths.insert(0, merged)
    for path in paths:
        for record in _read_lines(path, repair=path != merged):
            sample_id = str(record["sample_id"])
            if "skipped" in record:
                skipped[sample_id] = record["skipped"]
            else:
                predictions[sample_id] = record["prediction"]
    return predictions, skipped


class PredictionStore:
    """Predictions of one run: those found on disk at start plus those added by this process."""

    def __init__(self, run_dir: Path, rank: int = 0, flush_every: int = 64) -> None:
        self.run_dir = run_dir
        self.rank = rank
        self.flush_every = flush_every
        self.predictions, self.skipped = read_predictions(run_dir)
        self.resumed_count = len(self.predictions) + len(self.skipped)
        self._part = run_dir / f"predictions.part{rank}.jsonl"
        self._handle = self._part.open("a", encoding="utf-8")
        self._unflushed = 0

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self.predictions or sample_id in self.skipped

    def add(self, sample_id: str, prediction: Any) -> None:
        self.predictions[sample_id] = prediction
        self._write({"sample_id": sample_id, "prediction": prediction})

    def add_many(self, items: Iterable[tuple[str, Any]]) -> None:
        for sample_id, prediction in items:
            self.add(sample_id, prediction)

    def skip(self, sample_id: str, reason: str) -> None:
        self.skipped[sample_id] = reason
        self._write({"sample_id": sample_id, "skipped": reason})

    def _write(self, record: Mapping[str, Any]) -> None:
        self._handle.write(json.dumps(record) + "\n")
        self._unflushed += 1
        if self._unflushed >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self._handle.closed:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._unflushed = 0

    def close(self) -> None:
        self.flush()
        self._handle.close()

    def reload(self) -> None:
        """Re-read every process's parts (after the processes of a distributed run finish)."""
        self.flush()
        self.predictions, self.skipped = read_predictions(self.run_dir)

    def merge(self, order: Iterable[str]) -> Path:
        """Write ``predictions.jsonl`` in dataset order atomically, then drop the part files."""
        self.close()
        predictions, skipped = read_predictions(self.run_dir)
        merged = write_jsonl_atomic(self.run_dir / MERGED_NAME, (
            {"sample_id": sample_id, "prediction": predictions[sample_id]} if sample_id in predictions
            else {"sample_id": sample_id, "skipped": skipped[sample_id]}
            for sample_id in order if sample_id in predictions or sample_id in skipped
        ))
        for part in self.run_dir.glob(PART_GLOB):
            part.unlink()
        return merged
