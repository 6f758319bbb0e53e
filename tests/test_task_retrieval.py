import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from capability_doubles import CircleModel, ConstantModel, blip_score_matrices, caption_of, colour_of
from media_files import write_image

from harness.capabilities import ImageTextMatcher
from harness.context import RunContext
from harness.errors import CapabilityError, DataError
from harness.media import load_image
from harness.metrics.retrieval import image_text_retrieval_metrics
from harness.predictions import PredictionStore
from harness_tasks.retrieval import chance_recall_at_k
from harness_tasks.specs import TASK_SPECS
from harness_tasks.text import pre_caption

SPLIT = "karpathy_test_5k"
ITEMS = 8
VIEWS = 3


def next_item_wins(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """An ITM head that disagrees with ITC: it prefers the captions of the next item."""
    return 5.0 * (texts == (images + 1) % ITEMS).float()


def own_item_wins(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    return 5.0 * (texts == images).float()


def spec(name="coco_retrieval"):
    return next(s for s in TASK_SPECS if s.name == name)


def protocol(**overrides):
    return {**spec().protocol, "k_test": 2 * VIEWS + VIEWS, **overrides}


def write_coco(root: Path, items: int = ITEMS, views: int = VIEWS) -> Path:
    records = []
    for item in range(items):
        rel = f"val2014/COCO_val2014_{item:012d}.jpg"
        write_image(root / "coco" / "images" / rel, colour=colour_of(item), size=8)
        records.append({"image": rel, "caption": [caption_of(item, view) for view in range(views)]})
    path = root / "coco" / "annotations" / "coco_karpathy_test.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return path


@pytest.fixture
def data_root(tmp_path):
    write_coco(tmp_path / "data")
    return tmp_path / "data"


def evaluate(data_root, model, run_dir, proto=None, *, skip_bad=False, batch_size=2, task_name="coco_retrieval"):
    task = spec(task_name).build()
    proto = proto or protocol()
    dataset = task.load(data_root, SPLIT, proto, skip_bad=skip_bad)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = PredictionStore(run_dir)
    ctx = RunContext(protocol=dict(proto), predictions=store, batch_size=batch_size, skip_bad=skip_bad)
    try:
        task.evaluate(model, dataset, ctx)
    finally:
        store.close()
    return task, dataset, ctx


def brute_force_metrics(model, data_root, k):
    """Metrics from the full score matrices of BLIP's evaluation."""
    pixels = model.preprocess(
        [load_image(data_root / "coco" / "images" / f"val2014/COCO_val2014_{i:012d}.jpg") for i in range(ITEMS)]
    )
    visual = model.encode_images(pixels)
    texts = model.encode_texts([pre_caption(caption_of(i, j), 30) for i in range(ITEMS) for j in range(VIEWS)])
    i2t, t2i = blip_score_matrices(model, visual, texts, k)
    img2txt = [list(range(i * VIEWS, (i + 1) * VIEWS)) for i in range(ITEMS)]
    txt2img = [t // VIEWS for t in range(ITEMS * VIEWS)]
    return image_text_retrieval_metrics(i2t, img2txt, txt2img, t2i_scores=t2i)


# -- loading --------------------------------------------------------------------------------------


def test_load_normalises_captions_and_keys_samples_by_image(data_root):
    dataset = spec().build().load(data_root, SPLIT, protocol())
    assert len(dataset.samples) == ITEMS
    first = dataset.samples[0]
    assert first.sample_id == "val2014/COCO_val2014_000000000000.jpg"
    assert first.captions == ("item 0 view 0", "item 0 view 1", "item 0 view 2")
    assert first.images[0].is_file()
    assert len(dataset.fingerprint) == 64


def test_load_truncates_to_max_words(data_root):
    dataset = spec().build().load(data_root, SPLIT, protocol(max_words=2))
    assert dataset.samples[0].captions[0] == "item 0"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"image": "val2014/COCO_val2014_000000000000.jpg"}, "field 'caption' missing"),
        ({"image": "val2014/COCO_val2014_000000000000.jpg", "caption": "a dog"}, r"field 'caption' has type str \(expected list of str\)"),
        ({"image": "val2014/COCO_val2014_000000000000.jpg", "caption": []}, "field 'caption' is empty"),
        ({"image": "../../secret.jpg", "caption": ["x"]}, "escapes the media folder"),
        ({"image": "val2014/absent.jpg", "caption": ["x"]}, "not found"),
    ],
)
def test_bad_record_names_file_and_record_or_is_skipped(data_root, record, message):
    path = data_root / "coco" / "annotations" / "coco_karpathy_test.json"
    records = json.loads(path.read_text())
    records[3] = record
    path.write_text(json.dumps(records))
    task = spec().build()
    with pytest.raises(DataError, match=rf"coco_karpathy_test\.json: record 3: .*{message}"):
        task.load(data_root, SPLIT, protocol())
    dataset = task.load(data_root, SPLIT, protocol(), skip_bad=True)
    assert len(dataset.samples) == ITEMS - 1 and len(dataset.skipped) == 1
    assert re.search(message, dataset.skipped[0].reason)


