"""Fault injection, end to end through ``harness run``: every fault ends in one clear line naming
the file or record (exit 2, no traceback), or under ``--skip-bad`` in a skip counted in the
result; and no finished prediction is lost.

Each test corrupts its own copy of one task folder of the toy suite, cut down to a few records.
Most runs call the CLI's ``main`` in this process (the same code path as the command, without
paying the interpreter start-up each time); faults that need a process of their own (a file-size
limit, dropped privileges, a concurrent run, proof that no traceback reaches the terminal) run
``harness`` in a subprocess.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_process import (
    assert_resumed_exactly,
    copy_task_data,
    finished_records,
    harness_command,
    harness_env,
    only_run_dir,
    read_predictions,
    read_result,
    run_harness,
    start,
    visdial_args,
    wait_for_predictions,
)
from media_files import write_mp4

from harness.cli import main
from harness.config import RunConfig
from harness.context import RunContext
from harness.errors import ResourceError
from harness.predictions import PredictionStore
from harness.registry import Registry, make_plugin_manager
from harness.runner import Runner
from harness.specs import ModelSpec
from harness_plugins.blip.catalog import CAPTION, NLVR2
from harness_plugins.blip.presets import build_blip_tiny
from harness_plugins.blip.tiny import random_tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def run_args(data_root: Path, task: str, output: Path, *extra: str) -> list[str]:
    return ["--model", "blip-tiny", "--task", task, "--data-root", str(data_root), "--output", str(output),
            "--batch-size", "1", "--flush-every", "1", "--device", "cpu", "--quiet", *extra]


def harness_run(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    """``harness run ARGS`` through the CLI's entry point: (exit code, stdout, stderr)."""
    code = main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_clear_line(stderr: str, *parts: str) -> str:
    """The whole of stderr is one ``error:`` line holding every one of ``parts``."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    (line,) = lines
    assert line.startswith("error: "), line
    for part in parts:
        assert part in line, (part, line)
    return line


def cut_records(path: Path, keep: int) -> list[dict[str, Any]]:
    """Keep the first ``keep`` records of a JSON list annotation file; returns them."""
    records = json.loads(path.read_text())[:keep]
    path.write_text(json.dumps(records))
    return records


def edit_record(path: Path, index: int, change: Callable[[dict[str, Any]], None]) -> None:
    records = json.loads(path.read_text())
    change(records[index])
    path.write_text(json.dumps(records))


# -- annotations -------------------------------------------------------------------------------


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda record: record.__setitem__(field, value)


def _drop(field: str) -> Callable[[dict[str, Any]], None]:
    return lambda record: record.pop(field)


def _first_image(value: str) -> Callable[[dict[str, Any]], None]:
    return lambda record: record["images"].__setitem__(0, value)


NLVR2_FILE = "nlvr2/annotations/nlvr_test.json"
VQA_FILE = "vqav2/annotations/vqa_val.json"
VIDEO_QA_FILE = "msrvtt/annotations/msrvtt_qa_test.json"


@pytest.mark.parametrize(
    ("task", "annotations", "index", "change", "message", "skipped_id"),
    [
        ("nlvr2", NLVR2_FILE, 3, _drop("sentence"), "record 3: field 'sentence' missing (expected str)", "nlvr_test.json[3]"),
        ("nlvr2", NLVR2_FILE, 2, _set("label", 1), "record 2: field 'label' has type int (expected str)", "nlvr_test.json[2]"),
        ("nlvr2", NLVR2_FILE, 1, _first_image("../../../../../etc/passwd"),
         "record 1: media path '../../../../../etc/passwd' escapes the media folder", "nlvr_test.json[1]"),
        ("vqav2", VQA_FILE, 4, _set("question_id", 560458000), "duplicate sample id '560458000' (records 3 and 4)",
         "vqa_val.json[4]"),
    ],
    ids=["missing-field", "wrong-type", "path-escapes-data-root", "duplicate-sample-ids"],
)
def test_a_bad_annotation_record_is_named_or_skipped_and_counted(
    tmp_path: Path, toy_root: Path, capsys: pytest.CaptureFixture[str],
    task: str, annotations: str, index: int, change: Callable, message: str, skipped_id: str,
) -> None:
    data = copy_task_data(toy_root, annotations.split("/")[0], tmp_path / "data")
    path = data / annotations
    keep = 6
    cut_records(path, keep)
    edit_record(path, index, change)
    output = tmp_path / "runs"

    code, _, err = harness_run(capsys, run_args(data, task, output))
    assert code == 2
    assert_one_clear_line(err, str(path), message)

    code, out, err = harness_run(capsys, run_args(data, task, output, "--skip-bad"))
    assert code == 0, err
    record = read_result(only_run_dir(output))
    assert record["samples"]["skipped"] == 1 and record["samples"]["skipped_samples"] == [skipped_id]
    assert record["samples"]["evaluated"] == keep - 1 and record["samples"]["total"] == keep
    assert len(read_predictions(only_run_dir(output))) == keep - 1
    assert ", 1 skipped," in out


def test_malformed_json_is_named_with_line_and_column(
    tmp_path: Path, toy_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = copy_task_data(toy_root, "nlvr2", tmp_path / "data")
    path = data / NLVR2_FILE
    path.write_text('[{"images": ["a.png", "b.png"], "sentence": "two dogs", "label": "True"},\n {"images": [')
    for extra in ((), ("--skip-bad",)):  # a file that does not parse cannot be skipped record by record
        code, _, err = harness_run(capsys, run_args(data, "nlvr2", tmp_path / "runs", *extra))
        assert code == 2
        assert_one_clear_line(err, str(path), "line 2 column", "malformed JSON")


# -- media ---------------------------------------------------------------------------------------


def _cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _four_frames(path: Path) -> None:
    write_mp4(path, num_frames=4)


def _media_of(record: dict[str, Any]) -> str:
    return record.get("image") or record.get("video") or record["images"][-1]


@pytest.mark.parametrize(
    ("task", "annotations", "media_dir", "corrupt", "message"),
    [
        ("vqav2", VQA_FILE, "vqav2/images", _cut_short, "cannot decode image (image file is truncated"),
        ("nlvr2", NLVR2_FILE, "nlvr2/images", _empty, "image file is empty (0 bytes)"),
        ("msrvtt_qa", VIDEO_QA_FILE, "msrvtt/videos", _cut_short, "cannot read video"),
        ("msrvtt_qa", VIDEO_QA_FILE, "msrvtt/videos", _four_frames, "video has 4 frames, fewer than the 16 asked for"),
    ],
    ids=["corrupt-jpeg", "zero-byte-image", "truncated-mp4", "too-few-frames"],
)
def test_a_bad_media_file_stops_the_run_naming_it_and_skip_bad_resumes_past_it(
    tmp_path: Path, toy_root: Path, capsys: pytest.CaptureFixture[str],
    task: str, annotations: str, media_dir: str, corrupt: Callable[[Path], None], message: str,
) -> None:
    data = copy_task_data(toy_root, annotations.split("/")[0], tmp_path / "data")
    keep = 6 if task != "nlvr2" else 4
    records = cut_records(data / annotations, keep)
    # The last record's file is broken, so the samples before it finish first.
    bad = data / media_dir / _media_of(records[-1])
    corrupt(bad)
    needing = {str(record.get("question_id", index)) for index, record in enumerate(records)
               if _media_of(record) == _media_of(records[-1])}
    output = tmp_path / "runs"

    code, _, err = harness_run(capsys, run_args(data, task, output))
    assert code == 2
    assert_one_clear_line(err, str(bad.resolve()), message)
    on_disk = {line["sample_id"] for line in finished_records(output)}
    # The data check before computing stops the run before its first prediction.
    assert on_disk == set()

    code, out, err = harness_run(capsys, run_args(data, task, output, "--skip-bad"))
    assert code == 0, err
    run_dir = only_run_dir(output)
    record = read_result(run_dir)
    assert record["samples"]["resumed"] == len(on_disk)
    assert record["samples"]["skipped"] == len(needing)
    assert set(record["samples"]["skipped_samples"]) == needing
    assert record["samples"]["evaluated"] == keep - len(needing)
    predictions = read_predictions(run_dir)
    assert {sid for sid, p in predictions.items() if isinstance(p, dict) and "skipped" in p} == needing
    assert all(str(bad.resolve()) in predictions[sid]["skipped"] for sid in needing)


def test_no_traceback_reaches_the_terminal(tmp_path: Path, toy_root: Path, toy_cache: Path) -> None:
    """The real command on a broken image: one line on stderr, exit 2."""
    data = copy_task_data(toy_root, "vqav2", tmp_path / "data")
    records = cut_records(data / VQA_FILE, 3)
    bad = data / "vqav2/images" / records[0]["image"]
    _cut_short(bad)
    done = run_harness(["run", *run_args(data, "vqav2", tmp_path / "runs")], toy_cache)
    assert done.returncode == 2
    assert_one_clear_line(done.stderr, str(bad.resolve()), "image file is truncated")


# -- checkpoints ---------------------------------------------------------------------------------


def save_state(path: Path, state: dict[str, torch.Tensor], **extra: Any) -> Path:
    """A checkpoint as BLIP saves its own: the state dict under ``"model"``."""
    torch.save({"model": state, **extra}, path)
    return path


@pytest.fixture
def nlvr2_data(tmp_path: Path, toy_root: Path) -> Path:
    data = copy_task_data(toy_root, "nlvr2", tmp_path / "data")
    cut_records(data / NLVR2_FILE, 2)
    return data


def test_a_checkpoint_of_another_architecture_is_refused(
    tmp_path: Path, nlvr2_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    caption = save_state(tmp_path / "model_tiny_caption.pth", random_tiny(CAPTION).module.state_dict())
    resnet = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.weight": torch.zeros(2, 4)}, resnet)
    for weights, message in ((caption, "a BLIP caption checkpoint, but this task needs a nlvr2 checkpoint"),
                             (resnet, "not a BLIP checkpoint")):
        code, _, err = harness_run(capsys, run_args(nlvr2_data, "nlvr2", tmp_path / "runs", "--weights", str(weights)))
        assert code == 2
        assert_one_clear_line(err, str(weights), message)


def test_a_truncated_checkpoint_is_refused_and_the_whole_file_loads(
    tmp_path: Path, nlvr2_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = save_state(tmp_path / "model_tiny_nlvr.pth", random_tiny(NLVR2).module.state_dict())
    truncated = tmp_path / "model_tiny_nlvr_cut.pth"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    code, _, err = harness_run(capsys, run_args(nlvr2_data, "nlvr2", tmp_path / "runs", "--weights", str(truncated)))
    assert code == 2
    assert_one_clear_line(err, str(truncated), "not a readable PyTorch checkpoint")
    code, _, err = harness_run(capsys, run_args(nlvr2_data, "nlvr2", tmp_path / "runs", "--weights", str(whole)))
    assert code == 0, err


class _CreatesFile:
    """A pickle payload: unpickling it calls ``open(marker, "w")``, which creates the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_carrying_pickled_code_is_refused_never_run(
    tmp_path: Path, nlvr2_data: Path, toy_cache: Path
) -> None:
    marker = tmp_path / "payload-ran"
    weights = save_state(tmp_path / "model_base_nlvr.pth", random_tiny(NLVR2).module.state_dict(),
                         hook=_CreatesFile(marker))
    done = run_harness(["run", *run_args(nlvr2_data, "nlvr2", tmp_path / "runs", "--weights", str(weights))], toy_cache)
    assert done.returncode == 2
    assert_one_clear_line(done.stderr, str(weights), "refused", "Python code")
    assert not marker.exists()
    # The payload is real: an unrestricted unpickler runs it.
    torch.load(weights, weights_only=False)
    assert marker.exists()


