"""``harness toy train`` and the shipped blip-tiny weights: training is deterministic and learns,
the shipped model clearly beats chance, and the regression gate catches planted defects."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from harness.config import RunConfig
from harness.records import parse_record
from harness.regress import regress
from harness.runner import Runner
from harness_plugins.blip.heads import base
from harness_plugins.blip.heads.verification import BlipNLVR2Verifier
from harness_plugins.blip.tiny import TINY_WEIGHTS_DIR
from harness_plugins.blip.training.trainer import Recipe, Stage, swap_sides, train_tiny
from harness_plugins.common import preprocess

HEADS = ("retrieval", "caption", "vqa", "nlvr2")
SHORT = Recipe(
    pretrain=Stage(steps=8, lr=1e-3, batch_size=16, warmup=2),
    dialog_batch_size=2,
    vqa=Stage(steps=4, lr=5e-4, batch_size=8, warmup=2),
    video_qa_batch_size=1,
    nlvr2=Stage(steps=4, lr=5e-4, batch_size=8, warmup=2),
)
TOLERANCE = 1e-6
"""The gate's default: CPU runs of the same weights repeat their metrics exactly."""

shipped = pytest.mark.skipif(
    not (TINY_WEIGHTS_DIR / "nlvr2" / "config.json").is_file(), reason="blip-tiny weights not shipped"
)


def _digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.safetensors"))
    }


def test_swap_sides_exchanges_left_and_right_only() -> None:
    assert swap_sides("the left image has more stars than the right image") == (
        "the right image has more stars than the left image"
    )
    assert swap_sides("both images contain a bright star") == "both images contain a bright star"


@pytest.mark.slow
def test_short_training_is_deterministic_and_lowers_the_loss(toy_root: Path, tmp_path: Path) -> None:
    first = train_tiny(toy_root, tmp_path / "a", seed=3, recipe=SHORT, progress=False)
    second = train_tiny(toy_root, tmp_path / "b", seed=3, recipe=SHORT, progress=False)
    digests = _digests(tmp_path / "a")
    assert sorted(Path(name).parent.name for name in digests) == sorted(HEADS)
    assert digests == _digests(tmp_path / "b")
    assert [s.last_loss for s in first.stages] == [s.last_loss for s in second.stages]
    pretrain = first.stages[0]
    assert pretrain.name == "pretrain" and pretrain.last_loss < pretrain.first_loss
    other_seed = train_tiny(toy_root, tmp_path / "c", seed=4, recipe=SHORT, progress=False)
    assert _digests(tmp_path / "c") != digests
    assert other_seed.bytes_written > 0


def _run(toy_root: Path, output: Path, task: str, limit: int | None = None) -> dict[str, Any]:
    config = RunConfig(
        model="blip-tiny", tasks=task, data_root=str(toy_root), device="cpu", output=str(output), limit=limit,
        quiet=True,
    )
    (record,) = Runner(config, report=lambda _message: None).run()
    return record


def _gate(good: dict[str, Any], other: dict[str, Any]) -> bool:
    (result,) = regress([parse_record(good, Path("reference.json"))], [parse_record(other, Path("run.json"))], {}, TOLERANCE)
    return result.passed


@shipped
@pytest.mark.slow
def test_shipped_weights_load_by_default_and_beat_chance(toy_root: Path, tmp_path: Path) -> None:
    retrieval = _run(toy_root, tmp_path / "coco", "coco_retrieval")
    assert retrieval["weights"]["name"] == "blip-tiny/retrieval"
    assert retrieval["weights"]["files"], "the shipped safetensors are hashed into the record"
    for metric in ("txt_r1", "img_r1"):
        assert retrieval["metrics"][metric] >= 5 * retrieval["reference_levels"][metric]
    video_qa = _run(toy_root, tmp_path / "msrvtt_qa", "msrvtt_qa")
    assert video_qa["weights"]["name"] == "blip-tiny/vqa"
    assert video_qa["metrics"]["accuracy"] >= video_qa["reference_levels"]["accuracy"] + 20


@pytest.fixture(scope="module")
def good_runs(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    output = tmp_path_factory.mktemp("good")
    return {task: _run(toy_root, output / task, task, limit) for task, limit in (("nlvr2", None), ("visdial", 20))}


@shipped
@pytest.mark.slow
def test_shipped_nlvr2_head_reaches_seventy_percent_on_test_p(good_runs: dict[str, dict[str, Any]]) -> None:
    record = good_runs["nlvr2"]
    assert record["split"] == "test_p" and record["samples"]["evaluated"] >= 200
    assert record["metrics"]["accuracy"] >= 70.0 and record["reference_levels"]["accuracy"] == 50.0


@shipped
@pytest.mark.slow
def test_gate_passes_a_repeated_run(good_runs: dict[str, dict[str, Any]], toy_root: Path, tmp_path: Path) -> None:
    assert _gate(good_runs["nlvr2"], _run(toy_root, tmp_path, "nlvr2"))


@shipped
@pytest.mark.slow
@pytest.mark.parametrize("defect", ["enc_token_left_out_of_itm", "nlvr2_branches_swapped", "normalisation_changed"])
def test_gate_fails_on_a_planted_defect(
    defect: str, good_runs: dict[str, dict[str, Any]], toy_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if defect == "enc_token_left_out_of_itm":
        # ITM reads the text with [CLS] first, as if [ENC] had never been put in its place.
        monkeypatch.setattr(base, "enc_token_id", lambda tokenizer: tokenizer.cls_token_id)
        task = "visdial"
    elif defect == "nlvr2_branches_swapped":
        verify = BlipNLVR2Verifier.verify
        monkeypatch.setattr(BlipNLVR2Verifier, "verify", lambda self, left, right, texts: verify(self, right, left, texts))
        task = "nlvr2"
    else:
        monkeypatch.setattr(preprocess, "MEAN", (0.5, 0.5, 0.5))
        monkeypatch.setattr(preprocess, "STD", (0.5, 0.5, 0.5))
        task = "nlvr2"
    good = good_runs[task]
    broken = _run(toy_root, tmp_path, task, good["samples"]["limit"])
    assert not _gate(good, broken)