def test_duplicate_image_is_an_error(data_root):
    path = data_root / "coco" / "annotations" / "coco_karpathy_test.json"
    records = json.loads(path.read_text())
    path.write_text(json.dumps(records + [records[2]]))
    with pytest.raises(DataError, match="duplicate sample id 'val2014/COCO_val2014_000000000002.jpg'"):
        spec().build().load(data_root, SPLIT, protocol())


def test_flickr_reads_its_own_files(tmp_path):
    root = tmp_path / "data" / "flickr30k"
    write_image(root / "images" / "flickr30k-images" / "1.jpg", colour=colour_of(1))
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "flickr30k_test.json").write_text(
        json.dumps([{"image": "flickr30k-images/1.jpg", "caption": ["A dog!"]}])
    )
    for name in ("flickr30k_retrieval", "flickr30k_retrieval_zeroshot"):
        task = spec(name).build()
        dataset = task.load(tmp_path / "data", "karpathy_test_1k", spec(name).protocol)
        assert dataset.samples[0].captions == ("a dog",)


# -- evaluation -----------------------------------------------------------------------------------


def test_oracle_itc_gives_perfect_recall_without_a_matcher(data_root, tmp_path):
    model = CircleModel()
    assert not isinstance(model, ImageTextMatcher)
    task, dataset, ctx = evaluate(data_root, model, tmp_path / "run")
    assert ctx.protocol["rerank"] is False  # resolved from "auto" and recorded
    metrics = task.score(dataset, ctx.predictions.predictions, ctx.protocol)
    assert metrics["txt_r1"] == metrics["img_r1"] == metrics["r_mean"] == 100.0
    prediction = ctx.predictions.predictions[dataset.samples[2].sample_id]
    assert prediction["i2t"]["rank"] == 1 and prediction["i2t"]["top"][:3] == [6, 7, 8]
    assert [query["top"][0] for query in prediction["t2i"]] == [2, 2, 2]


def test_rerank_true_without_matcher_is_refused(data_root, tmp_path):
    with pytest.raises(CapabilityError, match="rerank=true needs a model with ImageTextMatcher"):
        evaluate(data_root, CircleModel(), tmp_path / "run", protocol(rerank="true"))


@pytest.mark.parametrize("itm", [next_item_wins, own_item_wins])
def test_rerank_metrics_equal_brute_force_over_full_matrices(data_root, tmp_path, itm):
    model = CircleModel(itm=itm)
    task, dataset, ctx = evaluate(data_root, model, tmp_path / "run")
    assert ctx.protocol["rerank"] is True
    metrics = task.score(dataset, ctx.predictions.predictions, ctx.protocol)
    expected = brute_force_metrics(model, data_root, protocol()["k_test"])
    assert metrics == pytest.approx(expected)
    if itm is next_item_wins:
        # The ITM head overrules the (perfect) ITC order: the re-rank was applied.
        assert metrics["txt_r1"] < 50 and metrics["img_r1"] < 50


