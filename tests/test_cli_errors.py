"""Bad input on the command line: one clear line on stderr, exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def harness(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--model", "blip-tiyn", "--task", "nlvr2", "--data", "toy"], "unknown model 'blip-tiyn'; did you mean 'blip-tiny'"),
        (["run", "--model", "blip-tiny", "--task", "nlvr", "--data", "toy"], "unknown task 'nlvr'; did you mean 'nlvr2'"),
        (["run", "--model", "blip-tiny", "--task", "nlvr2", "--data", "toy", "--set", "max_words"], "expected key=value"),
        (["run", "--model", "blip-tiny", "--task", "nlvr2", "--data", "toy", "--set", "max_wrds=3"], "did you mean 'max_words'"),
        (["run", "--model", "blip-tiny", "--task", "nlvr2", "--data-root", "/nonexistent/data"], "--data-root /nonexistent/data: no such directory"),
        (["run", "--model", "blip-tiny", "--task", "nlvr2"], "no data: pass --data-root DIR"),
        (["run", "--model", "clip-tiny", "--task", "nlvr2", "--data", "toy"], "'clip-tiny' cannot run 'nlvr2': it lacks PairVerifier"),
        (["run", "--model", "blip-tiny", "--task", "nlvr2", "--data", "toy", "--split", "train9"], "--split 'train9' is not a split"),
    ],
)
def test_bad_input_gives_one_clear_line(args: list[str], message: str) -> None:
    out = harness(*args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unwritable_output_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = harness("run", "--model", "blip-tiny", "--task", "nlvr2", "--data", "toy", "--output", str(blocker / "runs"))
    assert out.returncode == 2
    assert "is not writable" in out.stderr and "Traceback" not in out.stderr


def test_every_command_has_help() -> None:
    for command in (["--help"], ["list", "--help"], ["run", "--help"], ["toy", "build", "--help"],
                    ["data", "check", "--help"], ["compare", "--help"], ["regress", "--help"], ["convert", "--help"],
                    ["capfilt", "--help"]):
        out = harness(*command)
        assert out.returncode == 0, (command, out.stderr)
        assert "usage:" in out.stdout


def test_list_is_fast_and_imports_no_torch() -> None:
    code = "import sys; from harness.cli import main; main(['list']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("False")
    assert "coco_retrieval" in out.stdout and "blip-tiny" in out.stdout


def test_warnings_are_one_line_without_python_source() -> None:
    script = "import warnings; from harness import cli; cli.main(['list', 'models']); warnings.warn('SPICE skipped: no models')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert done.stderr == "warning: SPICE skipped: no models\n"
