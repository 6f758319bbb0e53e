"""BLIP-2 against transformers' own classes on tiny seeded models (fp32): ITC and ITM scores equal
``Blip2ForImageTextRetrieval``'s, the retrieval task's ranking equals LAVIS's score matrices built
from them, and captions and answers equal ``Blip2ForConditionalGeneration.generate``."""

import json
import subprocess

import numpy as np
import pytest
import torch
from cli_process import harness_command, harness_env
from PIL import Image

from harness.capabilities import (
    CAPABILITIES,
    GenerationSettings,
    ImageTextSimilarity,
    image_text_similarity,
)
from harness.context import RunContext
from harness.errors import CapabilityError, ModelLoadError
from harness.metrics.retrieval import image_text_retrieval_metrics
from harness.predictions import PredictionStore
from harness.specs import ModelRequest
from harness_plugins.blip2.catalog import GENERATION, RETRIEVAL, TASK_PROTOCOLS, WEIGHTS
from harness_plugins.blip2.plugin import MODEL_SPECS
from harness_plugins.blip2.tiny import LM_IMAGE
from harness_tasks.specs import TASK_SPECS

SIZE = 32
CAPTIONS = (
    ("a red circle on the left", "one red disk"),
    ("two blue squares at the top", "blue squares"),
    ("a green star in the middle", "a star"),
    ("three yellow triangles", "yellow triangles at the bottom of the picture"),
)


def tiny(task: str, **protocol):
    spec = next(m for m in MODEL_SPECS if m.name == "blip2-tiny")
    task_spec = next(t for t in TASK_SPECS if t.name == task)
    merged = {**task_spec.protocol, **spec.protocol_for(task), **protocol}
    return spec.build(ModelRequest(task=task, protocol=merged, seed=0)), merged


def images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(count)]


@pytest.fixture(scope="module")
def retrieval():
    model, _ = tiny("coco_retrieval")
    return model


@pytest.fixture(scope="module")
def generation():
    model, _ = tiny("coco_captioning")
    return model


def test_retrieval_model_offers_the_retrieval_capabilities(retrieval):
    for name in ("ImagePreprocessor", "ImageEncoder", "ImageTextEmbedder", "ImageTextMatcher"):
        assert isinstance(retrieval, CAPABILITIES[name]), name
    assert isinstance(retrieval, ImageTextSimilarity)
    assert not isinstance(retrieval, CAPABILITIES["Captioner"])


def test_itc_equals_transformers_max_over_queries(retrieval):
    pixels = retrieval.preprocess(images(3))
    texts = [caption for pair in CAPTIONS for caption in pair]
    visual = retrieval.encode_images(pixels)
    features = retrieval.encode_texts(texts)
    assert visual.embeds.shape == (3, 4, 16), "one embedding per query token"
    ours = image_text_similarity(retrieval, visual, features)
    with torch.no_grad():
        expected = retrieval.module(
            pixel_values=pixels, input_ids=features.input_ids, attention_mask=features.attention_mask,
            use_image_text_matching_head=False,
        ).logits_per_image
    assert ours.shape == (3, len(texts))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    single_query = (visual.embeds[:, 0] @ features.embeds.T)
    assert not torch.allclose(ours, single_query), "the maximum over queries, not the first query"


