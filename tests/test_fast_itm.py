"""The fast ITM path (keys and values once per image, scaled_dot_product_attention) against
transformers' BLIP text encoder run on the image tokens repeated per pair, in fp32."""

from __future__ import annotations

import pytest
import torch
from transformers import BlipConfig, BlipForImageTextRetrieval

from harness.capabilities import DialogContext
from harness.specs import ModelRequest
from harness_plugins.blip.fast.itm import PackedTexts, itm_logits, pack_by_image
from harness_plugins.blip.fast.masking import honour_cross_attention_masks
from harness_plugins.blip.heads.retrieval import BlipRetrievalModel
from harness_plugins.blip.presets import build_blip_tiny

TOLERANCE = 1e-5
VOCAB = 120
ENC = 3
IMAGES, IMAGE_TOKENS, IMAGE_WIDTH = 5, 17, 48
TEXT_TOKENS = 11


@pytest.fixture(scope="module")
def module() -> BlipForImageTextRetrieval:
    """Three text layers, image width different from text width (48 vs 64), 4 heads, and a
    larger initialisation than transformers' so that the logits differ clearly between pairs."""
    config = BlipConfig(
        vision_config={"hidden_size": IMAGE_WIDTH, "intermediate_size": 96, "num_hidden_layers": 1,
                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8, "initializer_range": 0.02},
        text_config={"vocab_size": VOCAB, "hidden_size": 64, "encoder_hidden_size": IMAGE_WIDTH,
                     "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
                     "max_position_embeddings": 64, "initializer_range": 0.2, "bos_token_id": 1},
        image_text_hidden_size=32,
    )
    torch.manual_seed(0)
    model = BlipForImageTextRetrieval(config).eval()
    honour_cross_attention_masks(model)
    return model


