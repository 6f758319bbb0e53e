"""The prediction store: checkpointed appends, torn lines, multi-process parts, merge."""

from __future__ import annotations

import json
from pathlib import Path

from harness.predictions import MERGED_NAME, PredictionStore, read_predictions


def test_resume_sees_every_flushed_prediction(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path, flush_every=2)
    store.add("a", 1)
    store.add("b", [1, 2])
    store.skip("c", "bad image")
    store.close()
    again = PredictionStore(tmp_path)
    assert again.predictions == {"a": 1, "b": [1, 2]}
    assert again.skipped == {"c": "bad image"}
    assert again.resumed_count == 3 and "c" in again and "d" not in again


def test_a_torn_last_line_is_dropped_and_cut_off(tmp_path: Path) -> None:
    part = tmp_path / "predictions.part0.jsonl"
    part.write_text(json.dumps({"sample_id": "a", "prediction": 1}) + "\n" + '{"sample_id": "b", "predi')
    predictions, _ = read_predictions(tmp_path)
    assert predictions == {"a": 1}
    assert part.read_text() == json.dumps({"sample_id": "a", "prediction": 1}) + "\n"


def test_parts_of_several_processes_merge_in_dataset_order(tmp_path: Path) -> None:
    first, second = PredictionStore(tmp_path, rank=0), PredictionStore(tmp_path, rank=1)
    first.add("x", "0")
    second.add("y", "1")
    second.skip("z", "gone")
    second.close()
    merged = first.merge(order=["z", "y", "x"])
    lines = [json.loads(line) for line in merged.read_text().splitlines()]
    assert [line["sample_id"] for line in lines] == ["z", "y", "x"]
    assert lines[0] == {"sample_id": "z", "skipped": "gone"}
    assert merged.name == MERGED_NAME and not list(tmp_path.glob("predictions.part*"))
    assert read_predictions(tmp_path)[0] == {"x": "0", "y": "1"}