# -- the output directory ------------------------------------------------------------------------

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_NO_CAPABILITY_EXIT = 99


def _obey_file_permissions() -> None:
    """For a child of root: drop CAP_DAC_OVERRIDE, so read-only directories refuse it as they
    refuse any user (a run on a shared cluster meets them as a normal user)."""
    if os.geteuid() == 0 and ctypes.CDLL(None, use_errno=True).prctl(_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE, 0, 0, 0):
        os._exit(_NO_CAPABILITY_EXIT)


def test_an_unwritable_output_directory_is_named(tmp_path: Path, nlvr2_data: Path, toy_cache: Path) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        done = run_harness(["run", *run_args(nlvr2_data, "nlvr2", read_only / "runs")], toy_cache,
                           preexec_fn=_obey_file_permissions)
    finally:
        read_only.chmod(0o755)
    if done.returncode == _NO_CAPABILITY_EXIT:
        pytest.skip("running as root without the right to drop CAP_DAC_OVERRIDE")
    assert done.returncode == 2
    assert_one_clear_line(done.stderr, f"output directory {read_only / 'runs'} is not writable (Permission denied)")


FILE_SIZE_LIMIT = 16 * 1024
"""Bytes any file of the run may reach: run.json fits, the predictions (about 1 kB a VisDial round)
stop after a dozen rounds."""


