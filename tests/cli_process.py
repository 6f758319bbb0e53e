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
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=harness_env(cache), preexec_fn=preexec_fn)


def _complete_lines(part: Path) -> list[bytes]:
    return [line for line in part.read_bytes().splitlines(keepends=True) if line.endswith(b"\n")]


def finished_records(output: Path) -> list[dict[str, Any]]:
    """The complete lines of every prediction part file under the run directories of ``output``
    (a line cut short by a kill is not a finished prediction)."""
    return [json.loads(line) for part in sorted(output.glob(PART_GLOB)) for line in _complete_lines(part)]


def wait_until(proc: subprocess.Popen, reached: Callable[[], bool], what: Callable[[], str], timeout: float = 240,
               interval: float = 0.02) -> None:
    """Poll ``reached`` until it holds; fails, saying ``what()`` was seen, if the run ends first or
    ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reached():
            return
        if proc.poll() is not None:
            stdout, stderr = proc.communicate()
            raise AssertionError(f"the run ended (exit {proc.returncode}) with {what()}:\n{stdout}\n{stderr}")
        time.sleep(interval)
    raise AssertionError(f"still {what()} after {timeout} s")


def wait_for_predictions(proc: subprocess.Popen, output: Path, at_least: int, parts: int = 1,
                         timeout: float = 240) -> None:
    """Poll until ``at_least`` finished predictions are on disk, written by at least ``parts``
    processes (part files); fails if the run ends first."""

    def counts() -> list[int]:
        return [len(_complete_lines(part)) for part in output.glob(PART_GLOB)]

    def reached() -> bool:
        found = counts()
        return sum(found) >= at_least and sum(1 for n in found if n) >= parts

    wait_until(proc, reached, lambda: f"{counts()} predictions on disk (waiting for {at_least} from {parts} processes)",
               timeout)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from ``/proc`` (torchrun starts its workers in new sessions,
    so they are not in its process group)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the process and everything it started at once, as a pre-empted machine does."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


STOP_AFTER = 8
"""Predictions on disk before a test stops a run: enough to resume from, far from its end."""


def stop_midway(command: Sequence[str], output: Path, cache: Path, sig: signal.Signals, parts: int = 1,
                preexec_fn: Callable[[], None] | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Start ``command``, send ``sig`` once STOP_AFTER predictions from ``parts`` processes are on
    disk (SIGKILL goes to the whole process tree), and return how it ended and the sample ids it
    left on disk."""
    proc = start(command, cache, preexec_fn=preexec_fn)
    try:
        wait_for_predictions(proc, output, STOP_AFTER, parts)
        if sig == signal.SIGKILL:
            kill_tree(proc)
        else:
            proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            kill_tree(proc)
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
    """VisDial rounds one per model call, each prediction fsynced at once (``--flush-every 1``).

    One sample per batch makes every score independent of which samples share a batch: in fp32
    on CPU, another batch mix (what a resumed run or another process count gives) changes scores
    in their last bits, and the tiny model's candidate scores lie closer together than that, so
    only batch size 1 makes "the same metrics" an exact, non-flaky claim."""
    return ["--model", "blip-tiny", "--task", "visdial", "--data-root", str(data_root), "--limit",
            str(VISDIAL_SAMPLES), "--batch-size", "1", "--flush-every", "1", "--device", "cpu", "--quiet"]


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
    assert read_predictions(run_dir) == expected_predictions
    assert not list(run_dir.glob("predictions.part*.jsonl"))
