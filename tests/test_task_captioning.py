"""COCO captioning and NoCaps: loading BLIP's files, generation settings, COCO metrics through the
real pycocoevalcap scorers, the result file, resume, bad input, and blip-tiny on the toy suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from image_task_doubles import (
    COLOURS,
    ColourEncoder,
    blip_tiny,
    evaluate_and_score,
    make_context,
    task_spec,
    write_corrupt_image,
)
from media_files import write_image

from harness.capabilities import GenerationSettings, VisualFeatures
from harness.errors import ConfigError, DataError
from harness.media import load_image
from harness.metrics.diversity import distinct_n, mbleu4, vocabulary_size
from harness.toy.suite import BUILDERS
from harness_tasks.captioning import coco_image_id, generation_settings, most_frequent_caption, spice_setting

NO_SPICE = {"spice": False}
DIVERSITY = ("distinct_1", "distinct_2", "vocabulary_size")
IMAGES = {101: "red", 102: "green", 103: "blue", 104: "yellow", 105: "red", 106: "green"}


class ColourCaptioner(ColourEncoder):
    """Captions a flat image by its colour; remembers the settings it was given."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        super().__init__()
        self.settings: list[GenerationSettings] = []
        self.interrupt_after = interrupt_after

    def caption(self, visual: VisualFeatures, settings: GenerationSettings) -> list[str]:
        if self.interrupt_after is not None and len(self.settings) == self.interrupt_after:
            raise KeyboardInterrupt
        self.settings.append(settings)
        self.calls["captions"] += len(visual.tokens)
        return [f"a {name} square" for name in self.colour_names(visual)]


class BlueCaptioner(ColourCaptioner):
    def caption(self, visual: VisualFeatures, settings: GenerationSettings) -> list[str]:
        return ["a blue square"] * len(visual.tokens)


def references(colour: str) -> list[str]:
    return [f"a {colour} square", f"a {colour} square on a plain background", f"the square is {colour}", "a square"]


def coco_path(image_id: int) -> str:
    return f"val2014/COCO_val2014_{image_id:012d}.jpg"


def write_coco(root: Path, images: dict[int, str] = IMAGES, records: list | None = None) -> Path:
    """coco/images/val2014/*.jpg, coco_karpathy_test.json and coco_karpathy_test_gt.json."""
    coco = root / "coco"
    for image_id, colour in images.items():
        write_image(coco / "images" / coco_path(image_id), COLOURS[colour])
    if records is None:
        records = [{"image": coco_path(i), "caption": references(c)} for i, c in images.items()]
    gt = {
        "images": [{"id": i} for i in images],
        "annotations": [
            {"image_id": i, "caption": caption, "id": n}
            for n, (i, caption) in enumerate((i, cap) for i, c in images.items() for cap in references(c))
        ],
    }
    (coco / "annotations").mkdir(parents=True, exist_ok=True)
    (coco / "annotations" / "coco_karpathy_test.json").write_text(json.dumps(records))
    (coco / "annotations" / "coco_karpathy_test_gt.json").write_text(json.dumps(gt))
    return coco


def write_nocaps(root: Path) -> None:
    nocaps = root / "nocaps"
    domains = ["in-domain", "in-domain", "near-domain", "near-domain", "out-domain", "out-domain"]
    images, annotations, records = [], [], []
    for img_id, (colour, domain) in enumerate(zip(IMAGES.values(), domains, strict=True)):
        name = f"{img_id:04x}abcd.jpg"
        write_image(nocaps / "images" / name, COLOURS[colour])
        records.append({"image": name, "img_id": img_id})
        images.append({"id": img_id, "file_name": name, "domain": domain})
        annotations += [{"image_id": img_id, "id": len(annotations) + k, "caption": c} for k, c in enumerate(references(colour))]
    (nocaps / "annotations").mkdir(parents=True)
    (nocaps / "annotations" / "nocaps_val.json").write_text(json.dumps(records))
    (nocaps / "annotations" / "nocaps_val_4500_captions.json").write_text(json.dumps({"images": images, "annotations": annotations}))