def test_itm_equals_transformers_mean_match_logit(retrieval):
    pixels = retrieval.preprocess(images(3))
    texts = [caption for pair in CAPTIONS for caption in pair]
    visual = retrieval.encode_images(pixels)
    features = retrieval.encode_texts(texts)
    pairs = torch.tensor([[0, 0], [0, 7], [1, 3], [2, 5], [2, 0], [1, 6]])
    ours = retrieval.match(visual, features, pairs)
    with torch.no_grad():
        expected = retrieval.module(
            pixel_values=pixels[pairs[:, 0]], input_ids=features.input_ids[pairs[:, 1]],
            attention_mask=features.attention_mask[pairs[:, 1]], use_image_text_matching_head=True,
        ).logits_per_image[:, 1]
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def lavis_score_matrices(model, pixels, features, k):
    """LAVIS's ``compute_sim_matrix`` written plainly over transformers' outputs: each query's top
    k by ITC get ITM + ITC, everything else -100."""
    with torch.no_grad():
        itc = model.module(
            pixel_values=pixels, input_ids=features.input_ids, attention_mask=features.attention_mask,
            use_image_text_matching_head=False,
        ).logits_per_image

        def itm(image_rows, text_rows):
            return model.module(
                pixel_values=pixels[image_rows], input_ids=features.input_ids[text_rows],
                attention_mask=features.attention_mask[text_rows], use_image_text_matching_head=True,
            ).logits_per_image[:, 1]

        i2t = torch.full(itc.shape, -100.0)
        for i in range(itc.shape[0]):
            values, idx = itc[i].topk(k)
            i2t[i, idx] = itm(torch.full((k,), i), idx) + values
        t2i = torch.full(itc.T.shape, -100.0)
        for t in range(itc.shape[1]):
            values, idx = itc[:, t].topk(k)
            t2i[t, idx] = itm(idx, torch.full((k,), t)) + values
    return i2t.numpy(), t2i.numpy()


