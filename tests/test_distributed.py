"""``harness run`` under torchrun on CPU (gloo, 2 processes): the metrics of one process, one
run directory, one record and one summary; a killed 2-process run finishes with 1 process."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from cli_process import (
    SCORE_STAGE,
    VISDIAL_SAMPLES,
    assert_resumed_exactly,
    harness_env,
    only_run_dir,
    read_predictions,
    read_result,
    run_harness,
    stop_midway,
    torchrun_command,
    visdial_args,
)

from harness.context import owner_rank

pytestmark = pytest.mark.slow


def torchrun(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun_command(2, args), capture_output=True, text=True, timeout=300,
                          env=harness_env(cache))


def summary_lines(stdout: str, task: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(f"{task} [")]


def test_two_processes_give_the_metrics_of_one_with_one_record(
    tmp_path: Path, toy_root: Path, toy_cache: Path, reference_run
) -> None:
    args = visdial_args(toy_root)
    expected_record, expected_predictions = reference_run(args)
    output = tmp_path / "runs"
    done = torchrun(["run", *args, "--output", str(output)], toy_cache)
    assert done.returncode == 0, done.stderr
    # Both processes wrote into one run directory, which only process 0 finished.
    run_dir = only_run_dir(output)
    record = read_result(run_dir)
    assert record["world_size"] == 2
    assert record["metrics"] == expected_record["metrics"]
    assert record["samples"]["evaluated"] == VISDIAL_SAMPLES and record["samples"]["resumed"] == 0
    assert read_predictions(run_dir) == expected_predictions
    # Process 0 scored only the rounds its sample-id hash gives it; process 1's came from its part file.
    mine = sum(owner_rank(sample_id, 2) == 0 for sample_id in expected_predictions)
    assert 0 < mine < VISDIAL_SAMPLES
    assert record["timings"]["stages"][SCORE_STAGE]["items"] == mine
    assert record["batch_size_used"] == 1
    # One summary line and one table: only process 0 reports.
    assert len(summary_lines(done.stdout, "visdial")) == 1
    assert done.stdout.count("| task | split | headline metrics |") == 1
    assert "Traceback" not in done.stderr


def test_retrieval_needs_the_whole_gallery_and_still_matches_one_process(
    tmp_path: Path, toy_root: Path, toy_cache: Path, reference_run
) -> None:
    """Each process ranks only its own queries, but against every image and caption (batch size 1:
    see ``visdial_args``)."""
    args = ["--model", "blip-tiny", "--task", "flickr30k_retrieval", "--data-root", str(toy_root),
            "--limit", "16", "--batch-size", "1", "--device", "cpu", "--quiet"]
    expected_record, expected_predictions = reference_run(args)
    output = tmp_path / "runs"
    done = torchrun(["run", *args, "--output", str(output)], toy_cache)
    assert done.returncode == 0, done.stderr
    run_dir = only_run_dir(output)
    record = read_result(run_dir)
    assert record["world_size"] == 2
    assert record["metrics"] == expected_record["metrics"]
    assert read_predictions(run_dir) == expected_predictions
    assert len(summary_lines(done.stdout, "flickr30k_retrieval")) == 1


def test_a_killed_two_process_run_finishes_with_one_process(
    tmp_path: Path, toy_root: Path, toy_cache: Path, reference_run
) -> None:
    args = visdial_args(toy_root)
    reference = reference_run(args)
    output = tmp_path / "runs"
    command = torchrun_command(2, ["run", *args, "--output", str(output)])
    killed, on_disk = stop_midway(command, output, toy_cache, signal.SIGKILL, parts=2)
    assert killed.returncode == -signal.SIGKILL
    run_dir = only_run_dir(output)
    assert sorted(part.name for part in run_dir.glob("predictions.part*.jsonl")) == [
        "predictions.part0.jsonl", "predictions.part1.jsonl"]

    again = run_harness(["run", *args, "--output", str(output)], toy_cache)
    assert again.returncode == 0, again.stderr
    assert only_run_dir(output) == run_dir
    assert read_result(run_dir)["world_size"] == 1
    assert_resumed_exactly(run_dir, on_disk, reference)
