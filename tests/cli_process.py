"""Running ``harness`` as a user does, in a subprocess, and watching its run directory from outside.

The reliability tests stop runs midway with real signals. No test hook exists in the harness for
this: a test polls the run's prediction part files until enough samples are finished, then
signals the process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

PART_GLOB = "*/predictions.part*.jsonl"


def harness_env(cache: Path, **extra: str) -> dict[str, str]:
    """The environment of a harness subprocess: offline, its own cache, unbuffered output, and one
    CPU thread (as torchrun gives each worker): on a small shared CI machine, OpenMP threads of
    concurrent processes spinning against each other slow a tiny model down several-fold."""
    return {
        **os.environ,
        "HARNESS_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        **extra,
    }


def harness_command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def torchrun_command(nproc: int, args: Sequence[str]) -> list[str]:
    """``torchrun --standalone --nproc_per_node N -m harness ARGS`` through this interpreter."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "harness", *args]


def run_harness(args: Sequence[str], cache: Path, timeout: float = 300,
                preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(harness_command(args), capture_output=True, text=True, timeout=timeout,
                          env=harness_env(cache), preexec_fn=preexec_fn)


def start(command: Sequence[str], cache: Path, preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen:
    """A command started in its own session (so its whole process group can be signalled)."""
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=harness_env(cache), start_new_session=True, preexec_fn=preexec_fn)


def finished_records(output: Path) -> list[dict[str, Any]]:
    """The complete lines of every prediction part file under the run directories of ``output``
    (a line cut short by a kill is not a finished prediction)."""
    records = []
    for part in sorted(output.glob(PART_GLOB)):
        for line in part.read_bytes().splitlines(keepends=True):
            if line.endswith(b"\n"):
                records.append(json.loads(line))
    return records


def wait_for_predictions(proc: subprocess.Popen, output: Path, at_least: int, timeout: float = 240) -> int:
    """Poll until the run has ``at_least`` finished predictions on disk; fails if it ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = len(finished_records(output))
        if done >= at_least:
            return done
        if proc.poll() is not None:
            stdout, stderr = proc.communicate()
            raise AssertionError(f"the run ended (exit {proc.returncode}) with {done} predictions on disk:\n{stdout}\n{stderr}")
        time.sleep(0.02)
    raise AssertionError(f"no {at_least} predictions on disk after {timeout} s")


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process and everything it started (torchrun's workers), as a pre-emption does."""
    os.killpg(proc.pid, signal.SIGKILL)


STOP_AFTER = 8
"""Predictions on disk before a test stops a run: enough to resume from, far from its end."""


def stop_midway(command: Sequence[str], output: Path, cache: Path, sig: signal.Signals,
                preexec_fn: Callable[[], None] | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Start ``command``, send ``sig`` once STOP_AFTER predictions are on disk (SIGKILL goes to
    the whole process group), and return how it ended and the sample ids it left on disk."""
    proc = start(command, cache, preexec_fn=preexec_fn)
    try:
        wait_for_predictions(proc, output, STOP_AFTER)
        if sig == signal.SIGKILL:
            kill_group(proc)
        else:
            proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            kill_group(proc)
            proc.wait()
    on_disk = {record["sample_id"] for record in finished_records(output)}
    assert STOP_AFTER <= len(on_disk) < VISDIAL_SAMPLES, "the run was not stopped midway"
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), on_disk


def run_dirs(output: Path) -> list[Path]:
    return sorted(path for path in output.iterdir() if path.is_dir())


def only_run_dir(output: Path) -> Path:
    (run_dir,) = run_dirs(output)
    return run_dir


def read_result(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "result.json").read_text())


def read_predictions(run_dir: Path) -> dict[str, Any]:
    """``predictions.jsonl`` of a finished run as {sample_id: prediction or {"skipped": reason}}."""
    lines = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    return {line["sample_id"]: line.get("prediction", {"skipped": line.get("skipped")}) for line in lines}


def copy_task_data(toy_root: Path, data_dir: str, dest: Path) -> Path:
    """A data root holding a private copy of one task folder of the toy suite, free to corrupt."""
    shutil.copytree(toy_root / data_dir, dest / data_dir)
    return dest


# -- the run that reliability tests interrupt -----------------------------------------------------

VISDIAL_SAMPLES = 40
"""Dialog rounds of the run below: each costs the tiny model tens of milliseconds (100 candidate
answers through ITM), so a run can be stopped midway reliably from outside."""
SCORE_STAGE = "score_answers"
"""The stage that times VisDial's model calls; its item count is the number of rounds scored."""


def visdial_args(data_root: Path) -> list[str]:
    """VisDial rounds, 2 per model call, each prediction fsynced at once (``--flush-every 1``)."""
    return ["--model", "blip-tiny", "--task", "visdial", "--data-root", str(data_root), "--limit",
            str(VISDIAL_SAMPLES), "--batch-size", "2", "--flush-every", "1", "--device", "cpu", "--quiet"]


def assert_same_predictions(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Same samples with the same candidate scores (up to float noise of other batch mixes)."""
    assert got.keys() == expected.keys()
    for sample_id, scores in expected.items():
        assert got[sample_id] == pytest.approx(scores, rel=1e-6, abs=1e-7), sample_id


def assert_resumed_exactly(run_dir: Path, on_disk: set[str], reference: tuple[dict, dict]) -> None:
    """The finished run took over the predictions that were on disk, computed only the others,
    and has exactly the metrics of the uninterrupted ``reference`` run."""
    expected_record, expected_predictions = reference
    record = read_result(run_dir)
    assert 0 < len(on_disk) < VISDIAL_SAMPLES
    assert record["samples"]["resumed"] == len(on_disk)
    assert record["samples"]["evaluated"] == VISDIAL_SAMPLES
    # The model scored only the rounds missing on disk: nothing finished was recomputed.
    assert record["timings"]["stages"][SCORE_STAGE]["items"] == VISDIAL_SAMPLES - len(on_disk)
    assert record["metrics"] == expected_record["metrics"]
    assert_same_predictions(read_predictions(run_dir), expected_predictions)
    assert not list(run_dir.glob("predictions.part*.jsonl"))
