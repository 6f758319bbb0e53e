"""capfilt_filter: the seeded pair plan, the caption edits, both score scales, the metrics at the
threshold, and the trained blip-tiny filter on the toy web split."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from capability_doubles import STEP, CircleModel, caption_of, colour_of
from media_files import write_image

from harness.capabilities import ImageTextMatchProbability, TextFeatures, VisualFeatures
from harness.context import RunContext
from harness.errors import CapabilityError, ConfigError
from harness.predictions import PredictionStore
from harness.specs import ModelRequest
from harness_plugins.blip.presets import build_blip_tiny
from harness_tasks.capfilt_filter import pairs_fingerprint, plan_pairs
from harness_tasks.caption_edits import contradict, replacements
from harness_tasks.specs import TASK_SPECS
from harness_tasks.text import pre_caption

ITEMS = 6
VIEWS = 2
SPLIT = "coco_karpathy_test_5k"


def spec():
    return next(s for s in TASK_SPECS if s.name == "capfilt_filter")


def protocol(**overrides):
    return {**spec().protocol, **overrides}


class ProbabilityModel(CircleModel):
    """A filter that is sure: probability 0.9 for an item's own caption, 0.1 otherwise."""

    def match_probability(self, visual: VisualFeatures, texts: TextFeatures, pairs: torch.Tensor) -> torch.Tensor:
        own = visual.tokens[pairs[:, 0], 0, 0].long() == texts.input_ids[pairs[:, 1], 1]
        return torch.where(own, 0.9, 0.1)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    records = []
    for item in range(ITEMS):
        rel = f"val2014/COCO_val2014_{item:012d}.jpg"
        write_image(root / "coco" / "images" / rel, colour=colour_of(item), size=8)
        records.append({"image": rel, "caption": [caption_of(item, view) for view in range(VIEWS)]})
    path = root / "coco" / "annotations" / "coco_karpathy_test.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(records))
    return root


def run(data_root: Path, model, run_dir: Path, split: str = SPLIT, **overrides):
    task = spec().build()
    proto = protocol(**overrides)
    dataset = task.load(data_root, split, proto)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = PredictionStore(run_dir)
    ctx = RunContext(protocol=dict(proto), predictions=store, batch_size=4)
    try:
        task.evaluate(model, dataset, ctx)
    finally:
        store.close()
    predictions = {sid: store.predictions[sid] for sid in dataset.sample_ids}
    return task, dataset, ctx, predictions


# -- the plan -------------------------------------------------------------------------------------


def captioned(n: int, views: int = 4) -> list[tuple[str, Path, list[str]]]:
    colours = ["red", "blue", "green", "yellow"]
    return [
        (f"img{i}", Path(f"img{i}.jpg"), [f"a {colours[(i + v) % 4]} circle in picture {'abcdefghijk'[i]} from side {'wxyz'[v]}" for v in range(views)])
        for i in range(n)
    ]


def test_plan_has_the_fractions_and_is_reproducible_for_its_seed():
    images = captioned(10)
    pairs = plan_pairs(images, seed=1, wrong_fraction=0.25, partial_fraction=0.25)
    kinds = [pair.kind for pair in pairs]
    assert len(pairs) == 40 and kinds.count("wrong") == 10 and kinds.count("partial") == 10 and kinds.count("clean") == 20
    assert plan_pairs(images, 1, 0.25, 0.25) == pairs
    assert pairs_fingerprint(plan_pairs(images, 2, 0.25, 0.25)) != pairs_fingerprint(pairs)
    own = {image_id: captions for image_id, _, captions in images}
    for pair in pairs:
        number = int(pair.sample_id.split("#")[1])
        caption = own[pair.image][number]
        assert pair.label == int(pair.kind == "clean")
        if pair.kind == "clean":
            assert pair.text == caption
        elif pair.kind == "wrong":
            assert pair.text not in own[pair.image]
        else:  # exactly one colour word swapped for another colour of the split
            changed = [(a, b) for a, b in zip(caption.split(), pair.text.split(), strict=True) if a != b]
            assert len(changed) == 1 and {changed[0][0], changed[0][1]} <= {"red", "blue", "green", "yellow"}


def test_contradiction_never_swaps_in_a_synonym_and_skips_uneditable_captions():
    assert contradict("a red circle on the left", {"red", "blue", "circle"}, random.Random(0)) == "a blue circle on the left"
    assert replacements("purple", {"violet", "purple", "red"}) == ["red"]
    assert replacements("dogs", {"dog", "cats", "men"}) == ["cats", "men"]
    assert replacements("two", {"2", "three", "two"}) == ["three"]
    assert contradict("a purple disk", {"purple", "violet", "disk", "circle"}, random.Random(0)) is None
    assert contradict("item 3 view 1", {"item", "view"}, random.Random(0)) is None
    # captions without a swappable word fall back to another image's caption
    pairs = plan_pairs([(f"i{i}", Path(f"i{i}"), [f"picture {'abcd'[i]}"]) for i in range(4)], 0, 0.0, 1.0)
    assert [pair.kind for pair in pairs] == ["wrong"] * 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"wrong_fraction": 0.7, "partial_fraction": 0.5}, "at most 1"),
        ({"wrong_fraction": -0.1}, "from 0 to 1"),
        ({"plan_seed": "x"}, "plan_seed"),
        ({"max_words": 0}, "max_words"),
    ],
)
def test_bad_plan_settings_are_refused(data_root, overrides, message):
    with pytest.raises(ConfigError, match=message):
        spec().build().load(data_root, SPLIT, protocol(**overrides))