def _disk_fills_up() -> None:
    """Writes past FILE_SIZE_LIMIT fail with EFBIG, as writes to a full disk fail with ENOSPC."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_a_full_output_directory_stops_the_run_and_loses_nothing(
    tmp_path: Path, toy_root: Path, toy_cache: Path, reference_run
) -> None:
    args = visdial_args(toy_root)
    reference = reference_run(args)
    output = tmp_path / "runs"
    full = run_harness(["run", *args, "--output", str(output)], toy_cache, preexec_fn=_disk_fills_up)
    run_dir = only_run_dir(output)
    assert full.returncode == 2
    assert_one_clear_line(full.stderr, f"cannot write to {run_dir} (File too large)",
                          f"resume with `harness run --resume {run_dir}`")
    on_disk = {line["sample_id"] for line in finished_records(output)}
    assert on_disk and not (run_dir / "result.json").exists()

    again = run_harness(["run", "--resume", str(run_dir)], toy_cache)
    assert again.returncode == 0, again.stderr
    assert_resumed_exactly(run_dir, on_disk, reference)


def test_a_second_run_into_the_same_run_directory_is_refused(
    tmp_path: Path, toy_root: Path, toy_cache: Path, reference_run, capsys: pytest.CaptureFixture[str]
) -> None:
    args = visdial_args(toy_root)
    expected_record, expected_predictions = reference_run(args)
    output = tmp_path / "runs"
    first = start(harness_command(["run", *args, "--output", str(output)]), toy_cache)
    try:
        wait_for_predictions(first, output, 2)
        code, _, err = harness_run(capsys, [*args, "--output", str(output)])
        assert code == 2
        run_dir = only_run_dir(output)
        assert_one_clear_line(err, f"{run_dir} is being written by another harness run")
        stdout, stderr = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # The refused run touched nothing: the first one finished as if alone.
    assert first.returncode == 0, stderr
    record = read_result(run_dir)
    assert record["samples"]["resumed"] == 0 and record["metrics"] == expected_record["metrics"]
    assert read_predictions(run_dir) == expected_predictions


# -- out of memory -------------------------------------------------------------------------------


def _double(batch: list[int]) -> list[int]:
    return [2 * x for x in batch]


class SmallMemory:
    """A model call that fails as CUDA does, with ``torch.OutOfMemoryError``, on batches larger
    than ``capacity``; ``size(*args)`` says how large a call's batch is. Records every size."""

    def __init__(self, capacity: int, fn: Callable[..., Any] = _double,
                 size: Callable[..., int] = lambda batch, *rest: len(batch)) -> None:
        self.capacity = capacity
        self.fn = fn
        self.size = size
        self.calls: list[int] = []

    def __call__(self, *args: Any) -> Any:
        size = self.size(*args)
        self.calls.append(size)
        if size > self.capacity:
            raise torch.OutOfMemoryError(f"CUDA out of memory: a batch of {size} does not fit")
        return self.fn(*args)


