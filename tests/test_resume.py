"""A run stopped midway (SIGKILL, SIGTERM, SIGINT) and started again finishes with exactly the
metrics of an uninterrupted run, and recomputes no sample that was finished before the stop.

Real subprocesses, real signals: each test polls the run's prediction part files until enough
samples are on disk, signals the process, counts what is on disk, and starts the run again.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from cli_process import (
    assert_resumed_exactly,
    harness_command,
    only_run_dir,
    run_harness,
    stop_midway,
    visdial_args,
)

pytestmark = pytest.mark.slow

def test_sigkill_midway_then_the_same_command_finishes_with_the_same_metrics(
    tmp_path: Path, toy_root: Path, toy_cache: Path, reference_run
) -> None:
    args = visdial_args(toy_root)
    reference = reference_run(args)
    output = tmp_path / "runs"
    command = harness_command(["run", *args, "--output", str(output)])
    killed, on_disk = stop_midway(command, output, toy_cache, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    run_dir = only_run_dir(output)
    assert not (run_dir / "result.json").exists()

    again = run_harness(["run", *args, "--output", str(output)], toy_cache)
    assert again.returncode == 0, again.stderr
    assert only_run_dir(output) == run_dir, "the same command must pick the same run directory"
    assert f"visdial: resuming {run_dir} ({len(on_disk)} samples already done)" in again.stdout
    assert_resumed_exactly(run_dir, on_disk, reference)


def _sigint_by_default() -> None:
    """Let the child turn SIGINT into KeyboardInterrupt even where the test runner ignores it
    (a background job inherits SIGINT ignored, and Python then keeps it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("sig", "resume_with_run_dir"),
    [(signal.SIGTERM, True), (signal.SIGINT, False)],
    ids=["SIGTERM-then-resume-RUN_DIR", "SIGINT-then-same-command"],
)
def test_a_signal_saves_what_is_done_exits_3_and_says_how_to_resume(
    tmp_path: Path, toy_root: Path, toy_cache: Path, reference_run, sig: signal.Signals, resume_with_run_dir: bool
) -> None:
    args = visdial_args(toy_root)
    reference = reference_run(args)
    output = tmp_path / "runs"
    command = harness_command(["run", *args, "--output", str(output)])
    stopped, on_disk = stop_midway(command, output, toy_cache, sig, preexec_fn=_sigint_by_default)
    run_dir = only_run_dir(output)
    assert stopped.returncode == 3, stopped.stderr
    assert "Traceback" not in stopped.stderr
    (line,) = stopped.stderr.strip().splitlines()
    match = re.fullmatch(r"error: interrupted: (\d+) finished predictions are saved in (\S+); "
                         r"resume with `harness run --resume (\S+)` \(or the same command\)", line)
    assert match, line
    assert Path(match.group(2)) == run_dir and Path(match.group(3)) == run_dir
    # What the message counts was flushed before exit (a sample may sit between the store's memory
    # and its file at the instant the signal lands).
    assert abs(int(match.group(1)) - len(on_disk)) <= 1
    assert not (run_dir / "result.json").exists()

    command = ["run", "--resume", str(run_dir)] if resume_with_run_dir else ["run", *args, "--output", str(output)]
    again = run_harness(command, toy_cache)
    assert again.returncode == 0, again.stderr
    assert only_run_dir(output) == run_dir
    assert_resumed_exactly(run_dir, on_disk, reference)
