"""Faults while the Java scorers of the captioning metrics run: a signal must end the run within
seconds with exit 3, the Java children gone and the predictions kept; no scoring input may make
the run take unbounded time."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_process import descendants, finished_records, harness_command, kill_tree, start, wait_until

from harness.child_processes import child_pids, reap_new_children

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _java_below(pid: int) -> list[int]:
    return [child for child in descendants(pid) if "java" in _cmdline(child)]


def _wait_for_meteor(proc: subprocess.Popen) -> None:
    wait_until(proc, lambda: any("meteor" in _cmdline(child) for child in _java_below(proc.pid)),
               lambda: "no METEOR process started", interval=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_meteor_exits_3_quickly_with_java_gone(
    tmp_path: Path, toy_cache: Path, sig: signal.Signals
) -> None:
    output = tmp_path / "runs"
    command = harness_command(["run", "--model", "blip-tiny", "--task", "coco_captioning", "--data", "toy",
                               "--limit", "6", "--quiet", "--output", str(output)])
    proc = start(command, toy_cache)
    try:
        _wait_for_meteor(proc)
        java = _java_below(proc.pid)
        signalled = time.monotonic()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
        elapsed = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            kill_tree(proc)
            proc.wait()
    assert proc.returncode == 3, stderr
    assert elapsed < 15, f"took {elapsed:.1f} s to stop"
    assert "Traceback" not in stderr
    assert "resume" in stderr
    time.sleep(0.5)
    assert not [pid for pid in java if Path(f"/proc/{pid}").exists() and "java" in _cmdline(pid)]
    assert len(finished_records(output)) == 6


def test_children_started_in_an_interrupted_block_are_killed_and_older_ones_kept() -> None:
    older = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(KeyboardInterrupt), reap_new_children():
            newer = subprocess.Popen(["sleep", "30"])
            assert {older.pid, newer.pid} <= child_pids()
            raise KeyboardInterrupt
        assert newer.poll() is not None
        assert older.poll() is None
    finally:
        older.kill()
        older.wait()


def test_children_of_a_block_that_ends_normally_are_left_alone() -> None:
    with reap_new_children():
        child = subprocess.Popen(["sleep", "30"])
    try:
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