def context(tmp_path: Path, batch_size: int) -> RunContext:
    return RunContext(protocol={}, predictions=PredictionStore(tmp_path), batch_size=batch_size, quiet=True)


def test_out_of_memory_halves_the_batch_until_it_fits(tmp_path: Path) -> None:
    ctx = context(tmp_path, batch_size=16)
    model = SmallMemory(capacity=5)
    items = list(range(50))
    done = list(ctx.map_batches(items, model))
    assert [x for batch, _ in done for x in batch] == items
    assert [y for _, results in done for y in results] == [2 * x for x in items]
    assert model.calls[:3] == [16, 8, 4] and set(model.calls[3:]) <= {4, 2}
    assert ctx.batch_size_used == 4
    # Later stages start at the size that fit instead of running out of memory again.
    model.calls.clear()
    list(ctx.map_batches(list(range(8)), model))
    assert model.calls == [4, 4]
    # A stage with its own batch size (texts, ITM pairs) is shrunk by the same factor, and the
    # record keeps speaking in --batch-size units.
    model.calls.clear()
    list(ctx.map_batches(list(range(64)), SmallMemory(capacity=8), batch_size=64))
    assert ctx.batch_size_used == 2


def test_out_of_memory_at_batch_size_1_and_other_errors_are_not_retried(tmp_path: Path) -> None:
    ctx = context(tmp_path, batch_size=4)
    hopeless = SmallMemory(capacity=0)
    with pytest.raises(ResourceError, match="out of accelerator memory at batch size 1"):
        list(ctx.map_batches([1, 2, 3], hopeless))
    assert hopeless.calls == [3, 2, 1]

    def broken(batch: list[int]) -> list[int]:
        broken.calls += 1
        raise RuntimeError("a bug, not memory")

    broken.calls = 0
    with pytest.raises(RuntimeError, match="a bug"):
        list(context(tmp_path, batch_size=4).map_batches([1, 2, 3], broken))
    assert broken.calls == 1


