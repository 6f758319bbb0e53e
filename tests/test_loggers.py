"""The TensorBoard and Weights & Biases logger plugins (``harness run --log``), read back with each
tool's own reader: TensorBoard's ``EventAccumulator`` and wandb's reader of its offline
transaction log (``wandb leet inspect``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_process import harness_command, harness_env, read_result, run_dirs, run_harness
from result_fixtures import record_data

from harness.errors import ExitCode
from harness.loggers import run_name

tensorboard_logger = pytest.importorskip(
    "harness_plugins.loggers.tensorboard", reason="tensorboard is not installed (pip install 'vl-harness[tensorboard]')"
)
wandb_logger = pytest.importorskip("harness_plugins.loggers.wandb", reason="wandb is not installed (pip install 'vl-harness[wandb]')")


def tensorboard_scalars(log_dir: Path) -> dict[str, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}


def wandb_env(root: Path) -> dict[str, str]:
    """wandb offline, every file it writes under ``root``, nothing printed."""
    return {"WANDB_MODE": "offline", "WANDB_DIR": str(root), "WANDB_CACHE_DIR": str(root / "cache"),
            "WANDB_CONFIG_DIR": str(root / "config"), "WANDB_DATA_DIR": str(root / "data"),
            "WANDB_SILENT": "true", "WANDB_PROJECT": "harness-tests"}


def wandb_run(root: Path) -> dict[str, Any]:
    """The one offline run under ``root`` as wandb's own reader of its transaction log
    (``wandb leet inspect --summary --json``) sees it: name, config, summary, state."""
    (log,) = (root / "wandb").glob("offline-run-*/run-*.wandb")
    done = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json", str(log)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **wandb_env(root)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_tensorboard_logger_writes_the_metrics_chance_levels_and_timings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_TENSORBOARD_DIR", str(tmp_path))
    record = record_data(timings={"total_seconds": 3.0, "stages": {"verify": {"seconds": 1.25, "items": 4}}},
                         created="2026-12-05T17:01:02+00:00")
    tensorboard_logger.harness_run_finished(record=record)
    (run,) = tmp_path.iterdir()
    assert run.name == "tiny__toy_task__test__20261205T170102" == run_name(record)
    scalars = tensorboard_scalars(run)
    assert scalars == pytest.approx({"metrics/acc": 55.5, "metrics/r1": 45.25, "metrics/mean_rank": 2.5,
                                     "chance/acc": 50.0, "seconds/verify": 1.25})


def test_tensorboard_logs_next_to_the_runs_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_TENSORBOARD_DIR", raising=False)
    record = record_data(run_config={"output": str(tmp_path / "runs")})
    assert tensorboard_logger.log_dir(record) == tmp_path / "runs" / "tensorboard" / run_name(record)


def test_wandb_logger_writes_an_offline_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in wandb_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    record = record_data()
    wandb_logger.harness_run_finished(record=record)
    run = wandb_run(tmp_path)
    assert run["state"] == "finished" and run["project"] == "harness-tests"
    assert run["name"] == run_name(record)
    assert {k: run["summary"][k] for k in ("acc", "r1", "mean_rank", "chance/acc")} == {
        "acc": 55.5, "r1": 45.25, "mean_rank": 2.5, "chance/acc": 50.0}
    config = run["config"]
    assert config["task"] == "toy_task" and config["weights"] == "seed0"
    assert config["protocol"] == {"image_size": 32, "num_beams": 3}
    assert config["weights_sha256"] == ["ab" * 32]


def test_an_unknown_logger_is_a_usage_error(tmp_path: Path, toy_cache: Path) -> None:
    done = run_harness(["run", "--model", "blip-tiny", "--task", "nlvr2", "--data", "toy", "--log", "tensorbord",
                        "--output", str(tmp_path / "runs")], toy_cache)
    assert done.returncode == ExitCode.USAGE
    assert done.stderr.strip() == ("error: --log 'tensorbord': no such logger; did you mean 'tensorboard'? "
                                   "(installed: tensorboard, wandb)")
    assert not (tmp_path / "runs").exists()


def test_a_missing_optional_package_names_the_extra_before_any_work(tmp_path: Path, toy_cache: Path) -> None:
    # The interpreter starts with wandb unimportable, as on a machine without it: a None entry in
    # sys.modules is Python's own way of making an import fail.
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['wandb'] = None\n")
    env = harness_env(toy_cache, PYTHONPATH=os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(harness_command(["run", "--model", "blip-tiny", "--task", "nlvr2", "--data", "toy",
                                           "--log", "tensorboard,wandb", "--output", str(tmp_path / "runs")]),
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == ExitCode.USAGE
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: --log wandb needs a package that is not installed")
    assert line.endswith("install it with: pip install 'vl-harness[wandb]'")
    assert not (tmp_path / "runs").exists(), "nothing may start before the loggers are checked"


@pytest.mark.slow
def test_run_with_both_loggers_logs_what_the_record_holds(tmp_path: Path, toy_cache: Path) -> None:
    output = tmp_path / "runs"
    wandb_root = tmp_path / "wandb-root"
    env = harness_env(toy_cache, **wandb_env(wandb_root))
    done = subprocess.run(harness_command(["run", "--model", "blip-tiny", "--task", "nlvr2", "--data", "toy", "--limit", "4",
                                           "--device", "cpu", "--quiet", "--log", "tensorboard", "--log", "wandb",
                                           "--output", str(output)]),
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == ExitCode.OK, done.stderr
    assert "hook failed" not in done.stderr
    run_dir = next(d for d in run_dirs(output) if d.name != "tensorboard")
    record = read_result(run_dir)
    (tb_run,) = (output / "tensorboard").iterdir()
    assert tb_run.name == run_name(record)
    assert tensorboard_scalars(tb_run)["metrics/accuracy"] == pytest.approx(record["metrics"]["accuracy"])
    run = wandb_run(wandb_root)
    assert run["name"] == run_name(record)
    assert run["summary"]["accuracy"] == pytest.approx(record["metrics"]["accuracy"])
