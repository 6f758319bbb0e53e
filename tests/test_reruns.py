"""Running a finished command again reuses its record; ``--force`` recomputes it in place;
``harness --version`` says which harness wrote a record."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cli_process import harness_command, read_result, run_dirs, run_harness

import harness
from harness.errors import ExitCode


def _files(run_dir: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of a run directory with its modification time (ns) and content."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.iterdir() if p.is_file()}


@pytest.mark.slow
def test_a_finished_run_is_reused_unless_forced(tmp_path: Path, toy_cache: Path) -> None:
    output = tmp_path / "runs"
    args = ["run", "--model", "blip-tiny", "--task", "nlvr2", "--data", "toy", "--limit", "4",
            "--device", "cpu", "--quiet", "--output", str(output)]
    first = run_harness(args, toy_cache)
    assert first.returncode == ExitCode.OK, first.stderr
    (run_dir,) = run_dirs(output)
    before = _files(run_dir)
    record = read_result(run_dir)

    again = run_harness(args, toy_cache)
    assert again.returncode == ExitCode.OK, again.stderr
    assert run_dirs(output) == [run_dir], "a rerun must not make a second run directory"
    assert f"nlvr2: already finished in {run_dir}; reusing its record" in again.stdout
    assert f"| nlvr2 | test_p | accuracy {record['metrics']['accuracy']:.2f}" in again.stdout
    after = _files(run_dir)
    # Nothing recomputed or rewritten: every file has its old content and time (the lock file is
    # opened for writing by every run, so it alone is left out).
    assert {k: v for k, v in after.items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}

    forced = run_harness([*args, "--force"], toy_cache)
    assert forced.returncode == ExitCode.OK, forced.stderr
    assert run_dirs(output) == [run_dir], "--force recomputes into the same run directory"
    assert "reusing" not in forced.stdout
    new_record = read_result(run_dir)
    assert new_record["created"] != record["created"]
    assert new_record["samples"]["resumed"] == 0, "a forced run starts from no predictions"
    assert new_record["timings"]["stages"]["verify"]["items"] == 4
    assert new_record["metrics"] == record["metrics"]


def test_version_prints_the_package_version() -> None:
    done = subprocess.run(harness_command(["--version"]), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"harness {harness.__version__}"