def test_rerank_scores_each_pair_once_in_batches_mixing_images(data_root, tmp_path):
    model = CircleModel(itm=next_item_wins)
    evaluate(data_root, model, tmp_path / "run", batch_size=4)  # 4 * 8 = 32 pairs per call
    sizes = [len(call) for call in model.match_calls]
    assert all(size == 32 for size in sizes[:-1]) and 0 < sizes[-1] <= 32
    pairs = [pair for call in model.match_calls for pair in call]
    assert len(pairs) == len(set(pairs)), "a pair was scored twice"
    assert any(len({image for image, _, _ in call}) > 1 for call in model.match_calls)
    # Exactly the union of both directions' top-k shortlists.
    k = protocol()["k_test"]
    visual = model.encode_images(model.preprocess([load_image(data_root / "coco" / "images" / f"val2014/COCO_val2014_{i:012d}.jpg") for i in range(ITEMS)]))
    texts = model.encode_texts([f"item {i} view {j}" for i in range(ITEMS) for j in range(VIEWS)])
    sims = visual.embeds @ texts.embeds.T
    wanted = {(i, t // VIEWS, t % VIEWS) for i in range(ITEMS) for t in sims[i].topk(k).indices.tolist()}
    wanted |= {(i, t // VIEWS, t % VIEWS) for t in range(ITEMS * VIEWS) for i in sims[:, t].topk(min(k, ITEMS)).indices.tolist()}
    assert set(pairs) == wanted
    assert len(pairs) < ITEMS * k + ITEMS * VIEWS * min(k, ITEMS)  # shared pairs were not scored twice


def test_constant_model_gets_no_credit_for_ties(data_root, tmp_path):
    task, dataset, ctx = evaluate(data_root, ConstantModel(), tmp_path / "run")
    metrics = task.score(dataset, ctx.predictions.predictions, ctx.protocol)
    levels = task.reference_levels(dataset, ctx.protocol)
    for name, value in metrics.items():
        assert value <= levels[name] + 1e-9, name
    assert metrics["txt_r1"] == metrics["img_r1"] == 0.0


def test_resume_skips_finished_queries(data_root, tmp_path):
    full_model = CircleModel(itm=next_item_wins)
    task, dataset, full = evaluate(data_root, full_model, tmp_path / "full")
    full_pairs = sum(len(call) for call in full_model.match_calls)
    stop_at = len(full_model.match_calls) * 2 // 3

    class Interrupting(CircleModel):
        def _match(self, visual, texts, pairs):
            if len(self.match_calls) == stop_at:
                raise KeyboardInterrupt
            return super()._match(visual, texts, pairs)

    with pytest.raises(KeyboardInterrupt):
        evaluate(data_root, Interrupting(itm=next_item_wins), tmp_path / "cut")
    finished = PredictionStore(tmp_path / "cut").predictions
    assert 0 < len(finished) < ITEMS, len(finished)

    resumed_model = CircleModel(itm=next_item_wins)
    _, _, resumed = evaluate(data_root, resumed_model, tmp_path / "cut")
    assert resumed.predictions.predictions == full.predictions.predictions
    resumed_pairs = sum(len(call) for call in resumed_model.match_calls)
    assert 0 < resumed_pairs < full_pairs
    scored_images = {image for call in resumed_model.match_calls for image, _, _ in call}
    assert scored_images  # the pending images' queries were re-ranked

    again = CircleModel(itm=next_item_wins)
    evaluate(data_root, again, tmp_path / "cut")
    assert again.match_calls == []


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:40]), "cannot decode image"),
        (lambda path: path.write_bytes(b""), "image file is empty"),
    ],
)
def test_bad_image_stops_the_run_naming_the_file_or_is_skipped(data_root, tmp_path, damage, message):
    damage(data_root / "coco" / "images" / "val2014" / "COCO_val2014_000000000005.jpg")
    with pytest.raises(DataError, match=rf"COCO_val2014_000000000005\.jpg: {re.escape(message)}"):
        evaluate(data_root, CircleModel(itm=own_item_wins), tmp_path / "strict")
    task, dataset, ctx = evaluate(data_root, CircleModel(itm=own_item_wins), tmp_path / "lenient", skip_bad=True)
    sample_id = "val2014/COCO_val2014_000000000005.jpg"
    assert sample_id in ctx.predictions.skipped and message in ctx.predictions.skipped[sample_id]
    assert len(ctx.predictions.predictions) == ITEMS - 1
    metrics = task.score(dataset, ctx.predictions.predictions, ctx.protocol)
    assert metrics["txt_r1"] == metrics["img_r1"] == 100.0