def test_the_result_records_the_batch_size_that_fit(tmp_path: Path, toy_root: Path) -> None:
    """blip-tiny whose NLVR2 head runs out of memory above 2 pairs: the run halves 8 -> 4 -> 2,
    records batch_size_used 2, and predicts what an unconstrained run predicts: the same labels,
    probabilities equal up to float rounding (fp32 CPU kernels round differently with the batch
    shape; docs/reliability.md, "Exactness and batch composition")."""
    data = copy_task_data(toy_root, "nlvr2", tmp_path / "data")
    cut_records(data / NLVR2_FILE, 8)

    def build_small_memory(request):
        model = build_blip_tiny(request)
        model.verify = SmallMemory(capacity=2, fn=model.verify, size=lambda left, right, sentences: len(sentences))
        return model

    registry = Registry(make_plugin_manager()).collect()
    tiny = registry.model("blip-tiny")
    registry.add_model(ModelSpec(name="blip-tiny-small-memory", factory=build_small_memory,
                                 description="blip-tiny on a device with room for 2 NLVR2 pairs",
                                 capabilities=tiny.capabilities, protocol_overrides=tiny.protocol_overrides))
    records: dict[str, dict[str, Any]] = {}
    for model in ("blip-tiny", "blip-tiny-small-memory"):
        config = RunConfig(model=model, tasks="nlvr2", data_root=str(data), device="cpu", batch_size=8,
                           output=str(tmp_path / model), quiet=True)
        (records[model],) = Runner(config, registry, report=lambda line: None).run()
    assert records["blip-tiny"]["batch_size_used"] == 8
    assert records["blip-tiny-small-memory"]["batch_size_used"] == 2
    assert records["blip-tiny-small-memory"]["batch_size"] == 8
    halved = read_predictions(only_run_dir(tmp_path / "blip-tiny-small-memory"))
    whole = read_predictions(only_run_dir(tmp_path / "blip-tiny"))
    assert halved.keys() == whole.keys() and len(whole) == 8
    for key, prediction in whole.items():
        assert halved[key]["label"] == prediction["label"]
        assert halved[key]["probability"] == pytest.approx(prediction["probability"], abs=1e-6)


# -- protocol values and run options (checked before any data or weights load) -------------------

MISSING_DATA = "/nonexistent/data-root"
"""A data root that does not exist: an error about it would mean the data was looked at first."""


@pytest.mark.parametrize(
    ("task", "option", "message"),
    [
        ("vqav2", ["--set", "k_test=0"], "task 'vqav2': protocol k_test=0: must be at least 1"),
        ("msrvtt_qa", ["--set", "frame_sampling=random"],
         "task 'msrvtt_qa': protocol frame_sampling='random': expected one of 'strided', 'uniform'"),
        ("nocaps", ["--set", "min_length=30"], "task 'nocaps': protocol min_length=30: must be at most max_length (20)"),
        ("coco_captioning", ["--set", "top_p=0"], "task 'coco_captioning': protocol top_p=0.0: must be greater than 0"),
        ("visdial", ["--set", "history_rounds=-1"], "task 'visdial': protocol history_rounds=-1: must be at least 0"),
        ("coco_retrieval", ["--set", "rerank=sometimes"], "protocol rerank='sometimes': expected one of 'auto', true, false"),
        ("nlvr2", ["--seed", "-1"], "--seed must be at least 0"),
        ("nlvr2", ["--seed", str(2**32)], "--seed must be at most 4294967295"),
        ("nlvr2", ["--num-workers", "-2"], "--num-workers must be at least 0"),
        ("nlvr2", ["--device", "tpu"], "--device 'tpu': expected one of auto, cpu, cuda"),
    ],
    ids=["vqa-k_test-0", "frame-sampling", "min-above-max-length", "top_p-0", "negative-history",
         "rerank-choice", "negative-seed", "seed-too-large", "negative-workers", "unknown-device"],
)
def test_a_value_that_passes_the_parser_but_not_the_task_is_refused_before_any_data_loads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, task: str, option: list[str], message: str
) -> None:
    args = ["--model", "blip-tiny", "--task", task, "--data-root", MISSING_DATA, "--output", str(tmp_path / "runs"), *option]
    code, _, err = harness_run(capsys, args)
    assert code == 2
    assert_one_clear_line(err, message)
    assert not (tmp_path / "runs").exists()