def load(tmp_path: Path, name: str = "coco_captioning", split: str | None = None, skip_bad: bool = False):
    spec = task_spec(name)
    task = spec.build()
    return task, task.load(tmp_path, split or spec.default_split, spec.protocol, skip_bad=skip_bad), spec


def test_coco_captions_are_scored_with_the_coco_metrics_and_beat_the_constant_caption(tmp_path):
    write_coco(tmp_path)
    task, dataset, spec = load(tmp_path)
    model = ColourCaptioner()
    ctx = make_context(tmp_path / "run", {**spec.protocol, **NO_SPICE})

    predictions, metrics = evaluate_and_score(task, dataset, model, ctx)

    assert predictions == {str(i): f"a {c} square" for i, c in IMAGES.items()}
    assert model.calls["images"] == len(IMAGES)
    assert set(model.settings) == {
        GenerationSettings(num_beams=3, max_length=20, min_length=5, repetition_penalty=1.0,
                           sample=False, top_p=0.9, prompt="a picture of ", length_normalization="blip")
    }
    assert set(metrics) == {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider", *DIVERSITY}
    # Every caption is one of its image's references: unigram precision and ROUGE-L are perfect.
    assert metrics["bleu1"] == pytest.approx(100.0, abs=1e-6)
    assert metrics["rouge_l"] == pytest.approx(100.0)

    levels = task.reference_levels(dataset, ctx.protocol)
    assert set(levels) == set(metrics)
    assert most_frequent_caption(dataset.extra["references"], 20) == "a square"
    assert levels["cider"] < metrics["cider"]
    # "a <colour> square" for 6 images: 6 of 18 words and 8 of 12 bigrams distinct, 6 words;
    # the constant "a square": 2 of 12 words, 1 of 6 bigrams, 2 words.
    assert {key: metrics[key] for key in DIVERSITY} == pytest.approx(
        {"distinct_1": 100 * 6 / 18, "distinct_2": 100 * 8 / 12, "vocabulary_size": 6.0}
    )
    assert {key: levels[key] for key in DIVERSITY} == pytest.approx(
        {"distinct_1": 100 * 2 / 12, "distinct_2": 100 * 1 / 6, "vocabulary_size": 2.0}
    )


def test_nocaps_is_scored_per_domain_with_the_nocaps_repetition_penalty(tmp_path):
    write_nocaps(tmp_path)
    task, dataset, spec = load(tmp_path, "nocaps")
    model = ColourCaptioner()
    ctx = make_context(tmp_path / "run", {**spec.protocol, **NO_SPICE})

    _, metrics = evaluate_and_score(task, dataset, model, ctx)

    assert {s.repetition_penalty for s in model.settings} == {1.1}
    assert {"in_cider", "near_cider", "out_cider", "overall_cider", "overall_bleu4"} <= set(metrics)
    assert not any(key.endswith("spice") for key in metrics)
    # Every caption is a reference of its image, in every domain.
    assert metrics["in_bleu1"] == metrics["near_bleu1"] == metrics["out_bleu1"] == pytest.approx(100.0, abs=1e-6)

    (path,) = task.write_outputs(dataset, {str(i): "x" for i in range(6)}, tmp_path)
    assert json.loads(path.read_text()) == [{"image_id": i, "caption": "x"} for i in range(6)]


def test_results_file_is_the_coco_result_format_keyed_by_the_file_name_number(tmp_path):
    write_coco(tmp_path)
    task, dataset, spec = load(tmp_path)
    ctx = make_context(tmp_path / "run", spec.protocol)
    task.evaluate(ColourCaptioner(), dataset, ctx)

    (path,) = task.write_outputs(dataset, ctx.predictions.predictions, tmp_path / "run")

    assert path.name == "coco_captioning_karpathy_test_captions.json"
    assert json.loads(path.read_text()) == [{"image_id": i, "caption": f"a {c} square"} for i, c in IMAGES.items()]


def test_a_resumed_run_captions_only_what_the_interrupted_run_left(tmp_path):
    write_coco(tmp_path)
    task, dataset, spec = load(tmp_path)
    first = ColourCaptioner(interrupt_after=1)
    ctx = make_context(tmp_path / "run", spec.protocol)
    with pytest.raises(KeyboardInterrupt):
        task.evaluate(first, dataset, ctx)
    ctx.predictions.close()

    second = ColourCaptioner()
    resumed = make_context(tmp_path / "run", spec.protocol)
    task.evaluate(second, dataset, resumed)
    assert second.calls["captions"] == len(IMAGES) - 2
    assert len(resumed.predictions.predictions) == len(IMAGES)
    resumed.predictions.close()

    third = ColourCaptioner()
    task.evaluate(third, dataset, make_context(tmp_path / "run", spec.protocol))
    assert third.calls == {}


def test_an_unreadable_image_stops_the_run_naming_the_file_or_is_skipped_and_counted(tmp_path):
    write_coco(tmp_path)
    bad = write_corrupt_image(tmp_path / "coco" / "images" / coco_path(103))
    task, dataset, spec = load(tmp_path)

    with pytest.raises(DataError, match=rf"{bad}.*sample 103"):
        task.evaluate(ColourCaptioner(), dataset, make_context(tmp_path / "strict", spec.protocol))

    ctx = make_context(tmp_path / "skip", spec.protocol, skip_bad=True)
    task.evaluate(ColourCaptioner(), dataset, ctx)
    assert list(ctx.predictions.skipped) == ["103"]
    assert str(bad) in ctx.predictions.skipped["103"]
    assert len(ctx.predictions.predictions) == len(IMAGES) - 1

    problems = task.check(tmp_path, "karpathy_test", spec.protocol)
    assert len(problems) == 1 and str(bad) in problems[0] and "103" in problems[0]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"caption": []}, r"record 6: field 'image' missing"),
        ({"image": 7}, r"record 6: field 'image' has type int \(expected str\)"),
        ({"image": "val2014/COCO_val2014_abc.jpg"}, r"record 6: cannot read an image id"),
        ({"image": coco_path(999)}, r"record 6: image id 999 has no reference captions"),
        ({"image": coco_path(101)}, r"duplicate"),
        ({"image": "../escape_5.jpg"}, r"record 6: media path '../escape_5.jpg' escapes"),
        ({"image": "val2014/COCO_val2014_000000000107.jpg"}, r"record 6: image .*COCO_val2014_000000000107.jpg' not found"),
    ],
)
def test_a_malformed_record_names_the_file_and_record_or_is_skipped(tmp_path, record, message):
    records = [{"image": coco_path(i), "caption": references(c)} for i, c in IMAGES.items()] + [record]
    coco = write_coco(tmp_path, records=records)
    if record.get("image") in ("val2014/COCO_val2014_abc.jpg", coco_path(999)):
        write_image(coco / "images" / record["image"])
    with pytest.raises(DataError, match=rf"coco_karpathy_test.json.*{message}"):
        load(tmp_path)

    _, dataset, _ = load(tmp_path, skip_bad=True)
    assert [s.image_id for s in dataset.samples] == list(IMAGES)
    assert [s.sample_id for s in dataset.skipped] == ["coco_karpathy_test.json[6]"]


