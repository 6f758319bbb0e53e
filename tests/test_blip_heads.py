"""Every BLIP head against a hand computation from the transformers parts: preprocessing, ITC,
ITM with ``[ENC]`` first, video pooling, captioning lengths and prompt, VQA generation and rank
mode, VisDial scoring, NLVR2, precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harness.capabilities import DialogContext, GenerationSettings
from harness.errors import ConfigError
from harness.specs import ModelRequest
from harness_plugins.blip.heads.captioning import BlipCaptionModel
from harness_plugins.blip.heads.retrieval import BlipRetrievalModel, dialog_text
from harness_plugins.blip.heads.verification import BlipNLVR2Verifier
from harness_plugins.blip.heads.vqa import BlipVQAModel, answer_scores
from harness_plugins.blip.presets import build_blip_tiny

SIZE = 64
ANSWERS = ["red", "two", "on the left side", "blue", "no", "three circles", "yes"]


def tiny(task: str, **protocol) -> object:
    return build_blip_tiny(ModelRequest(task=task, protocol={"image_size": SIZE, **protocol}, seed=7))


def pixels(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def retrieval() -> BlipRetrievalModel:
    return tiny("visdial", max_text_tokens=256, history_rounds=2)


@pytest.fixture(scope="module")
def captioner() -> BlipCaptionModel:
    return tiny("coco_captioning")


@pytest.fixture(scope="module")
def vqa() -> BlipVQAModel:
    return tiny("vqav2")


def enc_ids(model, text: str) -> torch.Tensor:
    ids = model.tokenizer(text, return_tensors="pt")["input_ids"]
    ids[0, 0] = model.tokenizer.convert_tokens_to_ids("[ENC]")
    return ids


def vision_tokens(model, image: torch.Tensor) -> torch.Tensor:
    return model.module.vision_model(pixel_values=image[None]).last_hidden_state


def test_preprocessing_matches_a_hand_computation(retrieval: BlipRetrievalModel) -> None:
    array = np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    batch = retrieval.preprocess([image, image.convert("L"), image.convert("RGBA")])
    assert batch.shape == (3, 3, SIZE, SIZE) and batch.dtype == torch.float32
    resized = image.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    grey = image.convert("L").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    for x, y in [(0, 0), (17, 40), (63, 63)]:
        rgb = resized.getpixel((x, y))
        expected = [(rgb[c] / 255 - mean[c]) / std[c] for c in range(3)]
        assert batch[0, :, y, x].tolist() == pytest.approx(expected, abs=1e-6)
        assert batch[2, :, y, x].tolist() == pytest.approx(expected, abs=1e-6)
        level = grey.getpixel((x, y))
        assert batch[1, :, y, x].tolist() == pytest.approx([(level / 255 - mean[c]) / std[c] for c in range(3)], abs=1e-6)


def test_blip_tokens_follow_bert_in_blips_order(retrieval: BlipRetrievalModel) -> None:
    tokenizer = retrieval.tokenizer
    assert tokenizer.convert_tokens_to_ids("[DEC]") == len(tokenizer) - 2 == tokenizer.bos_token_id
    assert tokenizer.convert_tokens_to_ids("[ENC]") == len(tokenizer) - 1 == retrieval.enc_token_id
    assert tokenizer.unk_token_id not in tokenizer("a purple hexagon moves slowly upward")["input_ids"]


def test_itc_embeddings_are_normalised_projections_of_cls(retrieval: BlipRetrievalModel) -> None:
    images = pixels(2)
    visual = retrieval.encode_images(images)
    texts = retrieval.encode_texts(["a red circle", "two blue squares at the top of the picture"])
    with torch.inference_mode():
        module = retrieval.module
        tokens = module.vision_model(pixel_values=images).last_hidden_state
        image_expected = F.normalize(module.vision_proj(tokens[:, 0]), dim=-1)
        hidden = module.text_encoder(input_ids=texts.input_ids, attention_mask=texts.attention_mask).last_hidden_state
        text_expected = F.normalize(module.text_proj(hidden[:, 0]), dim=-1)
    assert texts.input_ids[0, 0] == retrieval.tokenizer.cls_token_id
    torch.testing.assert_close(visual.tokens, tokens)
    torch.testing.assert_close(visual.embeds, image_expected)
    torch.testing.assert_close(texts.embeds, text_expected)
    torch.testing.assert_close(texts.embeds.norm(dim=-1), torch.ones(2))


def test_itm_matches_a_hand_computation_with_enc_first(retrieval: BlipRetrievalModel) -> None:
    images = pixels(3, seed=1)
    captions = ["a red circle", "two blue squares at the top of the picture", "a star"]
    visual = retrieval.encode_images(images)
    texts = retrieval.encode_texts(captions)
    pairs = torch.tensor([[2, 0], [0, 1], [1, 2], [0, 0], [2, 2], [1, 0]])
    scores = retrieval.match(visual, texts, pairs)
    module = retrieval.module
    with torch.inference_mode():
        for (image, text), score in zip(pairs.tolist(), scores, strict=True):
            ids = enc_ids(retrieval, captions[text])
            hidden = module.text_encoder(
                input_ids=ids, attention_mask=torch.ones_like(ids), encoder_hidden_states=vision_tokens(retrieval, images[image])
            ).last_hidden_state
            assert float(score) == pytest.approx(float(module.itm_head(hidden[:, 0])[0, 1]), abs=1e-5)
            cls_hidden = module.text_encoder(
                input_ids=retrieval.tokenizer(captions[text], return_tensors="pt")["input_ids"],
                encoder_hidden_states=vision_tokens(retrieval, images[image]),
            ).last_hidden_state
            assert float(score) != pytest.approx(float(module.itm_head(cls_hidden[:, 0])[0, 1]), abs=1e-6)
    retrieval.match_batch_size = 2
    try:
        torch.testing.assert_close(retrieval.match(visual, texts, pairs), scores, rtol=0, atol=1e-6)
    finally:
        del retrieval.match_batch_size


def test_a_video_of_identical_frames_embeds_like_its_image(retrieval: BlipRetrievalModel) -> None:
    image = pixels(1, seed=2)
    single = retrieval.encode_images(image)
    video = retrieval.encode_videos(image[None].repeat(2, 4, 1, 1, 1))
    torch.testing.assert_close(video.embeds, single.embeds.repeat(2, 1), rtol=0, atol=1e-6)
    assert video.tokens.shape == (2, 4 * single.tokens.shape[1], single.tokens.shape[2])
    torch.testing.assert_close(video.tokens[1], single.tokens[0].repeat(4, 1))


def test_video_embedding_normalises_the_mean_of_projected_frames(retrieval: BlipRetrievalModel) -> None:
    # BLIP's eval_retrieval_video.py: normalise(mean over frames of vision_proj(CLS)). Frames of
    # unequal projection norms weigh by their norm, so the mean of normalised embeddings differs.
    frames = torch.cat([pixels(1, seed=3), pixels(1, seed=4) * 0.2, pixels(1, seed=5) * 3.0])
    with torch.inference_mode():
        tokens = retrieval.module.vision_model(pixel_values=frames).last_hidden_state
        projected = retrieval.module.vision_proj(tokens[:, 0])
    norms = projected.norm(dim=-1)
    assert norms.max() / norms.min() > 1.05, "the frames should project to unequal norms"
    video = retrieval.encode_videos(frames[None])
    torch.testing.assert_close(video.embeds[0], F.normalize(projected.mean(dim=0), dim=0))
    mean_of_normalised = F.normalize(F.normalize(projected, dim=-1).mean(dim=0), dim=0)
    assert not torch.allclose(video.embeds[0], mean_of_normalised, atol=1e-4)


def test_dialog_text_joins_caption_recent_history_question_and_candidate() -> None:
    context = DialogContext("a red circle", (("is it big", "no"), ("what colour", "red"), ("any others", "one")), "where is it")
    assert dialog_text(context, "on the left", 2) == "a red circle what colour red any others one where is it on the left"
    assert dialog_text(context, "left", 0) == "a red circle where is it left"


def test_dialog_scores_are_itm_scores_of_the_dialog_texts(retrieval: BlipRetrievalModel) -> None:
    visual = retrieval.encode_images(pixels(2, seed=4))
    contexts = [
        DialogContext("a red circle", (("is it big", "no"),), "what colour is it"),
        DialogContext("two stars", (("are they blue", "yes"), ("how many", "two")), "where are they"),
    ]
    candidates = [["red", "blue", "no idea"], ["at the top", "left", "two"]]
    scores = retrieval.score_dialog_answers(visual, contexts, candidates)
    assert scores.shape == (2, 3)
    texts = [dialog_text(c, a, 2) for c, options in zip(contexts, candidates, strict=True) for a in options]
    pairs = torch.tensor([[i // 3, i] for i in range(6)])
    expected = retrieval.match(visual, retrieval.encode_texts(texts), pairs).view(2, 3)
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-6)


def test_long_dialogs_are_cut_from_the_left_keeping_the_candidate(retrieval: BlipRetrievalModel) -> None:
    text = "a circle " + "is it red yes " * 20 + "last answer"
    ids, _ = retrieval.tokenize([text], 8, truncation_side="left")
    tokens = retrieval.tokenizer.convert_ids_to_tokens(ids[0])
    assert tokens[0] == "[CLS]" and tokens[-3:] == ["last", "answer", "[SEP]"]


def greedy(decoder, start: torch.Tensor, states: torch.Tensor, max_length: int, min_length: int, penalty: float, sep: int) -> torch.Tensor:
    """Greedy decoding written out: repetition penalty on every token present, [SEP] forbidden
    below min_length, lengths counting every token including the start."""
    ids = start
    while ids.shape[1] < max_length:
        logits = decoder(input_ids=ids, encoder_hidden_states=states).logits[0, -1].clone()
        for token in set(ids[0].tolist()):
            logits[token] = logits[token] / penalty if logits[token] > 0 else logits[token] * penalty
        if ids.shape[1] < min_length:
            logits[sep] = -float("inf")
        ids = torch.cat([ids, logits.argmax().view(1, 1)], dim=1)
        if ids[0, -1] == sep:
            break
    return ids


def test_caption_counts_the_prompt_in_its_lengths_and_strips_it(captioner: BlipCaptionModel) -> None:
    images = pixels(2, seed=5)
    settings = GenerationSettings(num_beams=1, max_length=12, min_length=9, repetition_penalty=1.3, prompt="a picture of ")
    captions = captioner.caption(captioner.encode_images(images), settings)
    tokenizer = captioner.tokenizer
    prompt = tokenizer("a picture of ", return_tensors="pt")["input_ids"][:, :-1]
    prompt[0, 0] = tokenizer.bos_token_id
    with torch.inference_mode():
        for image, caption in zip(images, captions, strict=True):
            ids = greedy(captioner.module.text_decoder, prompt, vision_tokens(captioner, image), 12, 9, 1.3, tokenizer.sep_token_id)
            assert 9 <= ids.shape[1] <= 12
            assert caption == tokenizer.decode(ids[0, prompt.shape[1]:], skip_special_tokens=True).strip()
            assert not caption.startswith("a picture of")


def test_caption_beam_search_and_sampling_run_batched(captioner: BlipCaptionModel) -> None:
    visual = captioner.encode_images(pixels(3, seed=6))
    beams = captioner.caption(visual, GenerationSettings(num_beams=3, max_length=10, min_length=5, prompt="a picture of "))
    assert len(beams) == 3 and all(isinstance(c, str) and c for c in beams)
    nucleus = GenerationSettings(sample=True, top_p=0.9, max_length=10, min_length=5, prompt="a picture of ")
    torch.manual_seed(0)
    first = captioner.caption(visual, nucleus)
    torch.manual_seed(0)
    assert captioner.caption(visual, nucleus) == first


def test_vqa_generation_decodes_from_bos_over_the_question_states(vqa: BlipVQAModel) -> None:
    images = pixels(2, seed=8)
    questions = ["what colour is the circle", "how many"]
    answers = vqa.answer(vqa.encode_images(images), questions, GenerationSettings(num_beams=1, max_length=6, min_length=3))
    bos = torch.tensor([[vqa.tokenizer.bos_token_id]])
    with torch.inference_mode():
        for image, question, answer in zip(images, questions, answers, strict=True):
            states = vqa.module.text_encoder(
                input_ids=enc_ids(vqa, question), encoder_hidden_states=vision_tokens(vqa, image)
            ).last_hidden_state
            ids = greedy(vqa.module.text_decoder, bos, states, 6, 3, 1.0, vqa.tokenizer.sep_token_id)
            assert answer == vqa.tokenizer.decode(ids[0], skip_special_tokens=True).strip()


def brute_force_scores(model: BlipVQAModel, image: torch.Tensor, question: str, smoothing: float) -> list[float]:
    """Each answer alone, unpadded: minus the sum over its tokens of (1 - e) * NLL + e * mean NLL."""
    states = model.module.text_encoder(
        input_ids=enc_ids(model, question), encoder_hidden_states=vision_tokens(model, image)
    ).last_hidden_state
    scores = []
    for answer in ANSWERS:
        ids = model.tokenizer(answer, return_tensors="pt")["input_ids"]
        ids[0, 0] = model.tokenizer.bos_token_id
        log_probs = model.module.text_decoder(input_ids=ids, encoder_hidden_states=states).logits[0, :-1].log_softmax(-1)
        targets = ids[0, 1:]
        nll = -log_probs[torch.arange(len(targets)), targets]
        loss = ((1 - smoothing) * nll + smoothing * -log_probs.mean(dim=-1)).sum()
        scores.append(-float(loss))
    return scores


def test_vqa_rank_mode_equals_brute_force_when_k_covers_the_list(vqa: BlipVQAModel) -> None:
    images = pixels(3, seed=9)
    questions = ["what colour is it", "how many shapes are there in the picture", "where"]
    visual = vqa.encode_images(images)
    ranked = vqa.rank_answers(visual, questions, ANSWERS, k=len(ANSWERS))
    with torch.inference_mode():
        expected = [brute_force_scores(vqa, image, question, 0.1) for image, question in zip(images, questions, strict=True)]
        states, mask = vqa.encode_questions(visual, questions)
        answer_ids, answer_mask = vqa.answer_tokens(ANSWERS)
        everything = torch.arange(len(ANSWERS)).repeat(3, 1)
        batched = answer_scores(vqa.module.text_decoder, states, mask, answer_ids, answer_mask, everything, 0, 0.1)
    torch.testing.assert_close(batched, torch.tensor(expected), rtol=0, atol=1e-4)
    assert ranked == [int(np.argmax(row)) for row in expected]


def test_vqa_rank_mode_shortlists_by_first_token_probability(vqa: BlipVQAModel) -> None:
    images = pixels(2, seed=10)
    questions = ["what colour is it", "is it red"]
    visual = vqa.encode_images(images)
    best_first = vqa.rank_answers(visual, questions, ANSWERS, k=1)
    answer_ids, _ = vqa.answer_tokens(ANSWERS)
    with torch.inference_mode():
        for image, question, chosen in zip(images, questions, best_first, strict=True):
            states = vqa.module.text_encoder(
                input_ids=enc_ids(vqa, question), encoder_hidden_states=vision_tokens(vqa, image)
            ).last_hidden_state
            start = torch.tensor([[vqa.tokenizer.bos_token_id]])
            probs = vqa.module.text_decoder(input_ids=start, encoder_hidden_states=states).logits[0, 0].softmax(-1)
            assert chosen == int(probs[answer_ids[:, 1]].argmax())


def test_video_qa_reads_all_frames_tokens(vqa: BlipVQAModel) -> None:
    frames = pixels(4, seed=11)[None]
    video = vqa.encode_videos(frames)
    assert video.embeds is None and video.tokens.shape[1] == 4 * (SIZE // 16) ** 2 + 4
    assert len(vqa.rank_answers(video, ["which way does it move"], ANSWERS, k=3)) == 1


def test_nlvr2_verify_is_the_true_class_probability_with_enc_first() -> None:
    model: BlipNLVR2Verifier = tiny("nlvr2")
    left, right = model.encode_images(pixels(2, seed=12)), model.encode_images(pixels(2, seed=13))
    statements = ["the left image has a red circle", "there are two stars"]
    probabilities = model.verify(left, right, statements)
    encoded = model.tokenizer(statements, padding="longest", return_tensors="pt")
    ids = encoded["input_ids"].clone()
    ids[:, 0] = model.tokenizer.convert_tokens_to_ids("[ENC]")
    with torch.inference_mode():
        logits = model.module(left.tokens, right.tokens, ids, encoded["attention_mask"])
    torch.testing.assert_close(probabilities, logits.softmax(-1)[:, 1])
    swapped = model.verify(right, left, statements)
    assert not torch.allclose(swapped, probabilities, atol=1e-6)


def test_reduced_precision_is_autocast_and_close_to_fp32() -> None:
    images = pixels(2, seed=14)
    exact = build_blip_tiny(ModelRequest(task="coco_retrieval", protocol={"image_size": SIZE}, seed=1))
    bf16 = build_blip_tiny(ModelRequest(task="coco_retrieval", protocol={"image_size": SIZE}, seed=1, precision="bf16"))
    a, b = exact.encode_images(images), bf16.encode_images(images)
    assert b.embeds.dtype == torch.float32
    assert not torch.equal(a.embeds, b.embeds)
    torch.testing.assert_close(a.embeds, b.embeds, rtol=0, atol=0.05)
    with pytest.raises(ConfigError, match="precision 'fp8'"):
        build_blip_tiny(ModelRequest(task="coco_retrieval", protocol={"image_size": SIZE}, precision="fp8"))


def test_cross_attention_ignores_padded_encoder_states(vqa: BlipVQAModel) -> None:
    """transformers 5 drops the cross-attention mask; the plugin restores it (``masking.py``)."""
    decoder = vqa.module.text_decoder
    states = torch.randn(1, 5, 128, generator=torch.Generator().manual_seed(15))
    padded = torch.cat([states, torch.randn(1, 3, 128)], dim=1)
    ids = torch.tensor([[vqa.tokenizer.bos_token_id, 5, 9]])
    with torch.inference_mode():
        alone = decoder(input_ids=ids, encoder_hidden_states=states).logits
        masked = decoder(input_ids=ids, encoder_hidden_states=padded, encoder_attention_mask=torch.tensor([[1] * 5 + [0] * 3])).logits
    torch.testing.assert_close(masked, alone)