def test_a_protocol_value_beyond_what_the_weights_can_run_is_one_line(
    tmp_path: Path, nlvr2_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = harness_run(capsys, run_args(nlvr2_data, "nlvr2", tmp_path / "runs", "--set", "max_text_tokens=600"))
    assert code == 2
    assert_one_clear_line(err, "protocol max_text_tokens=600: these weights have 512 text positions")


def test_every_protocol_key_of_every_task_has_a_rule_that_accepts_its_default() -> None:
    from harness.media import FRAME_SAMPLINGS
    from harness.protocol_rules import validate_protocol
    from harness_tasks.specs import TASK_SPECS

    for spec in TASK_SPECS:
        assert set(spec.rules) == set(spec.protocol), spec.name
        validate_protocol(spec.name, spec.protocol, spec.rules)
        if "frame_sampling" in spec.rules:
            assert spec.rules["frame_sampling"].options == FRAME_SAMPLINGS


# -- writes that fail: a full disk, a read-only run directory, an unusable feature cache -----------


def _namespaces_work() -> bool:
    """Whether this machine lets a process mount in its own user and mount namespace (as root or
    as a user), which the tests below use to give a run a real full or read-only file system."""
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


needs_namespaces = pytest.mark.skipif(not _namespaces_work(), reason="cannot create a user and mount namespace")


def run_with_mounts(mounts: list[str], args: list[str], cache: Path) -> subprocess.CompletedProcess:
    """``harness ARGS`` in a private mount namespace after the shell commands ``mounts`` (a tmpfs
    that is full, a read-only bind mount): real ENOSPC and EROFS, gone when the process ends."""
    script = " && ".join([*mounts, "exec " + shlex.join(harness_command(args))])
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                          env=harness_env(cache))


def full_tmpfs(path: Path) -> list[str]:
    """Mount a 64 kB tmpfs at ``path`` and fill it."""
    path.mkdir(parents=True, exist_ok=True)
    return [f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(path))}",
            f"(dd if=/dev/zero of={shlex.quote(str(path / 'fill'))} bs=4k 2>/dev/null || true)"]


def read_only(path: Path) -> list[str]:
    quoted = shlex.quote(str(path))
    return [f"mount --bind {quoted} {quoted}", f"mount -o remount,ro,bind {quoted}"]


def unfinished_run(capsys: pytest.CaptureFixture[str], data: Path, output: Path, *extra: str) -> Path:
    """The run directory of a finished run turned back into one stopped after its last prediction:
    no record, the predictions in a part file, as a killed run leaves them."""
    code, _, err = harness_run(capsys, run_args(data, "nlvr2", output, *extra))
    assert code == 0, err
    run_dir = only_run_dir(output)
    (run_dir / "result.json").unlink()
    (run_dir / "predictions.jsonl").rename(run_dir / "predictions.part0.jsonl")
    return run_dir


@pytest.mark.slow
@needs_namespaces
def test_a_disk_full_before_the_first_file_of_the_run_is_one_line(
    tmp_path: Path, nlvr2_data: Path, toy_cache: Path
) -> None:
    output = tmp_path / "full"
    done = run_with_mounts(full_tmpfs(output), ["run", *run_args(nlvr2_data, "nlvr2", output / "runs")], toy_cache)
    assert done.returncode == 2, done.stderr
    line = assert_one_clear_line(done.stderr, "cannot write to", "(No space left on device)", "harness run --resume")
    assert str(output / "runs") in line


@pytest.mark.slow
@needs_namespaces
def test_a_read_only_run_directory_is_one_line_naming_it(
    tmp_path: Path, nlvr2_data: Path, toy_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = unfinished_run(capsys, nlvr2_data, tmp_path / "runs")
    done = run_with_mounts(read_only(run_dir), ["run", "--resume", str(run_dir)], toy_cache)
    assert done.returncode == 2, done.stderr
    assert_one_clear_line(done.stderr, f"cannot write to {run_dir} (Read-only file system)")


def test_a_feature_cache_path_that_is_a_file_is_named_as_the_cache(
    tmp_path: Path, nlvr2_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "features"
    cache.write_text("not a folder")
    code, _, err = harness_run(capsys, run_args(nlvr2_data, "nlvr2", tmp_path / "runs", "--feature-cache", str(cache)))
    assert code == 2
    assert_one_clear_line(err, f"feature cache (--feature-cache) {cache} is a file, not a directory")


@pytest.mark.slow
@needs_namespaces
@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_feature_cache_that_cannot_be_written_is_named_not_the_run_directory(
    tmp_path: Path, nlvr2_data: Path, toy_cache: Path, fault: str
) -> None:
    cache = tmp_path / "features"
    cache.mkdir()
    # A full cache keeps room for its key file, not for the features: the failure comes mid-run.
    mounts = read_only(cache) if fault == "read-only" else [
        f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(cache))}",
        f"(dd if=/dev/zero of={shlex.quote(str(cache / 'fill'))} bs=4k count=15 2>/dev/null || true)"]
    output = tmp_path / "runs"
    done = run_with_mounts(mounts, ["run", *run_args(nlvr2_data, "nlvr2", output, "--feature-cache", str(cache))], toy_cache)
    assert done.returncode == 2, done.stderr
    line = assert_one_clear_line(done.stderr, str(cache))
    assert ("Read-only file system" if fault == "read-only" else "No space left on device") in line
    assert str(output) not in line


