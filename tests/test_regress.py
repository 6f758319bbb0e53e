"""``harness regress``: the CI gate passes within tolerance, fails (exit 1) naming the metric
outside it, and refuses (exit 2) records that measured different things, naming the field."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from result_fixtures import record_data, write_record

from harness.errors import ConfigError, DataError, ExitCode
from harness.records import find_records, load_record
from harness.regress import (
    IncomparableRecords,
    add_regress_parser,
    differences,
    format_results,
    parse_tolerances,
    regress,
    regress_record,
)

REPO = Path(__file__).resolve().parents[1]


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="harness")
    add_regress_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["regress", *argv])


def _lowered(tmp_path: Path, acc: float = 50.0) -> tuple[Path, Path]:
    reference = write_record(tmp_path / "reference" / "toy")
    run = write_record(tmp_path / "run" / "toy", metrics={"acc": acc, "r1": 45.25, "mean_rank": 2.5})
    return reference, run


def test_identical_run_passes(tmp_path, capsys):
    reference = write_record(tmp_path / "reference")
    run = write_record(tmp_path / "run")
    args = _args(["--reference", str(reference / "result.json"), str(run)])
    assert args.func(args) == ExitCode.OK
    out = capsys.readouterr().out
    assert "| acc | 55.5000 | 55.5000 | +0.0000 | 1e-06 | ok |" in out
    assert "regress: passed, 3 metrics in 1 record(s) within tolerance" in out


def test_metric_lowered_beyond_tolerance_fails_and_is_named(tmp_path, capsys):
    reference, run = _lowered(tmp_path)
    args = _args(["--reference", str(reference), str(run), "--tolerance", "acc=5"])
    assert args.func(args) == ExitCode.GATE_FAILED
    out = capsys.readouterr().out
    assert "| acc | 55.5000 | 50.0000 | -5.5000 | 5 | FAIL |" in out
    assert "| r1 | 45.2500 | 45.2500 | +0.0000 | 1e-06 | ok |" in out
    assert out.rstrip().endswith("regress: FAILED 1 of 3 metrics: toy_task/test acc")


def test_tolerance_is_inclusive_and_two_sided(tmp_path):
    reference = load_record(write_record(tmp_path / "reference"))
    for acc, passed in [(50.5, True), (60.5, True), (50.4, False), (60.6, False)]:
        run = load_record(write_record(tmp_path / f"run{acc}", metrics={"acc": acc, "r1": 45.25, "mean_rank": 2.5}))
        (result,) = regress([reference], [run], {"acc": 5.0})
        assert result.passed is passed, acc
        assert result.failed_metrics == ([] if passed else ["acc"])


def test_metric_missing_in_run_fails(tmp_path):
    reference = load_record(write_record(tmp_path / "reference"))
    run = load_record(write_record(tmp_path / "run", metrics={"acc": 55.5, "r1": 45.25}))
    result = regress_record(reference, run, {})
    assert result.failed_metrics == ["mean_rank"]
    assert "| mean_rank | 2.5000 | - | - | 1e-06 | FAIL (missing in run) |" in format_results([result])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"protocol": {"image_size": 32, "num_beams": 5}}, "protocol.num_beams (reference 3, run 5)"),
        ({"protocol": {"image_size": 32}}, "protocol.num_beams (reference 3, run absent)"),
        ({"split": "val"}, "split (reference 'test', run 'val')"),
        ({"task": "other"}, "task (reference 'toy_task', run 'other')"),
        ({"data": {"root": "/data", "fingerprint": "e" * 64}}, "data.fingerprint"),
        ({"model": "big"}, "model (reference 'tiny', run 'big')"),
        ({"weights": {"name": "seed1", "files": []}}, "weights.name (reference 'seed0', run 'seed1')"),
        ({"weights": {"name": "seed0", "files": [{"path": "/x", "sha256": "cd" * 32}]}}, "weights.files[].sha256"),
        ({"samples": {"total": 4, "evaluated": 2, "skipped": 0, "resumed": 0, "limit": 2}}, "samples.limit (reference None, run 2)"),
    ],
)
def test_incomparable_records_are_refused_naming_the_field(tmp_path, change, field):
    reference = load_record(write_record(tmp_path / "reference"))
    run = load_record(write_record(tmp_path / "run", **change))
    with pytest.raises(IncomparableRecords) as caught:
        regress([reference], [run])
    assert f"{field}" in str(caught.value)
    assert str(run.path) in str(caught.value) and str(reference.path) in str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE


def test_other_protocol_is_refused_by_the_command(tmp_path):
    reference = write_record(tmp_path / "reference")
    run = write_record(tmp_path / "run", protocol={"image_size": 64, "num_beams": 3})
    args = _args(["--reference", str(reference), str(run)])
    with pytest.raises(ConfigError, match=r"protocol\.image_size \(reference 32, run 64\) differs"):
        args.func(args)


def test_settings_that_may_differ_are_noted_not_refused(tmp_path):
    reference = load_record(write_record(tmp_path / "reference"))
    versions = {**record_data()["versions"], "torch": "2.14.0", "git_commit": "y"}
    run = load_record(write_record(tmp_path / "run", device="cuda", precision="bf16", versions=versions,
                                   data={"root": "/elsewhere", "fingerprint": "f" * 64, "toy": True}))
    result = regress_record(reference, run, {})
    assert result.passed
    assert result.notes == (
        "device differs (reference 'cpu', run 'cuda')",
        "precision differs (reference 'fp32', run 'bf16')",
        "versions.torch differs (reference '2.13.0', run '2.14.0')",
    )


def test_allow_weights_change(tmp_path):
    reference = load_record(write_record(tmp_path / "reference"))
    run = load_record(write_record(tmp_path / "run", weights={"name": "finetuned", "files": []}))
    assert differences(reference, run, allow_weights_change=True) == []
    assert regress([reference], [run], allow_weights_change=True)[0].passed


def test_directories_are_paired_by_task_and_split(tmp_path, capsys):
    write_record(tmp_path / "reference" / "a")
    write_record(tmp_path / "reference" / "b", task="second", metrics={"accuracy": 70.0})
    write_record(tmp_path / "run" / "a")
    write_record(tmp_path / "run" / "c", task="unreferenced")
    results = regress(find_records(tmp_path / "reference"), find_records(tmp_path / "run"))
    assert [(r.reference.task, r.run is not None, r.passed) for r in results] == [
        ("toy_task", True, True),
        ("second", False, False),
    ]
    args = _args(["--reference", str(tmp_path / "reference"), str(tmp_path / "run")])
    assert args.func(args) == ExitCode.GATE_FAILED
    out = capsys.readouterr().out
    assert "run: no matching run record" in out
    assert "FAILED 1 of 4 metrics: second/test accuracy" in out


def test_a_folder_of_named_records_is_a_reference(tmp_path):
    """results/reference/ keeps one record per task as <task>.json, not as run directories."""
    first = write_record(tmp_path / "runs" / "a")
    second = write_record(tmp_path / "runs" / "b", task="second", metrics={"accuracy": 70.0})
    folder = tmp_path / "reference"
    folder.mkdir()
    for run_dir, name in ((first, "toy_task"), (second, "second")):
        (folder / f"{name}.json").write_text((Path(run_dir) / "result.json").read_text())
    assert sorted(record.task for record in find_records(folder)) == ["second", "toy_task"]
    assert all(result.passed for result in regress(find_records(folder), find_records(tmp_path / "runs")))


def test_duplicate_records_in_a_run_directory_are_refused(tmp_path):
    references = [load_record(write_record(tmp_path / "ref" / "a")),
                  load_record(write_record(tmp_path / "ref" / "b", task="second"))]
    runs = [load_record(write_record(tmp_path / "run" / "a")), load_record(write_record(tmp_path / "run" / "a-2"))]
    with pytest.raises(ConfigError, match="two records for toy_task/test"):
        regress(references, runs)


def test_tolerance_parsing():
    assert parse_tolerances(["acc=0.5", " r1 =2"]) == {"acc": 0.5, "r1": 2.0}
    for bad in ["acc", "acc=", "=1", "acc=-1", "acc=nan", "acc=x"]:
        with pytest.raises(ConfigError, match="METRIC=ABS"):
            parse_tolerances([bad])


def test_tolerance_for_an_unknown_metric_is_refused(tmp_path):
    reference, run = _lowered(tmp_path)
    args = _args(["--reference", str(reference), str(run), "--tolerance", "accuracy=5"])
    with pytest.raises(ConfigError, match=r"\['accuracy'\] that no reference record has; reference metrics: acc, mean_rank, r1"):
        args.func(args)


def test_rerun_needs_the_reference_run_config(tmp_path):
    reference = write_record(tmp_path / "reference")
    args = _args(["--reference", str(reference), "--run", str(tmp_path / "out")])
    with pytest.raises(ConfigError, match="has no 'run_config'"):
        args.func(args)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "result record is not valid JSON"),
        ("[]", "must be a JSON object"),
        (json.dumps(record_data(schema="harness.result/0")), "field 'schema' must be 'harness.result/1'"),
        (json.dumps({k: v for k, v in record_data().items() if k != "protocol"}), "lacks the field 'protocol'"),
        (json.dumps(record_data(metrics={"acc": "55"})), "metric 'acc' must be a number, got '55'"),
        (json.dumps(record_data(metrics={"acc": True})), "metric 'acc' must be a number"),
        (json.dumps(record_data(data={"root": "/d"})), "field 'data.fingerprint' must be a string"),
        (json.dumps(record_data(weights={"name": "w", "files": ["x"]})), "'weights.files' must be a list"),
    ],
)
def test_malformed_records_name_the_file_and_field(tmp_path, content, message):
    (tmp_path / "result.json").write_text(content)
    with pytest.raises(DataError, match="result.json") as caught:
        load_record(tmp_path)
    assert message in str(caught.value)


def test_missing_run_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        find_records(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no result.json \(or record .json files\) in this directory"):
        find_records(tmp_path / "empty")


def test_every_option_has_help():
    parser = argparse.ArgumentParser(prog="harness")
    command = add_regress_parser(parser.add_subparsers())
    assert all(action.help for action in command._actions)


def test_through_the_harness_command(tmp_path):
    """Once through ``python -m harness regress``: exit 1 naming the metric, exit 2 on a refusal."""
    reference, run = _lowered(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "harness", "regress", "--reference", str(reference), str(run)]
    failed = subprocess.run([*command, "--tolerance", "acc=1"], capture_output=True, text=True, env=env, cwd=REPO)
    assert failed.returncode == ExitCode.GATE_FAILED, failed.stderr
    assert "regress: FAILED 1 of 3 metrics: toy_task/test acc" in failed.stdout
    passed = subprocess.run([*command, "--tolerance", "acc=6"], capture_output=True, text=True, env=env, cwd=REPO)
    assert passed.returncode == ExitCode.OK, passed.stderr
    write_record(tmp_path / "other", protocol={"image_size": 32, "num_beams": 1})
    refused = subprocess.run([sys.executable, "-m", "harness", "regress", "--reference", str(reference),
                              str(tmp_path / "other")], capture_output=True, text=True, env=env, cwd=REPO)
    assert refused.returncode == ExitCode.USAGE
    assert "protocol.num_beams (reference 3, run 1) differs" in refused.stderr


@pytest.mark.slow
def test_rerun_with_the_reference_settings(tmp_path, capsys):
    """``--run`` repeats a real ``harness run`` (blip-tiny, toy NLVR2) from the reference record
    alone, then gates the new record, which a plain ``regress`` of that directory also passes."""
    from harness.cli import main

    reference = tmp_path / "reference"
    assert main(["run", "--model", "blip-tiny", "--task", "nlvr2", "--data", "toy", "--limit", "8",
                 "--output", str(reference), "--quiet"]) == ExitCode.OK
    capsys.readouterr()
    assert main(["regress", "--reference", str(reference), "--run", str(tmp_path / "ci")]) == ExitCode.OK
    out = capsys.readouterr().out
    (rerun,) = find_records(tmp_path / "ci")
    assert rerun.data["samples"]["limit"] == 8 and rerun.task == "nlvr2"
    assert f"run: {rerun.path}" in out
    assert "regress: passed, 2 metrics in 1 record(s) within tolerance" in out  # accuracy, consistency
    assert main(["regress", "--reference", str(reference), str(tmp_path / "ci")]) == ExitCode.OK
