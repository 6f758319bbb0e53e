"""Hand-written result records and baseline files for the compare / regress / baselines tests.

Records follow the result.json layout of docs/HELPER_BRIEF.md with only the values a test cares
about varied, so each test states its difference from a plain comparable record.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

TASK = "toy_task"
SPLIT = "test"


def record_data(**changes: Any) -> dict[str, Any]:
    """A complete result record; keyword arguments replace top-level fields."""
    data: dict[str, Any] = {
        "schema": "harness.result/1",
        "task": TASK,
        "split": SPLIT,
        "model": "tiny",
        "weights": {"name": "seed0", "files": [{"path": "/cache/tiny.safetensors", "sha256": "ab" * 32}]},
        "metrics": {"acc": 55.5, "r1": 45.25, "mean_rank": 2.5},
        "reference_levels": {"acc": 50.0},
        "protocol": {"image_size": 32, "num_beams": 3},
        "data": {"root": "/data", "fingerprint": "f" * 64, "toy": True},
        "samples": {"total": 4, "evaluated": 4, "skipped": 0, "resumed": 0, "limit": None},
        "timings": {"total_seconds": 1.0, "stages": {}},
        "device": "cpu",
        "precision": "fp32",
        "seed": 0,
        "batch_size": 8,
        "batch_size_used": 8,
        "world_size": 1,
        "versions": {"python": "3.11", "torch": "2.13.0", "transformers": "5.0", "harness": "0.1.0", "git_commit": "x"},
        "predictions_file": "predictions.jsonl",
        "per_sample_file": None,
        "outputs": [],
        "created": "2024-01-01T00:00:00Z",
    }
    for key, value in changes.items():
        data[key] = copy.deepcopy(value)
    return data


def write_record(run_dir: Path, per_sample: list[dict[str, Any]] | None = None, **changes: Any) -> Path:
    """Write ``run_dir/result.json`` (and ``per_sample.jsonl`` when given); returns ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data = record_data(**changes)
    if per_sample is not None:
        data["per_sample_file"] = "per_sample.jsonl"
        lines = "".join(json.dumps(entry) + "\n" for entry in per_sample)
        (run_dir / "per_sample.jsonl").write_text(lines, encoding="utf-8")
    (run_dir / "result.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    return run_dir


def baseline_data(rows: list[dict[str, Any]] | None = None, name: str = "toy_paper") -> dict[str, Any]:
    if rows is None:
        rows = [
            {"task": TASK, "split": SPLIT, "model": "Alpha (1M)",
             "metrics": {"acc": 50.0, "r1": 40.0, "mean_rank": 3.0}, "source": "Toy paper, Table 1"},
            {"task": TASK, "split": SPLIT, "model": "Beta (2M)",
             "metrics": {"acc": 60.0, "r1": 35.0}, "source": "Toy paper, Table 1", "note": "no rank reported"},
            {"task": TASK, "split": "val", "model": "Gamma (other split)",
             "metrics": {"acc": 99.0}, "source": "Toy paper, Table 2"},
            {"task": "other_task", "split": SPLIT, "model": "Delta (other task)",
             "metrics": {"acc": 99.0}, "source": "Toy paper, Table 3"},
        ]
    return {"schema": "harness.baselines/1", "name": name, "about": "Toy table for tests.", "rows": rows}


def write_baselines(path: Path, data: Any | None = None) -> Path:
    path.write_text(json.dumps(baseline_data() if data is None else data, indent=1), encoding="utf-8")
    return path