# -- weights: truncated files, malformed configurations, tensors that do not fit ------------------


@pytest.fixture(scope="module")
def saved_heads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Hugging Face directories (``harness convert``'s layout) of the tiny VQA and NLVR2 heads."""
    from harness_plugins.blip.catalog import VQA
    from harness_plugins.blip.loading.convert import save_head

    root = tmp_path_factory.mktemp("heads")
    heads = {}
    for head in (VQA, NLVR2):
        tiny = random_tiny(head)
        save_head(tiny.module, head, tiny.tokenizer, root / head)
        heads[head] = root / head
    return heads


def _truncate_weights(folder: Path) -> str:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return f"{weights}: cannot be read as safetensors"


def _config_list(folder: Path) -> str:
    (folder / "config.json").write_text("[1, 2]")
    return f"{folder / 'config.json'}: expected a JSON object (a model configuration), found a JSON list"


def _config_wrong_type(folder: Path) -> str:
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["hidden_size"] = "wide"
    (folder / "config.json").write_text(json.dumps(config))
    return "Field 'hidden_size' expected int, got str (value: 'wide')"


def _edit_tensor(change: Callable[[torch.Tensor], torch.Tensor], message: str) -> Callable[[Path], str]:
    def edit(folder: Path) -> str:
        from safetensors.torch import load_file, save_file

        weights = folder / "model.safetensors"
        state = load_file(weights)
        state[FC1] = change(state[FC1]).contiguous()
        save_file(state, weights, metadata={"format": "pt"})
        return f"{FC1}: {message}"

    return edit


FC1 = "vision_model.encoder.layers.0.mlp.fc1.weight"
_INTEGER = _edit_tensor(lambda t: (t * 100).round().to(torch.int64), "dtype int64, expected floating-point (float32)")
_NARROW = _edit_tensor(lambda t: t[:, :-1], "shape (256, 127), expected (256, 128)")


@pytest.mark.parametrize("head", ["vqa", "nlvr2"])
@pytest.mark.parametrize(
    "corrupt", [_truncate_weights, _config_list, _config_wrong_type, _INTEGER, _NARROW],
    ids=["truncated-safetensors", "config-not-an-object", "config-field-of-wrong-type", "integer-weights", "wrong-shape"],
)
def test_weights_that_cannot_be_loaded_faithfully_are_one_line_naming_the_fault(
    tmp_path: Path, toy_root: Path, saved_heads: dict[str, Path], capsys: pytest.CaptureFixture[str],
    head: str, corrupt: Callable[[Path], str],
) -> None:
    task, annotations = ("nlvr2", NLVR2_FILE) if head == "nlvr2" else ("vqav2", VQA_FILE)
    data = copy_task_data(toy_root, task, tmp_path / "data")
    cut_records(data / annotations, 2)
    weights = tmp_path / "weights"
    shutil.copytree(saved_heads[head], weights)
    message = corrupt(weights)
    code, _, err = harness_run(capsys, run_args(data, task, tmp_path / "runs", "--weights", str(weights)))
    assert code == 2, err
    assert_one_clear_line(err, message)


def test_integer_weights_in_an_official_checkpoint_are_refused_not_cast(
    tmp_path: Path, nlvr2_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = random_tiny(NLVR2).module.state_dict()
    state[FC1] = (state[FC1] * 100).round().to(torch.int64)
    weights = save_state(tmp_path / "model_tiny_nlvr.pth", state)
    code, _, err = harness_run(capsys, run_args(nlvr2_data, "nlvr2", tmp_path / "runs", "--weights", str(weights)))
    assert code == 2
    assert_one_clear_line(err, str(weights), f"{FC1}: dtype int64, expected floating-point (float32)")


@pytest.mark.slow
def test_missing_keys_are_the_only_line_not_after_transformers_own_report(
    tmp_path: Path, toy_root: Path, toy_cache: Path, saved_heads: dict[str, Path]
) -> None:
    from safetensors.torch import load_file, save_file

    data = copy_task_data(toy_root, "vqav2", tmp_path / "data")
    cut_records(data / VQA_FILE, 2)
    weights = tmp_path / "weights"
    shutil.copytree(saved_heads["vqa"], weights)
    state = load_file(weights / "model.safetensors")
    del state[FC1]
    save_file(state, weights / "model.safetensors", metadata={"format": "pt"})
    done = run_harness(["run", *run_args(data, "vqav2", tmp_path / "runs", "--weights", str(weights))], toy_cache)
    assert done.returncode == 2
    assert_one_clear_line(done.stderr, "weights do not fit BlipForQuestionAnswering: missing keys", FC1)


# -- resume: its own files damaged, options given with it, data changed since --------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [('{"model": "blip-tiny", ', "cannot be read as JSON"),
     ("[1, 2]", "not a harness run configuration (missing or malformed: model, task, split, tasks)"),
     ('{"model": "blip-tiny", "tasks": "nlvr2", "task": "nlvr2", "split": "test_p", "seed": "zero"}',
      "--seed must be an integer, got 'zero'")],
    ids=["not-json", "not-an-object", "field-of-wrong-type"],
)
def test_a_corrupt_run_json_given_to_resume_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(content)
    code, _, err = harness_run(capsys, ["--resume", str(run_dir)])
    assert code == 2
    assert_one_clear_line(err, message)