def test_reference_file_problems_are_fatal_and_check_reports_them(tmp_path):
    coco = write_coco(tmp_path)
    gt = coco / "annotations" / "coco_karpathy_test_gt.json"
    gt.write_text(json.dumps({"images": [{"id": 101}], "annotations": [{"image_id": 101}]}))
    with pytest.raises(DataError, match=r"coco_karpathy_test_gt.json \(annotations\): record 0: field 'caption' missing"):
        load(tmp_path, skip_bad=True)
    gt.unlink()
    spec = task_spec("coco_captioning")
    (problem,) = spec.build().check(tmp_path, "karpathy_test", spec.protocol)
    assert "coco_karpathy_test_gt.json: annotation file not found" in problem


def test_image_ids_and_settings():
    assert coco_image_id("val2014/COCO_val2014_000000391895.jpg", Path("f.json"), 0) == 391895
    assert coco_image_id("12345.jpg", Path("f.json"), 0) == 12345
    with pytest.raises(DataError, match="f.json: record 3"):
        coco_image_id("val2014/cat.jpg", Path("f.json"), 3)
    assert spice_setting({"spice": "auto"}) is None
    assert spice_setting({"spice": True}) is True
    assert spice_setting({"spice": "False"}) is False  # how `--set spice=false` arrives
    with pytest.raises(ConfigError, match="spice"):
        spice_setting({"spice": "yes"})
    protocol = task_spec("nocaps").protocol
    assert generation_settings(protocol).length_normalization == "blip"
    assert generation_settings({**protocol, "length_normalization": "generated"}).length_normalization == "generated"
    with pytest.raises(ConfigError, match="length_normalization must be one of blip, generated"):
        generation_settings({**protocol, "length_normalization": "tf5"})
    with pytest.raises(ConfigError, match="unknown split 'test'"):
        task_spec("coco_captioning").build().load(Path("/nonexistent"), "test", {})


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    for data_dir in ("coco", "nocaps"):
        BUILDERS[data_dir](root / data_dir, 0)
    return root