def test_unknown_split_names_the_known_ones(data_root):
    with pytest.raises(ConfigError, match="splits: web, coco_karpathy_test_5k"):
        spec().build().load(data_root, "karpathy_test_5k", protocol())


# -- scoring --------------------------------------------------------------------------------------


def test_itc_filter_scores_the_cosine_and_records_its_threshold(data_root, tmp_path):
    task, dataset, ctx, predictions = run(data_root, CircleModel(), tmp_path / "run", partial_fraction=0.0)
    assert ctx.protocol["score"] == "itc" and ctx.protocol["threshold"] == 0.28
    assert ctx.protocol["pair_plan_fingerprint"] == pairs_fingerprint(dataset.samples)
    for pair in dataset.samples:
        item = int(pair.sample_id.split("_")[-1].split(".")[0])
        text_item, view = (int(n) for n in pair.text.split()[1::2])
        expected = math.cos(item * STEP - (text_item * STEP + 0.01 * (view + 1)))
        assert predictions[pair.sample_id]["score"] == pytest.approx(expected, abs=1e-6)
        assert pair.text == pre_caption(caption_of(text_item, view), 30)
    metrics = task.score(dataset, predictions, ctx.protocol)
    assert metrics["roc_auc"] == pytest.approx(100.0)  # own captions are always nearest
    assert metrics["kept_clean"] == pytest.approx(100.0)


def test_itm_filter_thresholds_the_match_probability(data_root, tmp_path):
    model = ProbabilityModel()
    assert isinstance(model, ImageTextMatchProbability)
    task, dataset, ctx, predictions = run(data_root, model, tmp_path / "run", wrong_fraction=0.5, partial_fraction=0.0)
    assert ctx.protocol["score"] == "itm" and ctx.protocol["threshold"] == 0.5
    labels = [pair.label for pair in dataset.samples]
    assert sum(labels) == 6 and [predictions[p.sample_id]["kept"] for p in dataset.samples] == [bool(x) for x in labels]
    metrics = task.score(dataset, predictions, ctx.protocol)
    assert metrics == pytest.approx(
        {"roc_auc": 100.0, "average_precision": 100.0, "precision": 100.0, "recall": 100.0, "f1": 100.0,
         "kept": 50.0, "kept_clean": 100.0, "kept_wrong": 0.0}
    )
    # a threshold above every score keeps nothing
    strict = task.score(dataset, predictions, {**ctx.protocol, "threshold": 0.95})
    assert strict["kept"] == 0.0 and strict["precision"] == 0.0 and strict["roc_auc"] == 100.0
    levels = task.reference_levels(dataset, ctx.protocol)
    assert levels["roc_auc"] == 50.0 and levels["average_precision"] == pytest.approx(50.0)
    assert levels["f1"] == pytest.approx(100 * 2 * 0.5 / 1.5)


def test_itm_score_needs_a_match_probability(data_root, tmp_path):
    with pytest.raises(CapabilityError, match="ImageTextMatchProbability"):
        run(data_root, CircleModel(), tmp_path / "run", score="itm")
    with pytest.raises(ConfigError, match="threshold"):
        run(data_root, CircleModel(), tmp_path / "run2", threshold="high")


# -- BLIP -----------------------------------------------------------------------------------------


@torch.inference_mode()
def test_blip_match_probability_is_the_softmax_of_both_itm_logits():
    model = build_blip_tiny(ModelRequest(task="capfilt_filter", protocol={"image_size": 32}, seed=3))
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    visual = model.encode_images(pixels)
    texts = model.encode_texts(["a red circle", "two blue squares on the left", "click here"])
    pairs = torch.tensor([[0, 0], [1, 1], [0, 2], [1, 0]])
    ids = texts.input_ids.clone()
    ids[:, 0] = model.enc_token_id
    tokens = visual.tokens[pairs[:, 0]]
    hidden = model.module.text_encoder(
        input_ids=ids[pairs[:, 1]], attention_mask=texts.attention_mask[pairs[:, 1]],
        encoder_hidden_states=tokens, encoder_attention_mask=torch.ones(tokens.shape[:2], dtype=torch.long),
    ).last_hidden_state
    logits = model.module.itm_head(hidden[:, 0])
    assert torch.allclose(model.match_probability(visual, texts, pairs), logits.softmax(-1)[:, 1], atol=1e-5)
    assert torch.allclose(model.match(visual, texts, pairs), logits[:, 1], atol=1e-5)


def test_trained_blip_tiny_filters_the_toy_web_split_far_above_chance(toy_root, tmp_path):
    model = build_blip_tiny(ModelRequest(task="capfilt_filter", protocol={"image_size": 64, "max_text_tokens": 35}))
    task, dataset, ctx, predictions = run(toy_root, model, tmp_path / "run", split="web")
    metrics = task.score(dataset, predictions, ctx.protocol)
    assert metrics["roc_auc"] > 80, metrics
    assert metrics["kept_clean"] > metrics["kept_partial"] > metrics["kept_wrong"], metrics
    assert metrics["kept_boilerplate"] < 20, metrics