@pytest.mark.parametrize(
    ("line", "message"),
    [("not json at all\n", "line 2 is not JSON"),
     ('["a list"]\n', "line 2 is not a prediction line"),
     ('{"prediction": {"label": true}}\n', "line 2 is not a prediction line")],
    ids=["not-json", "not-an-object", "no-sample-id"],
)
def test_a_damaged_prediction_part_file_is_one_line_naming_file_and_line(
    tmp_path: Path, nlvr2_data: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    run_dir = unfinished_run(capsys, nlvr2_data, tmp_path / "runs")
    part = run_dir / "predictions.part0.jsonl"
    first = part.read_text().splitlines(keepends=True)[0]
    part.write_text(first + line)
    code, _, err = harness_run(capsys, ["--resume", str(run_dir)])
    assert code == 2
    assert_one_clear_line(err, f"{part}: {message}")


def test_resume_honours_the_options_safe_to_change_and_refuses_the_others_by_name(
    tmp_path: Path, nlvr2_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = unfinished_run(capsys, nlvr2_data, tmp_path / "runs")
    saved = (run_dir / "run.json").read_text()
    code, _, err = harness_run(capsys, ["--resume", str(run_dir), "--seed", "3", "--set", "max_words=5",
                                        "--precision", "bf16", "--batch-size", "2"])
    assert code == 2
    assert_one_clear_line(err, f"--resume {run_dir}", "--precision, --seed, --set cannot change on resume")
    assert (run_dir / "run.json").read_text() == saved and not (run_dir / "result.json").exists()
    # The run's own values may be repeated; the safe options take effect.
    code, _, err = harness_run(capsys, ["--resume", str(run_dir), "--model", "blip-tiny", "--task", "nlvr2",
                                        "--seed", "0", "--batch-size", "2", "--skip-bad", "--flush-every", "5"])
    assert code == 0, err
    record = read_result(run_dir)
    assert record["batch_size"] == 2
    assert record["run_config"]["skip_bad"] is True and record["run_config"]["flush_every"] == 5
    assert record["samples"]["resumed"] == 2


def test_resume_refuses_data_changed_since_the_run_started_naming_the_samples(
    tmp_path: Path, nlvr2_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = unfinished_run(capsys, nlvr2_data, tmp_path / "runs")
    edit_record(nlvr2_data / NLVR2_FILE, 1, _set("sentence", "three cats"))
    code, _, err = harness_run(capsys, ["--resume", str(run_dir)])
    assert code == 2
    assert_one_clear_line(err, f"nlvr2 [test_p]: the data changed since the run in {run_dir} started",
                          "1 sample changed (1)", "without --resume")
    assert not (run_dir / "result.json").exists()


def test_resume_removes_the_temporaries_a_killed_write_left(
    tmp_path: Path, nlvr2_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = unfinished_run(capsys, nlvr2_data, tmp_path / "runs")
    leftovers = [run_dir / ".result.json.tmp-0badf00d", run_dir / ".predictions.jsonl.tmp-12345678"]
    for leftover in leftovers:
        leftover.write_text('{"half": ')
    code, _, err = harness_run(capsys, ["--resume", str(run_dir)])
    assert code == 0, err
    assert not any(leftover.exists() for leftover in leftovers)
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == [".lock"]


def _umask_022() -> None:
    os.umask(0o022)


@pytest.mark.slow
def test_the_files_of_a_run_honour_the_umask(tmp_path: Path, nlvr2_data: Path, toy_cache: Path) -> None:
    output = tmp_path / "runs"
    done = run_harness(["run", *run_args(nlvr2_data, "nlvr2", output)], toy_cache, preexec_fn=_umask_022)
    assert done.returncode == 0, done.stderr
    run_dir = only_run_dir(output)
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in run_dir.iterdir()}
    assert {"result.json", "predictions.jsonl", "run.json"} <= set(modes)
    assert set(modes.values()) == {oct(0o644)}, modes