@pytest.mark.parametrize(("name", "split"), [("coco_captioning", "karpathy_test"), ("coco_captioning", "karpathy_val"), ("nocaps", "val")])
def test_the_toy_suite_loads_and_checks_clean(toy_root, name, split):
    spec = task_spec(name)
    task = spec.build()
    dataset = task.load(toy_root, split, spec.protocol)
    assert len(dataset.samples) == 30 and not dataset.skipped
    assert all(len(refs) >= 5 for refs in dataset.extra["references"].values())
    assert task.check(toy_root, split, spec.protocol) == []


def test_blip_tiny_captions_the_toy_suite_deterministically(toy_root, tmp_path):
    spec = task_spec("coco_captioning")
    task = spec.build()
    runs = []
    for attempt in ("first", "second"):
        model, protocol = blip_tiny("coco_captioning", {**spec.protocol, **NO_SPICE})
        dataset = task.load(toy_root, "karpathy_test", protocol)
        dataset.samples = dataset.samples[:6]
        ctx = make_context(tmp_path / attempt, protocol, batch_size=4)
        task.evaluate(model, dataset, ctx)
        runs.append(dict(ctx.predictions.predictions))
    assert runs[0] == runs[1]
    assert len(runs[0]) == 6 and all(isinstance(c, str) for c in runs[0].values())
    metrics = task.score(dataset, runs[0], protocol)
    assert set(metrics) == {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider", *DIVERSITY}
    assert all(0.0 <= value <= 1000.0 for value in metrics.values())


def test_the_chance_caption_is_cut_to_the_protocol_length():
    # Every caption is unique, so the first one reached wins: a pathological 10,000-word one.
    references = {"1": ["word " * 10_000], "2": ["a dog on the grass"], "3": ["a red bus"]}
    assert most_frequent_caption(references, 20) == " ".join(["word"] * 20)
    assert most_frequent_caption({"1": ["A  Cat", "a cat"], "2": ["a dog"]}, 20) == "a cat"
    with pytest.raises(ValueError, match="max_words"):
        most_frequent_caption(references, 0)


def test_blip_tiny_nucleus_sampling_is_more_diverse_than_beam_search(toy_root):
    """BLIP section 4.3: sampled synthetic captions are more diverse than beam-searched ones.
    Three captions for each of four toy images, by beam search and by nucleus sampling (p 0.9)."""
    spec = task_spec("coco_captioning")
    model, protocol = blip_tiny("coco_captioning", spec.protocol)
    dataset = spec.build().load(toy_root, "karpathy_test", protocol)
    pixels = model.preprocess([load_image(sample.images[0]) for sample in dataset.samples[:4]])
    visual = model.encode_images(pixels)
    repeated = VisualFeatures(embeds=None, tokens=visual.tokens.repeat_interleave(3, dim=0))
    beam = model.caption(repeated, generation_settings(protocol))
    torch.manual_seed(0)
    nucleus = model.caption(repeated, GenerationSettings(num_beams=1, sample=True, top_p=0.9, prompt=protocol["prompt"]))

    def per_image(captions: list[str]) -> list[list[str]]:
        return [captions[i : i + 3] for i in range(0, len(captions), 3)]

    assert distinct_n(nucleus, 2) > distinct_n(beam, 2)
    assert vocabulary_size(nucleus) > vocabulary_size(beam)
    assert mbleu4(per_image(nucleus)) < mbleu4(per_image(beam))
