"""Which data a run directory's predictions were made on, so a resumed run never mixes data.

Why: ``harness run --resume RUN_DIR`` continues a run from its directory, whatever the data files
hold today. If an annotation file was edited since the run started, the predictions on disk
answer other questions (or rank another gallery, or use another answer list) than the data now
says; scoring them together with new ones under the new fingerprint would be a wrong number that
looks right. A prediction of a retrieval query or of a VQA question in rank mode depends on the
whole split (gallery, answer list), so recomputing only the changed samples is not safe in
general: the run is refused instead, naming what changed.

``data.json`` in the run directory, written when the run first starts, holds the data fingerprint
(``Dataset.fingerprint``: the annotation files) and a short digest of every sample record, so the
refusal can name the samples that were changed, added or removed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.results import write_json_atomic
from harness.task import Dataset

DATA_NAME = "data.json"
_SHOWN = 5


def sample_digests(dataset: Dataset) -> dict[str, str]:
    """Sample id -> a digest of everything the task read for it (its validated record)."""
    return {sample.sample_id: hashlib.sha256(repr(sample).encode("utf-8")).hexdigest()[:16]
            for sample in dataset.samples}


def check_same_data(run_dir: Path, dataset: Dataset) -> None:
    """Refuse (``DataError``) to continue ``run_dir`` when its data changed since it started;
    record the data on the first start. A directory from before this file existed is taken as is."""
    path = run_dir / DATA_NAME
    current = {"fingerprint": dataset.fingerprint, "samples": sample_digests(dataset)}
    if not path.is_file():
        write_json_atomic(path, current)
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        fingerprint, samples = saved["fingerprint"], dict(saved["samples"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: cannot be read ({exc}); the run cannot be checked against its data: "
                        "start a new run (the same command without --resume)") from exc
    if fingerprint == dataset.fingerprint:
        return
    raise DataError(
        f"{dataset.task} [{dataset.split}]: the data changed since the run in {run_dir} started "
        f"(annotation fingerprint {fingerprint[:12]} -> {dataset.fingerprint[:12]}; {describe_changes(samples, current['samples'])}); "
        "its predictions were made on the old data and cannot be scored with the new: "
        "start a new run (the same command without --resume), or restore the old files"
    )


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``2 samples changed (7, 9), 1 added (12)``, or what else changed when no sample did."""
    groups = (
        ("changed", [sid for sid in new if sid in old and old[sid] != new[sid]]),
        ("added", [sid for sid in new if sid not in old]),
        ("removed", [sid for sid in old if sid not in new]),
    )
    parts = [f"{len(ids)} sample{'s' if len(ids) != 1 else ''} {label} ({_first(ids)})" for label, ids in groups if ids]
    return ", ".join(parts) or "every sample record is the same: another annotation file changed (answer list, references, relevance scores)"


def _first(ids: list[str]) -> str:
    shown = ", ".join(ids[:_SHOWN])
    return f"{shown}, and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else shown
