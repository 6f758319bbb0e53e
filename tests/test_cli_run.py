"""``harness run`` end to end in a subprocess on the toy suite: the result record carries every
field of its schema, the predictions and outputs it names exist, a summary line per task and the
closing table are printed; and records are written atomically."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cli_process import harness_command, harness_env, read_result, run_dirs, run_harness

from harness.cli import main
from harness.errors import ExitCode
from harness.records import is_number, load_record
from harness.registry import get_registry
from harness.results import SCHEMA, write_json_atomic, write_jsonl_atomic

TOP_LEVEL = {
    "schema", "task", "split", "model", "weights", "metrics", "reference_levels", "protocol", "data",
    "samples", "timings", "device", "precision", "seed", "batch_size", "batch_size_used", "world_size",
    "versions", "predictions_file", "per_sample_file", "outputs", "created",
    "baseline_row", "caveats", "headline_metrics", "protocol_changes",
}


def assert_complete_record(run_dir: Path, samples: int) -> dict[str, Any]:
    """Every field of the ``harness.result/1`` schema (docs/HELPER_BRIEF.md), with its type, and
    every file the record names present in the run directory."""
    record = read_result(run_dir)
    assert TOP_LEVEL <= record.keys(), TOP_LEVEL - record.keys()
    assert record["schema"] == SCHEMA
    assert all(isinstance(record[key], str) for key in ("task", "split", "model", "device", "precision"))
    assert isinstance(record["weights"]["name"], str)
    assert all(set(f) == {"path", "sha256"} and len(f["sha256"]) == 64 for f in record["weights"]["files"])
    for key in ("metrics", "reference_levels"):
        assert all(isinstance(name, str) and is_number(value) for name, value in record[key].items())
    assert record["metrics"], "a toy split with ground truth has metrics"
    assert isinstance(record["protocol"], dict) and record["protocol"]
    assert record["data"].keys() >= {"root", "fingerprint", "toy"} and len(record["data"]["fingerprint"]) == 64
    assert record["samples"].keys() >= {"total", "evaluated", "skipped", "resumed", "limit"}
    assert record["samples"]["evaluated"] == samples == record["samples"]["limit"]
    assert record["samples"]["skipped"] == 0 and record["samples"]["resumed"] == 0
    assert is_number(record["timings"]["total_seconds"])
    stages = record["timings"]["stages"]
    assert {"load_data", "load_model", "score"} <= stages.keys()
    assert all(set(stage) == {"seconds", "items", "items_per_s"} for stage in stages.values())
    assert all(isinstance(record[key], int) for key in ("seed", "batch_size", "batch_size_used", "world_size"))
    assert record["versions"].keys() >= {"python", "torch", "transformers", "harness", "git_commit"}
    assert datetime.fromisoformat(record["created"]).tzinfo is not None
    predictions = (run_dir / record["predictions_file"]).read_text().splitlines()
    assert record["predictions_file"] == "predictions.jsonl" and len(predictions) == samples
    assert all({"sample_id", "prediction"} == json.loads(line).keys() for line in predictions)
    if record["per_sample_file"] is not None:
        lines = [json.loads(line) for line in (run_dir / record["per_sample_file"]).read_text().splitlines()]
        assert all(line.keys() == {"sample_id", "metrics"} for line in lines)
    for output in record["outputs"]:
        assert not Path(output).is_absolute() and (run_dir / output).is_file()
    # Nothing half-written or left over: no temporary files, no part files after the merge.
    leftovers = [p.name for p in run_dir.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    assert not leftovers and not list(run_dir.glob("predictions.part*"))
    load_record(run_dir / "result.json")  # what compare and regress read
    return record


def summary_line(stdout: str, record: dict[str, Any], run_dir: Path) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith(f"{record['task']} [{record['split']}] ")]
    assert line.endswith(f"-> {run_dir}") and f"({record['samples']['evaluated']} samples, " in line
    return line


def test_one_task_with_the_toy_data(tmp_path: Path, toy_cache: Path) -> None:
    output = tmp_path / "runs"
    done = run_harness(["run", "--model", "blip-tiny", "--task", "vqav2", "--data", "toy", "--limit", "6",
                        "--batch-size", "2", "--device", "cpu", "--output", str(output)], toy_cache)
    assert done.returncode == ExitCode.OK, done.stderr
    (run_dir,) = run_dirs(output)
    record = assert_complete_record(run_dir, samples=6)
    assert record["task"] == "vqav2" and record["split"] == "val" and record["world_size"] == 1
    assert record["data"]["toy"] is True and Path(record["data"]["root"]).parent == toy_cache
    assert record["outputs"] == ["vqav2_val_submission.json"]
    line = summary_line(done.stdout, record, run_dir)
    assert f"accuracy={record['metrics']['accuracy']:.2f}" in line
    # The run says it is not comparable with published numbers, in the record and on screen.
    assert record["baseline_row"] is None and record["headline_metrics"] == ["accuracy"]
    assert [c.split(":")[0] for c in record["caveats"]] == ["toy suite", "--limit 6"]
    assert f"  caveat: {record['caveats'][0]}" in done.stdout
    assert "| task | split | headline metrics | caveats |" in done.stdout
    assert f"| vqav2 | val | accuracy {record['metrics']['accuracy']:.2f} | [1] [2] |" in done.stdout
    (summary,) = output.glob("summary-*-blip-tiny.json")
    assert json.loads(summary.read_text())["runs"][0]["run_dir"] == run_dir.name
    assert f"summary: {summary.with_suffix('.md')}" in done.stdout


@pytest.mark.slow
def test_every_task_runs_and_records(tmp_path: Path, toy_cache: Path) -> None:
    output = tmp_path / "runs"
    done = subprocess.run(harness_command(["run", "--model", "blip-tiny", "--task", "all", "--data", "toy",
                                           "--limit", "2", "--batch-size", "8", "--device", "cpu",
                                           "--output", str(output)]),
                          capture_output=True, text=True, timeout=600, env=harness_env(toy_cache))
    assert done.returncode == ExitCode.OK, done.stderr
    tasks = set(get_registry().collect().tasks)
    records = {}
    for run_dir in run_dirs(output):
        record = assert_complete_record(run_dir, samples=2)
        summary_line(done.stdout, record, run_dir)
        records[record["task"]] = record
    assert records.keys() == tasks
    table = [line for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| task ")]
    assert len(table) == len(tasks)  # compact: one row per task


def test_the_exit_codes_are_in_the_help() -> None:
    out = subprocess.run(harness_command(["run", "--help"]), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "exit codes: 0 success, 1 metric gate failed, 2 usage or input error, 3 interrupted (resumable)" in text
    assert "--flush-every N" in text and "--resume RUN_DIR" in text and "--skip-bad" in text


def test_flush_every_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--model", "blip-tiny", "--task", "nlvr2", "--data", "toy", "--flush-every", "0"]) == ExitCode.USAGE
    assert capsys.readouterr().err == "error: --flush-every must be at least 1\n"


class Unserialisable:
    """A value whose conversion to JSON fails halfway through writing a record."""

    def __str__(self) -> str:
        raise RuntimeError("cannot serialise this value")


def test_a_writer_that_fails_leaves_the_old_record_and_no_temporary_file(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "result.json", {"metrics": {"accuracy": 81.5}})
    before = path.read_bytes()
    # Enough content that json.dump has streamed part of the new record before it fails.
    broken = {"metrics": {f"m{i}": float(i) for i in range(5000)}, "bad": Unserialisable()}
    with pytest.raises(RuntimeError, match="cannot serialise"):
        write_json_atomic(path, broken)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]

    lines = write_jsonl_atomic(tmp_path / "per_sample.jsonl", [{"sample_id": "a", "metrics": {"x": 1.0}}])
    before = lines.read_bytes()

    def records():
        yield from ({"sample_id": str(i), "metrics": {"x": float(i)}} for i in range(5000))
        raise RuntimeError("the writer died")

    with pytest.raises(RuntimeError, match="died"):
        write_jsonl_atomic(lines, records())
    assert lines.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["per_sample.jsonl", "result.json"]