def padded_texts(count: int, generator: torch.Generator, shortest: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids with ``[ENC]`` first and right padding of random length (at least one text unpadded)."""
    ids = torch.randint(5, VOCAB, (count, TEXT_TOKENS), generator=generator)
    ids[:, 0] = ENC
    lengths = torch.randint(shortest, TEXT_TOKENS + 1, (count,), generator=generator)
    lengths[0] = TEXT_TOKENS
    mask = (torch.arange(TEXT_TOKENS)[None] < lengths[:, None]).long()
    return ids * mask, mask


def reference_logits(module, image_tokens, image_index, ids, mask) -> torch.Tensor:
    """BLIP's ITM as transformers computes it: image tokens repeated for every pair."""
    pair_tokens = image_tokens[image_index]
    hidden = module.text_encoder(
        input_ids=ids,
        attention_mask=mask,
        encoder_hidden_states=pair_tokens,
        encoder_attention_mask=torch.ones(pair_tokens.shape[:2], dtype=torch.long),
    ).last_hidden_state
    return module.itm_head(hidden[:, 0])


def mixed_pairs(generator: torch.Generator) -> torch.Tensor:
    """Image of each of 40 texts in arbitrary order: image 1 popular, image 3 absent."""
    index = torch.randint(0, IMAGES, (40,), generator=generator)
    index[index == 3] = 1
    index[::3] = 1
    return index


@pytest.mark.parametrize("shortest", [1, 2, TEXT_TOKENS], ids=["one-token-texts", "padded", "none-padded"])
@torch.inference_mode()
def test_fast_path_equals_the_transformers_reference(module, shortest: int) -> None:
    generator = torch.Generator().manual_seed(1)
    image_tokens = torch.randn(IMAGES, IMAGE_TOKENS, IMAGE_WIDTH, generator=generator)
    image_index = mixed_pairs(generator)
    ids, mask = padded_texts(len(image_index), generator, shortest)

    expected = reference_logits(module, image_tokens, image_index, ids, mask)
    actual = itm_logits(module, image_tokens, image_index, ids, mask)

    assert expected.std() > 0.05, "the logits must differ between pairs for the comparison to mean anything"
    assert torch.allclose(actual, expected, rtol=0, atol=TOLERANCE), (actual - expected).abs().max()


@torch.inference_mode()
def test_padding_content_does_not_change_a_logit(module) -> None:
    generator = torch.Generator().manual_seed(2)
    image_tokens = torch.randn(2, IMAGE_TOKENS, IMAGE_WIDTH, generator=generator)
    image_index = torch.tensor([0, 1, 1, 0])
    ids, mask = padded_texts(4, generator)
    other = torch.where(mask.bool(), ids, torch.randint(5, VOCAB, ids.shape, generator=generator))

    assert torch.allclose(
        itm_logits(module, image_tokens, image_index, ids, mask),
        itm_logits(module, image_tokens, image_index, other, mask),
        rtol=0, atol=TOLERANCE,
    )


@torch.inference_mode()
def test_left_padded_texts_are_refused(module) -> None:
    ids, mask = padded_texts(3, torch.Generator().manual_seed(6))
    with pytest.raises(ValueError, match="right-padded"):
        itm_logits(module, torch.zeros(1, IMAGE_TOKENS, IMAGE_WIDTH), torch.zeros(3, dtype=torch.long), ids, mask.flip(1))


def test_packing_keeps_the_real_tokens_in_order_and_pads_with_zeros() -> None:
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    padded = torch.arange(12.0).view(3, 4, 1)
    packed = PackedTexts.of(mask)

    assert packed.pack(padded).flatten().tolist() == [0, 1, 2, 4, 8, 9, 10, 11]
    assert packed.first.tolist() == [0, 3, 4]
    assert packed.text.tolist() == [0, 0, 0, 1, 2, 2, 2, 2]
    assert torch.equal(packed.pad(packed.pack(padded)), padded * mask[..., None])


def test_layout_gives_every_text_its_own_slot_in_a_row_of_its_image() -> None:
    image_index = torch.tensor([2, 0, 2, 2, 2, 2, 2, 0, 4, 2])
    layout = pack_by_image(image_index, num_images=5)

    assert layout.width == 4  # 10 texts over 3 images present
    assert len(set(layout.slot.tolist())) == len(image_index)
    assert layout.slot.max() < layout.rows * layout.width
    assert torch.equal(layout.row_image[layout.slot // layout.width], image_index)
    assert layout.rows == 4 and not layout.one_row_per_image  # image 2's seven texts take two rows


def test_layout_of_one_text_per_image_needs_no_indexing() -> None:
    layout = pack_by_image(torch.tensor([1, 0, 2]), num_images=3)
    assert layout.width == 1 and layout.one_row_per_image


@pytest.fixture(scope="module")
def blip() -> BlipRetrievalModel:
    return build_blip_tiny(ModelRequest(task="visdial", protocol={"image_size": 64}, seed=3))


def both_paths(model: BlipRetrievalModel, score) -> tuple[torch.Tensor, torch.Tensor]:
    assert model.fast_itm, "the fast path is the default"
    fast = score()
    model.fast_itm = False
    try:
        reference = score()
    finally:
        model.fast_itm = True
    return fast, reference


def test_match_equals_the_reference_through_the_blip_model(blip: BlipRetrievalModel) -> None:
    generator = torch.Generator().manual_seed(4)
    visual = blip.encode_images(torch.randn(4, 3, 64, 64, generator=generator))
    texts = blip.encode_texts([
        "a red circle", "two blue squares on the left", "a picture of a yellow star above a green triangle",
        "nothing", "three purple disks in the middle of the picture", "a cross",
    ])
    pairs = torch.tensor([[3, 0], [0, 2], [1, 4], [0, 0], [3, 5], [2, 1], [0, 4], [3, 0], [1, 1], [0, 3]])
    blip.match_batch_size = 4  # several chunks, each mixing images
    try:
        fast, reference = both_paths(blip, lambda: blip.match(visual, texts, pairs))
    finally:
        blip.match_batch_size = BlipRetrievalModel.match_batch_size

    assert fast.shape == (len(pairs),)
    assert torch.allclose(fast, reference, rtol=0, atol=TOLERANCE), (fast - reference).abs().max()


def test_dialog_scores_equal_the_reference(blip: BlipRetrievalModel) -> None:
    visual = blip.encode_images(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5)))
    contexts = [
        DialogContext("a red circle", (("is it big", "yes"),), "what colour is it"),
        DialogContext("two squares", (), "how many"),
    ]
    candidates = [["red", "blue", "no idea at all"], ["two", "three", "none"]]
    fast, reference = both_paths(blip, lambda: blip.score_dialog_answers(visual, contexts, candidates))
    assert torch.allclose(fast, reference, rtol=0, atol=TOLERANCE)
