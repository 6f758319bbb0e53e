"""CapFilt's parts in-process: the threshold rule, the statistics on hand-made samples, reading
both input formats, the BLIP filter's match probability, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from web_shards import CORRUPT_KEY, write_web_shards

from harness.capfilt.settings import Threshold
from harness.capfilt.sources import BadSample, WebSample, list_shards, read_shard
from harness.capfilt.stats import capfilt_statistics
from harness.errors import ConfigError, DataError


def test_a_value_threshold_keeps_scores_at_or_above_it() -> None:
    threshold = Threshold.parse("0.7", default=0.5)
    assert threshold.cutoff([0.1, 0.9]) == 0.7
    assert Threshold.parse("auto", default=0.28).cutoff([]) == 0.28


def test_a_top_fraction_keeps_that_share_and_its_ties() -> None:
    threshold = Threshold.parse("top:0.5", default=0.5)
    assert threshold.describe() == "top:0.5"
    # 5 scores, top 50 % = ceil(2.5) = 3 kept: the cut is the third highest, 0.6.
    assert threshold.cutoff([0.9, 0.2, 0.6, 0.8, 0.1]) == 0.6
    # A tie at the cut keeps both.
    scores = [0.9, 0.6, 0.6, 0.1]
    assert sum(s >= threshold.cutoff(scores) for s in scores) == 3


@pytest.mark.parametrize("text", ["top:0", "top:1.5", "high", "top:"])
def test_a_malformed_threshold_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--threshold"):
        Threshold.parse(text, default=0.5)


def _text(text: str, source: str, score: float, kept: bool, round_number: int = 0) -> dict:
    captioner = None if source == "web" else "cap"
    return {"text": text, "source": source, "round": round_number, "captioner": captioner, "score": score, "kept": kept}


def test_statistics_count_each_source_and_the_noise_ratio() -> None:
    samples = [
        {"scored": [_text("a red disk", "web", 0.9, True), _text("a red disk", "synthetic", 0.8, True, 1),
                    _text("a red disk", "synthetic", 0.3, False, 1)]},
        {"scored": [_text("buy now", "web", 0.1, False), _text("a blue cube", "synthetic", 0.6, True, 1),
                    _text("a blue ball", "synthetic", 0.2, False, 1)]},
    ]
    for sample in samples:
        sample["texts"] = [t for t in sample["scored"] if t["kept"]]
    manifests = [{"input_samples": 3, "bad_samples": [{"key": "x", "reason": "cannot decode image"}]}]
    stats = capfilt_statistics(samples, manifests, "itm")

    assert stats["samples"] == {"input": 3, "images": 2, "bad": 1, "images_with_kept_text": 2}
    assert stats["sources"]["web"]["texts"] == 2 and stats["sources"]["web"]["kept_fraction"] == 0.5
    assert stats["sources"]["synthetic"]["kept"] == 2 and stats["sources"]["synthetic/cap/round1"]["texts"] == 4
    assert stats["noise_ratio"] == 0.5 and stats["web_noise_ratio"] == 0.5
    assert stats["texts"] == {"scored": 6, "kept": 3}
    web_scores = stats["sources"]["web"]["scores"]
    assert web_scores["quantiles"]["0.5"] == pytest.approx(0.5)
    assert web_scores["histogram"]["counts"][2] == 1 and web_scores["histogram"]["counts"][18] == 1
    # 5 distinct words ("a red disk blue cube ball" minus repeats: a, red, disk, blue, cube, ball = 6)
    # over 4 captions; "a red disk" twice in one image gives that image mBLEU-4 of 100.
    assert stats["diversity"]["vocabulary"] == 6
    assert stats["diversity"]["distinct_1"] == pytest.approx(6 / 12)


def test_web_shards_are_read_with_their_texts_and_bad_images(toy_root: Path, tmp_path: Path) -> None:
    write_web_shards(toy_root, tmp_path, shards=1, per_shard=4)
    shards = list_shards(str(tmp_path / "{00000..00000}.tar"))
    assert [s.name for s in shards] == ["00000"]
    samples = list(read_shard(shards[0]))
    assert [s.key for s in samples] == ["000000000", CORRUPT_KEY, "000000002", "000000003"]
    assert all(isinstance(s, WebSample) and len(s.web_texts) == 1 for s in samples)
    assert samples[0].meta["url"].endswith("000000000.jpg") and samples[0].image_ext == "jpg"
    assert len(list(read_shard(shards[0], limit=2))) == 2


def test_blip_pretraining_json_is_cut_into_shards(toy_root: Path, tmp_path: Path) -> None:
    annotations = toy_root / "coco" / "annotations" / "coco_karpathy_test.json"
    records = json.loads(annotations.read_text())[:5] + [{"image": "val2014/missing.jpg", "caption": "gone"}]
    source = tmp_path / "pretrain.json"
    source.write_text(json.dumps(records))
    shards = list_shards(str(source), shard_size=4)
    assert [(s.name, s.start, s.stop) for s in shards] == [("00000", 0, 4), ("00001", 4, 6)]
    second = list(read_shard(shards[1], image_root=toy_root / "coco" / "images"))
    assert isinstance(second[0], WebSample) and second[0].key == "000000004"
    assert second[0].web_texts == records[4]["caption"]
    assert isinstance(second[1], BadSample) and "missing.jpg" in second[1].reason


@pytest.mark.parametrize(("source", "message"), [
    ("nowhere/{00000..00001}.tar", "does not exist"),
    ("empty", "no .tar shards"),
    ("empty.json", "annotation list is empty"),
    ("zero.tar", "is empty"),
])
def test_missing_or_empty_input_is_a_data_error(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "zero.tar").write_bytes(b"")
    with pytest.raises(DataError, match=message):
        list_shards(str(tmp_path / source))


def test_a_clip_filter_scores_by_cosine_and_auto_picks_each_models_score() -> None:
    from PIL import Image

    from harness.capfilt.models import Device, build_filter
    from harness.capfilt.pipeline import resolve_filter_score
    from harness.registry import get_registry

    registry = get_registry().collect()
    assert resolve_filter_score(registry, "clip-tiny", "auto") == "cosine"
    assert resolve_filter_score(registry, "blip-tiny", "auto") == "itm"
    text_filter = build_filter(registry, "clip-tiny", None, Device("cpu", "fp32", 0), "cosine")
    images = [Image.new("RGB", (64, 64), colour) for colour in ("red", "blue")]
    texts = [["a red square", "a blue disk"], ["a blue disk"]]
    scores = text_filter.scores(images, texts)
    model = text_filter.model
    visual = model.encode_images(model.preprocess(images)).embeds
    embeds = model.encode_texts(["a red square", "a blue disk"]).embeds
    expected = [[float(visual[0] @ embeds[0]), float(visual[0] @ embeds[1])], [float(visual[1] @ embeds[1])]]
    assert [len(group) for group in scores] == [2, 1]
    for got, want in zip(sum(scores, []), sum(expected, []), strict=True):
        assert got == pytest.approx(want, abs=1e-5)


def test_a_model_without_a_needed_capability_is_refused_by_name() -> None:
    from harness.capfilt.models import Device, build_captioner, build_filter
    from harness.errors import CapabilityError
    from harness.registry import get_registry

    registry = get_registry().collect()
    with pytest.raises(CapabilityError, match="cannot be the CapFilt captioner: it lacks Captioner"):
        build_captioner(registry, "clip-tiny", None, Device("cpu", "fp32", 0), "nucleus", 0.9)
    with pytest.raises(CapabilityError, match="lacks ImageTextMatchProbability"):
        build_filter(registry, "clip-tiny", None, Device("cpu", "fp32", 0), "itm")


@pytest.mark.parametrize(("extra", "message"), [
    (["--input", "/nonexistent/{00000..00001}.tar"], "does not exist"),
    (["--input", "x.tar", "--threshold", "top:2"], "--threshold 'top:2'"),
    (["--input", "x.tar", "--rounds", "0"], "--rounds must be at least 1"),
    (["--input", "x.tar", "--sampling", "beam", "--captions-per-image", "2"], "--sampling beam is deterministic"),
    (["--input", "x.tar", "--captioner", "nope"], "unknown model 'nope'"),
])
def test_bad_options_end_in_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str],
                                                message: str) -> None:
    from harness.cli import main

    args = ["capfilt", "--captioner", "blip-tiny", "--filter", "blip-tiny", "--output", str(tmp_path / "out"),
            "--device", "cpu"]
    code = main([*args, *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_an_ensemble_over_rounds_tags_every_caption_and_is_reproducible(toy_root: Path) -> None:
    from PIL import Image

    from harness.capfilt.models import Device, build_captioner, build_filter
    from harness.capfilt.pipeline import Roles, caption_and_score
    from harness.capfilt.settings import CapFiltSettings
    from harness.registry import get_registry

    registry, device = get_registry().collect(), Device("cpu", "fp32", 0)
    captioner = build_captioner(registry, "blip-tiny", None, device, "nucleus", 0.9)
    roles = Roles([("a", captioner), ("b", captioner)], build_filter(registry, "blip-tiny", None, device, "itm"))
    settings = CapFiltSettings(
        input="x", captioners=("blip-tiny", "blip-tiny"), captioner_weights=(), filter="blip-tiny", filter_weights=None,
        filter_score="itm", captions_per_image=1, sampling="nucleus", top_p=0.9, threshold="0.5", rounds=2, limit=None,
        seed=0, batch_size=2, precision="fp32", shard_size=1, image_root=None,
    )
    records = json.loads((toy_root / "coco" / "annotations" / "coco_karpathy_test.json").read_text())[:2]
    images = [Image.open(toy_root / "coco" / "images" / r["image"]).convert("RGB") for r in records]
    web = [["a web text"], []]

    texts = caption_and_score(images, web, roles, settings, ("00000", 0))
    per_round = [("synthetic", r, c) for r in (1, 2) for c in ("a", "b")]
    assert [(t["source"], t["round"], t["captioner"]) for t in texts[0]] == [("web", 0, None), *per_round]
    assert [(t["source"], t["round"], t["captioner"]) for t in texts[1]] == per_round
    assert all(0 <= t["score"] <= 1 for own in texts for t in own)
    # Each (round, captioner) draws from its own seed: the same position gives the same captions,
    # and the second round does not repeat the first.
    assert caption_and_score(images, web, roles, settings, ("00000", 0)) == texts
    synthetic = [t["text"] for own in texts for t in own if t["source"] == "synthetic"]
    assert len(set(synthetic)) > len(synthetic) // 2

    # Round 2 with another captioner (--captioner blip-tiny@1 --captioner blip-tiny@2): each
    # captions only its own round.
    by_round = Roles(roles.captioners, roles.filter, [(1,), (2,)])
    texts = caption_and_score(images, web, by_round, settings, ("00000", 0))
    assert [(t["round"], t["captioner"]) for t in texts[1]] == [(1, "a"), (2, "b")]


@pytest.mark.parametrize(
    ("captioners", "rounds", "message"),
    [
        (("blip-tiny@1",), 2, r"no --captioner captions round\(s\) 2 of --rounds 2"),
        (("blip-tiny", "blip-tiny@3"), 2, "names round 3, but --rounds is 2"),
        (("blip-tiny@x",), 1, "expected MODEL or MODEL@ROUNDS"),
        (("blip-tiny@0",), 1, "rounds counted from 1"),
    ],
)
def test_captioners_per_round_are_checked(captioners: tuple[str, ...], rounds: int, message: str) -> None:
    from harness.capfilt.settings import CapFiltSettings

    settings = CapFiltSettings(
        input="x", captioners=captioners, captioner_weights=(), filter="blip-tiny", filter_weights=None,
        filter_score="itm", captions_per_image=1, sampling="nucleus", top_p=0.9, threshold="0.5", rounds=rounds,
        limit=None, seed=0, batch_size=2, precision="fp32", shard_size=1, image_root=None,
    )
    with pytest.raises(ConfigError, match=message):
        settings.check()