def test_retrieval_task_ranks_as_lavis(tmp_path):
    model, protocol = tiny("coco_retrieval", k_test=3)
    root = tmp_path / "data"
    records = []
    for index, image in enumerate(images(len(CAPTIONS), seed=1)):
        name = f"val2014/COCO_val2014_{index:012d}.png"
        (root / "coco" / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / "coco" / "images" / name)
        records.append({"image": name, "caption": list(CAPTIONS[index])})
    (root / "coco" / "annotations").mkdir(parents=True)
    (root / "coco" / "annotations" / "coco_karpathy_test.json").write_text(json.dumps(records))
    task = next(t for t in TASK_SPECS if t.name == "coco_retrieval").build()
    dataset = task.load(root, "karpathy_test_5k", protocol)
    (tmp_path / "run").mkdir()
    store = PredictionStore(tmp_path / "run")
    ctx = RunContext(protocol=dict(protocol), predictions=store, batch_size=2)
    task.evaluate(model, dataset, ctx)
    store.close()
    metrics = task.score(dataset, store.predictions, ctx.protocol)

    pixels = model.preprocess([Image.open(sample.images[0]) for sample in dataset.samples])
    features = model.encode_texts([caption for sample in dataset.samples for caption in sample.captions])
    i2t, t2i = lavis_score_matrices(model, pixels, features, k=3)
    img2txt = [[2 * i, 2 * i + 1] for i in range(len(CAPTIONS))]
    txt2img = [t // 2 for t in range(2 * len(CAPTIONS))]
    assert ctx.protocol["rerank"] is True
    assert metrics == pytest.approx(image_text_retrieval_metrics(i2t, img2txt, txt2img, t2i_scores=t2i))


def transformers_generate(model, pixels, prompts, **kwargs):
    """``Blip2ForConditionalGeneration.generate`` with the image placeholders and the prompts as
    its processor lays them out (left padding), decoded after the prompt."""
    tokenizer = model.tokenizer
    tokenizer.padding_side = "left"
    try:
        encoded = tokenizer(prompts, return_tensors="pt", padding="longest")
    finally:
        tokenizer.padding_side = "right"
    queries = model.module.config.num_query_tokens
    image_ids = torch.full((len(prompts), queries), tokenizer.convert_tokens_to_ids(LM_IMAGE))
    input_ids = torch.cat([image_ids, encoded["input_ids"]], dim=1)
    attention_mask = torch.cat([torch.ones_like(image_ids), encoded["attention_mask"]], dim=1)
    with torch.no_grad():
        out = model.module.generate(
            pixel_values=pixels, input_ids=input_ids, attention_mask=attention_mask,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **kwargs,
        )
    return [text.strip() for text in tokenizer.batch_decode(out[:, input_ids.shape[1] :], skip_special_tokens=True)]


def test_captions_equal_transformers_generate(generation):
    pixels = generation.preprocess(images(3, seed=2))
    settings = GenerationSettings(num_beams=3, max_length=12, min_length=7, prompt="a photo of")
    ours = generation.caption(generation.encode_images(pixels), settings)
    prompt_length = 4  # </s> a photo of
    expected = transformers_generate(
        generation, pixels, ["a photo of"] * 3, num_beams=3, max_new_tokens=12 - prompt_length,
        min_new_tokens=7 - prompt_length, length_penalty=1.0, do_sample=False,
    )
    assert ours == expected
    assert all(len(caption.split()) >= 3 for caption in ours), "min_length counts the prompt's 4 tokens"


def test_answers_equal_transformers_generate_in_any_batch():
    model, protocol = tiny("vqav2")
    assert (protocol["mode"], protocol["prompt"], protocol["length_penalty"]) == (
        "generate", "Question: {} Short answer:", 0.0,
    )
    pixels = model.preprocess(images(2, seed=3))
    questions = ["what colour is the star", "how many squares are there at the top of the picture"]
    settings = GenerationSettings(num_beams=5, max_length=6, min_length=1, prompt=protocol["prompt"], length_penalty=0.0)
    visual = model.encode_images(pixels)
    batched = model.answer(visual, questions, settings)
    for row, question in enumerate(questions):
        alone = model.answer(
            type(visual)(embeds=None, tokens=visual.tokens[row : row + 1]), [question], settings
        )
        expected = transformers_generate(
            model, pixels[row : row + 1], [settings.prompt.format(question)], num_beams=5, max_new_tokens=6,
            min_new_tokens=1, length_penalty=0.0, do_sample=False,
        )
        assert alone == expected == [batched[row]]
    with pytest.raises(CapabilityError, match="mode=generate"):
        model.rank_answers(visual, questions, ["yes", "no"], 2)


def test_preset_protocol_is_lavis_and_recorded_per_task():
    spec = next(m for m in MODEL_SPECS if m.name == "blip2")
    assert spec.protocol_for("coco_retrieval")["image_size"] == 364
    assert spec.protocol_for("coco_retrieval")["k_test"] == 128
    assert spec.protocol_for("vqav2")["image_size"] == 224
    assert spec.protocol_for("coco_captioning") == {**TASK_PROTOCOLS["coco_captioning"]}
    assert spec.protocol_for("coco_captioning")["prompt"] == "a photo of"
    assert WEIGHTS["flickr30k_retrieval_zeroshot"] == WEIGHTS["coco_retrieval"] == "Salesforce/blip2-itm-vit-g-coco"


def test_missing_checkpoint_names_the_hub_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    spec = next(m for m in MODEL_SPECS if m.name == "blip2")
    with pytest.raises(ModelLoadError, match="Salesforce/blip2-itm-vit-g-coco"):
        spec.build(ModelRequest(task="coco_retrieval", protocol=spec.protocol_for("coco_retrieval")))
    with pytest.raises(ModelLoadError, match="released no checkpoint"):
        spec.build(ModelRequest(task="flickr30k_retrieval", protocol={}))


def test_a_run_names_every_missing_checkpoint_before_loading_any(tmp_path, toy_cache):
    env = harness_env(toy_cache, HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub"))
    done = subprocess.run(
        harness_command(["run", "--model", "blip2", "--task", "coco_retrieval,coco_captioning,vqav2", "--data", "toy",
                         "--output", str(tmp_path / "runs")]),
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: 3 checkpoint(s)")
    for repo in {WEIGHTS[task] for task in ("coco_retrieval", "coco_captioning", "vqav2")}:
        assert f"`hf download {repo}`" in done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_saved_directory_loads_and_a_wrong_head_is_refused(tmp_path, retrieval, generation):
    retrieval.module.save_pretrained(tmp_path / "itm")
    retrieval.tokenizer.save_pretrained(tmp_path / "itm")
    spec = next(m for m in MODEL_SPECS if m.name == "blip2")
    protocol = {**spec.protocol_for("coco_retrieval"), "image_size": SIZE}
    loaded = spec.build(ModelRequest(task="coco_retrieval", protocol=protocol, weights=str(tmp_path / "itm")))
    pixels = loaded.preprocess(images(2))
    torch.testing.assert_close(loaded.encode_images(pixels).embeds, retrieval.encode_images(pixels).embeds)
    assert loaded.weights_files == [tmp_path / "itm" / "model.safetensors"]
    with pytest.raises(ModelLoadError, match=f"a BLIP-2 {RETRIEVAL} model, but this task needs a {GENERATION}"):
        spec.build(ModelRequest(task="vqav2", protocol=protocol, weights=str(tmp_path / "itm")))


def test_harness_list_shows_the_blip2_protocol_per_task(tmp_path):
    result = subprocess.run(
        harness_command(["list", "models"]), env=harness_env(tmp_path / "cache"), capture_output=True, text=True,
        timeout=120, check=True,
    )
    assert "blip2 " in result.stdout and "blip2-tiny" in result.stdout
    assert (
        "protocol changes for vqav2: image_size=224, mode='generate', prompt='Question: {} Short answer:', "
        "num_beams=5, max_length=10, min_length=1, length_penalty=0.0"
    ) in result.stdout
    assert "protocol changes for coco_retrieval: image_size=364, k_test=128" in result.stdout


def test_weights_that_do_not_fit_are_refused_naming_the_keys(tmp_path, retrieval):
    from safetensors.torch import load_file, save_file

    retrieval.module.save_pretrained(tmp_path / "itm")
    retrieval.tokenizer.save_pretrained(tmp_path / "itm")
    weights = tmp_path / "itm" / "model.safetensors"
    tensors = load_file(weights)
    del tensors["itm_head.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    spec = next(m for m in MODEL_SPECS if m.name == "blip2")
    protocol = {**spec.protocol_for("coco_retrieval"), "image_size": SIZE}
    with pytest.raises(ModelLoadError, match="weights do not fit Blip2ForImageTextRetrieval: missing keys itm_head.weight"):
        spec.build(ModelRequest(task="coco_retrieval", protocol=protocol, weights=str(tmp_path / "itm")))


@pytest.mark.slow
def test_blip2_tiny_runs_retrieval_captioning_and_vqa_end_to_end(tmp_path, toy_cache):
    """The issue's command: the untrained tiny model through the real CLI, each task recording
    the BLIP-2 protocol it ran with."""
    output = tmp_path / "runs"
    done = subprocess.run(
        harness_command(["run", "--model", "blip2-tiny", "--task", "coco_retrieval,coco_captioning,vqav2", "--data",
                         "toy", "--limit", "6", "--quiet", "--output", str(output)]),
        capture_output=True, text=True, env=harness_env(toy_cache), timeout=600,
    )
    assert done.returncode == 0, done.stderr
    records = {r["task"]: r for r in (json.loads(p.read_text()) for p in output.glob("*/result.json"))}
    assert set(records) == {"coco_retrieval", "coco_captioning", "vqav2"}
    assert records["coco_captioning"]["protocol"]["prompt"] == "a photo of"
    assert records["vqav2"]["protocol"]["prompt"] == "Question: {} Short answer:"
    assert records["vqav2"]["protocol"]["mode"] == "generate"
    assert records["coco_retrieval"]["protocol"]["k_test"] == 128
    assert all(r["model"] == "blip2-tiny" and r["samples"]["evaluated"] == 6 for r in records.values())
