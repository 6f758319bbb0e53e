"""What a ``harness run`` invocation leaves: a compact closing table (one row per task, headline
metrics, caveats numbered once) and its own ``summary-*.json`` / ``.md`` pair beside the run
directories, never overwriting another invocation's."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from result_fixtures import record_data, write_record

from harness.errors import OutputError
from harness.records import find_all_records, find_records
from harness.run_summary import SUMMARY_SCHEMA, closing_table, summary_paths, write_run_summary

TOY = "toy suite: generated"
VAL = "val was trained on"


def _records() -> list[dict]:
    vqa = record_data(task="vqav2", split="val", metrics={"accuracy": 66.0667, "extra": 1.0},
                      headline_metrics=["accuracy"], caveats=[TOY, VAL])
    captions = record_data(task="coco_captioning", split="karpathy_test",
                           metrics={"bleu4": 25.9, "cider": 110.95, "meteor": 25.8},
                           headline_metrics=["bleu4", "cider", "spice"], caveats=[TOY])
    return [vqa, captions]


def test_closing_table_is_one_row_per_task_with_numbered_caveats():
    lines = closing_table(_records()).splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| task ")]
    assert rows == [
        "| vqav2 | val | accuracy 66.07 | [1] [2] |",
        "| coco_captioning | karpathy_test | bleu4 25.90, cider 110.95 | [1] |",
    ]
    assert f"[1] {TOY}" in lines and f"[2] {VAL}" in lines
    assert not any("meteor" in line or "extra" in line for line in lines)  # the full metrics are in the records


def test_summary_pair_is_written_beside_the_run_directories(tmp_path: Path):
    records = _records()
    run_dirs = [tmp_path / "tiny__vqav2__val__abc", tmp_path / "tiny__coco_captioning__karpathy_test__def"]
    json_path, md_path = write_run_summary(records, run_dirs, tmp_path, "harness run --model tiny")
    assert json_path.parent == md_path.parent == tmp_path
    assert json_path.name.startswith("summary-") and json_path.name.endswith("-tiny.json")
    assert md_path.with_suffix(".json") == json_path
    data = json.loads(json_path.read_text())
    assert data["schema"] == SUMMARY_SCHEMA and data["command"] == "harness run --model tiny"
    first = data["runs"][0]
    assert first["run_dir"] == "tiny__vqav2__val__abc" and first["headline_metrics"] == {"accuracy": 66.0667}
    assert first["caveats"] == [TOY, VAL] and first["comparable_with_published"] is False
    markdown = md_path.read_text()
    assert "| vqav2 | val | accuracy 66.07 | [1] [2] |" in markdown and "`tiny__vqav2__val__abc/`" in markdown
    # A second invocation never overwrites the first one's summary.
    again = write_run_summary(records, run_dirs, tmp_path, "harness run --model tiny")
    assert again[0] != json_path and json_path.is_file() and again[0].is_file()


def test_summary_names_sort_by_time_and_take_a_number_within_one_second(tmp_path: Path):
    moment = datetime(2026, 12, 5, 17, 0, 1, tzinfo=timezone.utc)
    first = summary_paths(tmp_path, "blip", moment)
    assert first[0].name == "summary-20261205T170001Z-blip.json"
    first[1].write_text("taken")
    assert summary_paths(tmp_path, "blip", moment)[0].name == "summary-20261205T170001Z-blip-2.json"


def test_an_unwritable_output_is_one_clear_error(tmp_path: Path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(OutputError, match="cannot write the run summary"):
        write_run_summary(_records(), [tmp_path / "a", tmp_path / "b"], blocked, "harness run")


def test_a_glob_over_the_output_reads_each_run_once_and_a_summary_names_its_runs(tmp_path: Path):
    """``harness compare results/runs/*`` passes the run directories and both summary files."""
    run_dirs = [write_record(tmp_path / "a", task="first"), write_record(tmp_path / "b", task="second")]
    records = [json.loads((d / "result.json").read_text()) for d in run_dirs]
    json_path, md_path = write_run_summary(records, run_dirs, tmp_path, "harness run")
    everything = sorted(tmp_path.iterdir())
    assert md_path in everything and json_path in everything
    assert [r.task for r in find_all_records(everything)] == ["first", "second"]
    assert [r.run_dir for r in find_records(json_path)] == run_dirs
    assert find_records(md_path) == []