def test_check_lists_every_unreadable_image(data_root):
    for item in (1, 4):
        (data_root / "coco" / "images" / "val2014" / f"COCO_val2014_{item:012d}.jpg").write_bytes(b"")
    problems = spec().build().check(data_root, SPLIT, protocol())
    assert len(problems) == 2
    assert all("image file is empty" in problem for problem in problems)


def test_per_sample_metrics_average_to_the_metrics(data_root, tmp_path):
    task, dataset, ctx = evaluate(data_root, CircleModel(itm=next_item_wins), tmp_path / "run")
    predictions = ctx.predictions.predictions
    metrics = task.score(dataset, predictions, ctx.protocol)
    per_sample = task.per_sample_metrics(dataset, predictions, ctx.protocol)
    assert set(per_sample) == set(dataset.sample_ids)
    for name in ("txt_r1", "txt_r5", "img_r1", "img_r10"):
        assert np.mean([values[name] for values in per_sample.values()]) == pytest.approx(metrics[name])


def test_limit_keeps_ranks_consistent(data_root, tmp_path):
    task = spec().build()
    dataset = task.load(data_root, SPLIT, protocol())
    dataset.samples = dataset.samples[:3]
    (tmp_path / "run").mkdir()
    store = PredictionStore(tmp_path / "run")
    ctx = RunContext(protocol=protocol(), predictions=store, batch_size=2)
    task.evaluate(CircleModel(itm=own_item_wins), dataset, ctx)
    assert len(store.predictions) == 3
    assert task.score(dataset, store.predictions, ctx.protocol)["r_mean"] == 100.0


# -- reference levels -----------------------------------------------------------------------------


def test_chance_recall_matches_enumeration():
    candidates, targets = 6, 2
    for k in (1, 2, 3, 6):
        hits = [any(p.index(t) < k for t in range(targets)) for p in itertools.permutations(range(candidates))]
        assert chance_recall_at_k(candidates, targets, k) == pytest.approx(100 * np.mean(hits))


def test_reference_levels_use_the_split_sizes(data_root):
    task = spec().build()
    dataset = task.load(data_root, SPLIT, protocol())
    levels = task.reference_levels(dataset, protocol())
    assert levels["img_r1"] == pytest.approx(100 / ITEMS)
    assert levels["txt_r1"] == pytest.approx(100 * VIEWS / (ITEMS * VIEWS))
    assert levels["img_r10"] == 100.0


# -- blip-tiny on the toy suite -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "split"), [("coco_retrieval", "karpathy_test_5k"), ("flickr30k_retrieval_zeroshot", "karpathy_test_1k")]
)
def test_blip_tiny_on_the_toy_suite(tmp_path, name, split):
    from harness.specs import ModelRequest
    from harness.toy.suite import BUILDERS
    from harness_plugins.blip.plugin import MODEL_SPECS

    task_spec = spec(name)
    BUILDERS[task_spec.data_dir](tmp_path / "data" / task_spec.data_dir, 0)
    tiny = next(m for m in MODEL_SPECS if m.name == "blip-tiny")
    proto = {**task_spec.protocol, **tiny.protocol_overrides}
    task = task_spec.build()
    assert task.check(tmp_path / "data", split, proto) == []
    dataset = task.load(tmp_path / "data", split, proto)
    runs = []
    for attempt in range(2):
        model = tiny.build(ModelRequest(task=name, protocol=proto, seed=0))
        run_dir = tmp_path / f"run{attempt}"
        run_dir.mkdir()
        store = PredictionStore(run_dir)
        ctx = RunContext(protocol=dict(proto), predictions=store, batch_size=8)
        task.evaluate(model, dataset, ctx)
        store.close()
        runs.append(store.predictions)
    assert ctx.protocol["rerank"] is True
    assert len(runs[0]) == len(dataset.samples) == 30
    assert runs[0] == runs[1], "same seed, same predictions"
    metrics = task.score(dataset, runs[0], ctx.protocol)
    assert set(metrics) == set(task.reference_levels(dataset, ctx.protocol))
    assert all(0.0 <= value <= 100.0 for value in metrics.values())
